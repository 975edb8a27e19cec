"""The worker's request loop: accept on the master's sockets, read a uwsgi request, call the WSGI app, write
the response, log it. One request at a time per process (threads come later).

This is the hot path. Everything a request needs is prepared once in Worker.__init__ and bound to locals in
serve(); per request the loop allocates the environ dict and little else.
"""
import os
import select
import signal as _signal
import socket
import struct
import time
import traceback

from .protocol import BadPacket, parse_vars, read_packet
from .wsgi import ErrorStream, FileWrapper, SocketInput, make_input


_CTIME_CACHE = [0, '']


def _ctime(now):
    sec = int(now)
    if _CTIME_CACHE[0] != sec:
        _CTIME_CACHE[0] = sec
        _CTIME_CACHE[1] = time.strftime('%a %b %d %H:%M:%S %Y', time.localtime(sec))
    return _CTIME_CACHE[1]


class ResponseState(object):
    """What start_response recorded for the current request."""
    __slots__ = ('status', 'headers', 'sent', 'body_bytes', 'header_bytes', 'header_count', 'code')

    def __init__(self):
        self.status = None
        self.headers = None
        self.sent = False
        self.body_bytes = 0
        self.header_bytes = 0
        self.header_count = 0
        self.code = 0


class Worker(object):
    def __init__(self, conf, app, listeners, scoreboard):
        self.app = app
        self.listeners = listeners
        self.scoreboard = scoreboard
        self.worker_id = conf['id']
        self.pid = os.getpid()
        self.buffer_size = conf['bufferSize']
        self.timeout = struct.pack('ll', conf['socketTimeout'], 0)
        self.log_requests = not conf['disableLogging']
        self.strict = conf['strict']
        self.catch_exceptions = conf['catchExceptions']
        self.requests = 0
        self.exceptions = 0
        self.tx = 0
        self.rt_total = 0
        self.warned_str = False
        self.stopping = None      # None, 'graceful' (reload: just finish) or 'drain' (shutdown: empty the queue)
        base = {
            'wsgi.version': (1, 0),
            'wsgi.errors': ErrorStream(),
            'wsgi.multithread': False,
            'wsgi.multiprocess': conf['processes'] > 1,
            'wsgi.run_once': False,
            'SCRIPT_NAME': '',
            'PATH_INFO': '',
            'QUERY_STRING': '',
        }
        if conf['fileWrapper']:
            base['wsgi.file_wrapper'] = FileWrapper
        self.base_environ = base

    # ---- signals -------------------------------------------------------------------------------------------

    def on_signal(self, signum, frame):
        """Only records the request to stop. The loop sees it between requests: a signal handler that raised
        could land between accept() returning and the connection being taken in hand, and lose it."""
        if signum in (_SIGINT, _SIGQUIT):
            os._exit(0)
        if self.stopping != 'drain':
            self.stopping = 'drain' if signum == _SIGTERM else 'graceful'

    # ---- the loop ------------------------------------------------------------------------------------------

    def serve(self):
        """Waits on the sockets with epoll. EPOLLEXCLUSIVE wakes one idle worker per connection (no thundering
        herd); the signal wakeup pipe makes a stop request end the wait at once."""
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        _signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        ep = select.epoll()
        socks = {}
        for sock, unix in self.listeners:
            sock.setblocking(False)
            socks[sock.fileno()] = (sock, unix)
            ep.register(sock.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
        ep.register(wake_r, select.EPOLLIN)
        handle = self.handle
        poll = ep.poll
        while self.stopping is None:
            for fd, _ in poll():
                if fd == wake_r:
                    try:
                        os.read(wake_r, 512)
                    except BlockingIOError:
                        pass
                    continue
                sock, unix = socks[fd]
                try:
                    conn, addr = sock.accept()
                except (BlockingIOError, InterruptedError):
                    continue   # another worker took it
                except OSError as e:
                    self.log_error('accept() failed: %s' % e)
                    continue
                handle(conn, unix)
                if self.stopping is not None:
                    break
        ep.close()
        if self.stopping == 'drain':
            self._drain()

    def _drain(self):
        """At shutdown: answer the connections already queued on the sockets, then stop."""
        for sock, unix in self.listeners:
            while True:
                try:
                    conn, addr = sock.accept()
                except (BlockingIOError, InterruptedError, OSError):
                    break
                self.handle(conn, unix)

    # ---- one request ---------------------------------------------------------------------------------------

    def handle(self, conn, unix):
        start = time.time()
        if unix:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self.timeout)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self.timeout)
        recv = conn.recv
        try:
            try:
                modifier1, modifier2, end, data = read_packet(recv, self.buffer_size)
                environ = self.base_environ.copy()
                nvars = parse_vars(data, end, environ)
            except BadPacket as e:
                self.log_error('bad request: %s; connection closed' % e)
                return
            except (BlockingIOError, socket.timeout):
                self.log_error('bad request: no complete uwsgi request within socket-timeout; connection closed')
                return
            except OSError as e:
                self.log_error('bad request: %s; connection closed' % e)
                return
            if modifier1 != 0:
                self.log_error('bad request: uwsgi modifier1 %d is not a WSGI request (tsgi serves modifier1 0); '
                               'connection closed' % modifier1)
                return
            self.scoreboard.busy(start)
            cl = environ.get('CONTENT_LENGTH')
            length = 0
            if cl:
                try:
                    length = int(cl)
                except ValueError:
                    length = 0
            environ['wsgi.input'] = body = make_input(recv, data, end, length)
            scheme = environ.get('UWSGI_SCHEME')
            if scheme is None:
                https = environ.get('HTTPS')
                scheme = 'https' if (https and https.lower() in ('on', '1', 'yes')) else environ.get('REQUEST_SCHEME', 'http')
            environ['wsgi.url_scheme'] = scheme
            r = self.run_app(conn, environ)
            if body.__class__ is SocketInput and body.unread_bytes():
                self._discard_body(body)
            self.requests += 1
            self.tx += r.body_bytes
            now = time.time()
            usec = int((now - start) * 1000000)
            self.rt_total += usec
            self.scoreboard.idle(self.requests, self.exceptions, self.tx, self.rt_total, now)
            if self.log_requests:
                self.log_request(environ, nvars, end - 4, start, usec, r)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _discard_body(self, body):
        """Reads what the app left of the body, so that closing does not reset the connection (a reset can
        make the front server lose the response it has not read yet)."""
        try:
            while body.unread_bytes():
                if not body.read(65536):
                    break
        except (OSError, IOError):
            pass

    def run_app(self, conn, environ):
        r = ResponseState()
        head = environ.get('REQUEST_METHOD') == 'HEAD'
        proto = environ.get('SERVER_PROTOCOL') or 'HTTP/1.1'
        send = conn.sendall

        def start_response(status, headers, exc_info=None):
            if exc_info is not None:
                try:
                    if r.sent:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif r.status is not None:
                raise AssertionError('start_response() called a second time without exc_info')
            if status.__class__ is not str:
                raise TypeError('status must be a str, got %r' % (status,))
            if len(status) < 4 or not status[:3].isdigit() or status[3] != ' ':
                raise ValueError('status must look like "200 OK", got %r' % (status,))
            if headers.__class__ is not list:
                raise TypeError('response headers must be a list of (name, value) tuples, got %r' % (type(headers),))
            r.status = status
            r.headers = headers
            return write

        def header_block():
            parts = [proto, ' ', r.status, '\r\n']
            for name, value in r.headers:
                if name.__class__ is not str or value.__class__ is not str:
                    raise TypeError('header %r: name and value must be str' % ((name, value),))
                if '\n' in value or '\r' in value or '\n' in name or '\r' in name or ':' in name:
                    raise ValueError('header %r contains a line break or a bad name' % ((name, value),))
                parts.append(name)
                parts.append(': ')
                parts.append(value)
                parts.append('\r\n')
            parts.append('\r\n')
            block = ''.join(parts).encode('latin-1')
            r.header_count = len(r.headers)
            r.header_bytes = len(block)
            r.code = int(r.status[:3])
            return block

        def write(data):
            if r.status is None:
                raise AssertionError('write() called before start_response()')
            if data.__class__ is not bytes:
                data = self.coerce_chunk(data)
            if not r.sent:
                block = header_block()
                r.sent = True
                send(block if head or not data else block + data)
            elif data and not head:
                send(data)
            if not head:
                r.body_bytes += len(data)

        result = None
        try:
            result = self.app(environ, start_response)
            if result.__class__ is list and len(result) == 1 and r.status is not None and not r.sent:
                # The common case (one body chunk): headers and body in one write, with a Content-Length.
                chunk = result[0]
                if chunk.__class__ is not bytes:
                    chunk = self.coerce_chunk(chunk)
                if not head:
                    for name, _ in r.headers:
                        if name.lower() == 'content-length':
                            break
                    else:
                        r.headers.append(('Content-Length', str(len(chunk))))
                write(chunk)
            elif isinstance(result, FileWrapper) and result.fileno() is not None and r.status is not None:
                self.send_file(conn, result, write, head, r)
            else:
                try:
                    iterator = iter(result)
                except TypeError:
                    raise TypeError('the app returned %s, which is not an iterable of bytes '
                                    '(return a list such as [b"..."])' % _short_repr(result))
                for chunk in iterator:
                    if chunk:
                        write(chunk)
            if not r.sent:
                if r.status is None:
                    raise AssertionError('the app returned without calling start_response()')
                write(b'')
        except (BrokenPipeError, ConnectionResetError) as e:
            self.log_error('client went away during the response (%s)' % e.__class__.__name__)
        except Exception:
            self.exceptions += 1
            self.app_error(send, r, proto)
        finally:
            close = getattr(result, 'close', None)
            if close is not None:
                try:
                    close()
                except Exception:
                    self.exceptions += 1
                    self.log_error('exception in the close() method of the app response:\n' + traceback.format_exc())
        return r

    def send_file(self, conn, wrapper, write, head, r):
        fd = wrapper.fileno()
        try:
            pos = os.lseek(fd, 0, os.SEEK_CUR)
            size = os.fstat(fd).st_size - pos
        except OSError:
            for chunk in wrapper:
                write(chunk)
            return
        if size > 0 and not any(n.lower() == 'content-length' for n, _ in r.headers) and not head:
            r.headers.append(('Content-Length', str(size)))
        write(b'')
        if head or size <= 0:
            return
        sent = 0
        sendfile = os.sendfile
        out = conn.fileno()
        while sent < size:
            n = sendfile(out, fd, pos + sent, size - sent)
            if n == 0:
                break
            sent += n
        r.body_bytes += sent

    def coerce_chunk(self, chunk):
        """A body chunk that is not bytes. A str (the guide's own Python 2 style app) is served as UTF-8 with a
        one-time explanation in the log, or refused under --strict; anything else is an app error."""
        if chunk.__class__ is str or isinstance(chunk, str):
            if self.strict:
                raise TypeError('the app returned a str in its response body (%s); WSGI bodies are bytes: '
                                'write b"..." or "...".encode() (refused because of --strict)' % _short_repr(chunk))
            if not self.warned_str:
                self.warned_str = True
                self.log_error('the app returned a str in its response body (%s); WSGI bodies are bytes. '
                               'tsgi sent it encoded as UTF-8; fix the app with b"..." or "...".encode() '
                               '(said once per worker; with --strict it is a 500)' % _short_repr(chunk))
            return chunk.encode('utf-8')
        if isinstance(chunk, (bytearray, memoryview)):
            return bytes(chunk)
        raise TypeError('the app yielded %s in its response body; WSGI bodies are bytes' % _short_repr(chunk))

    def app_error(self, send, r, proto):
        tb = traceback.format_exc()
        self.log_error('exception in the app, answered 500:\n' + tb.rstrip('\n'))
        if r.sent:
            # Too late for a 500: the status line is out. Closing tells the front server the response broke.
            return
        body = tb.encode('utf-8', 'replace') if self.catch_exceptions else b'Internal Server Error'
        block = ('%s 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n'
                 % (proto, len(body))).encode('latin-1')
        r.sent = True
        r.code = 500
        r.header_count = 2
        r.header_bytes = len(block)
        r.body_bytes = len(body)
        try:
            send(block + body)
        except OSError:
            pass

    # ---- logging -------------------------------------------------------------------------------------------

    def log_error(self, message):
        line = '[pid: %d|worker %d] %s\n' % (self.pid, self.worker_id, message)
        _write_log(line)

    def log_request(self, environ, nvars, vars_size, start, usec, r):
        line = '[pid: %d|app: 0|req: %d/%d] %s (%s) {%d vars in %d bytes} [%s] %s %s => generated %d bytes in %d msecs (%s %d) %d headers in %d bytes (1 switches on core 0)\n' % (
            self.pid, self.requests, self.scoreboard.total_requests(), environ.get('REMOTE_ADDR', '-'),
            environ.get('REMOTE_USER', ''), nvars, vars_size, _ctime(start), environ.get('REQUEST_METHOD', ''),
            environ.get('REQUEST_URI', environ.get('PATH_INFO', '')), r.body_bytes, usec // 1000,
            environ.get('SERVER_PROTOCOL', ''), r.code, r.header_count, r.header_bytes)
        _write_log(line)


def _write_log(line):
    data = line.encode('utf-8', 'replace')
    try:
        os.write(2, data)
    except OSError:
        pass


def _short_repr(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


_SIGINT = _signal.SIGINT
_SIGQUIT = _signal.SIGQUIT
_SIGTERM = _signal.SIGTERM
