"""The worker's request loop: wait on the master's sockets, read a uwsgi request, call the WSGI app, write the
response, log it. One request at a time per process.

Two kinds of connection arrive: one-shot uwsgi connections from a front server (nginx), and the HTTP
router's persistent link (docs/protocol-link.md), which a worker keeps from one request to the next.

This is the hot path. Everything a request needs is prepared once in Worker.__init__; per request the loop
allocates the environ dict, the response state and little else.
"""
import _socket
import os
import select
import signal as _signal
import socket
import struct
import sys
import threading
import time
import traceback

from .logformat import LogContext, client_address, compile_format, date_prefix
from .mounts import Mounts
from .output import GOODBYE_FRAME, Held, LinkOutput, RawOutput, hello_frame
from .protocol import MALFORMED_VARS, READ_SIZE, BadPacket, parse_vars, read_packet
from .wsgi import ErrorStream, FileWrapper, SocketInput, make_input

_CTIME_CACHE = [0, '']


def _ctime(now):
    sec = int(now)
    if _CTIME_CACHE[0] != sec:
        _CTIME_CACHE[0] = sec
        # C's ctime(), as uWSGI prints it: the day of the month padded with a space ('Dec  5').
        _CTIME_CACHE[1] = time.asctime(time.localtime(sec))
    return _CTIME_CACHE[1]


class LinkClosed(Exception):
    """The router closed the link (between requests: the normal way a link ends)."""


class ResponseState(object):
    """What start_response recorded for the current request, and what was sent."""
    __slots__ = ('status', 'headers', 'sent', 'body_bytes', 'header_bytes', 'header_count', 'code', 'ended',
                 'remaining', 'excess')

    def __init__(self):
        self.status = None
        self.headers = None
        self.sent = False
        self.body_bytes = 0
        self.header_bytes = 0
        self.header_count = 0
        self.code = 0
        self.ended = False      # the end of the response is out (the app may still be iterating)
        self.remaining = -1     # body bytes the Content-Length still promises; -1: no usable Content-Length
        self.excess = 0         # body bytes the app gave beyond its Content-Length, not sent


def declared_length(headers):
    """The response's Content-Length as a number, or -1 when it has none or one that is not a number."""
    for header in headers:
        name = header[0]
        if name.__class__ is str and len(name) == 14 and name.lower() == 'content-length':
            value = header[1]
            if value.__class__ is str and value.isdigit():
                return int(value)
            return -1
    return -1


UWSGI_UNIX, UWSGI_TCP, LINK = 'uwsgi-unix', 'uwsgi-tcp', 'link'

# A pipelined batch's responses are held to leave together only while requests take less than this (in µs): a
# response never waits long for the ones after it.
HOLD_BELOW_US = 1000


class Core(object):
    """One thread's share of the worker: its scoreboard record, its router link, its request count, and the
    logvars the app set in its current request (uwsgi.set_logvar; None, the common case, when none)."""
    __slots__ = ('index', 'requests', 'link', 'start_us', 'logvars', 'app_id', 'rest', 'held', 'last_us')

    def __init__(self, index):
        self.index = index
        self.app_id = 0           # the app serving the current request (mounts), for the request log
        self.requests = 0
        self.link = None
        self.start_us = 0
        self.logvars = None
        self.rest = None          # bytes read past the current request on a kept connection: the next one (pipelined)
        self.held = None          # the responses of the pipelined batch in progress, sent together (output.Held)
        self.last_us = 0          # how long the last request took


class Worker(object):
    def __init__(self, conf, app, listeners, scoreboard):
        # mount / manage-script-name / no-default-app: a Mounts table chooses the app per request (mounts.py);
        # None, the common case, costs a request one attribute test.
        self.mounts = None
        if app.__class__ is Mounts:
            self.mounts = app
            app.log_error = self.log_error
            app = app.default
        elif conf.get('dynamicApps', True):
            # One app and nothing else configured: a request with a SCRIPT_NAME may still name (or load) another app
            # (UWSGI_SCRIPT, docs/vhost.md), so it goes through a table made for it when the first one comes. A
            # request without one pays one dict lookup.
            self.mounts_for_script_name = True
        self.app = app
        # vhost: request lines start with the request's host, as uWSGI writes them.
        self.log_host = conf.get('vhost', False)
        self.listeners = listeners            # [(socket, kind)]
        self.scoreboard = scoreboard
        self.worker_id = conf['id']
        self.pid = os.getpid()
        self.buffer_size = conf['bufferSize']
        self.timeout = struct.pack('ll', conf['socketTimeout'], 0)
        self.log_requests = not conf['disableLogging']
        self.log_micros = conf.get('logMicros', False)
        # add-header / del-header: None (the common case) costs a response one attribute test.
        self.header_edit = None
        if conf.get('headers'):
            self.header_edit = (frozenset(conf['headers']['del']), [tuple(h) for h in conf['headers']['add']])
        # log-4xx and friends: with disable-logging, only the requests they name are logged.
        self.log_when = None
        if not self.log_requests and conf.get('logWhen'):
            self.log_when = conf['logWhen']
            self.log_requests = True
        self.x_forwarded_for = conf.get('logXForwardedFor', False)
        self.log_format = compile_format(conf['logFormat'], ftime=conf.get('ftimeFormat')) if conf.get('logFormat') else None
        self.date_prefix = date_prefix(conf.get('logDate'))
        self.strict = conf['strict']
        self.catch_exceptions = conf['catchExceptions']
        self.requests = 0
        self.exceptions = 0
        self.tx = 0
        self.rt_total = 0
        self.warned_str = False
        # None, or why the worker stops: 'graceful' (reload: finish), 'drain' (shutdown: also empty the
        # queue), 'recycle' (max-requests: finish, then the master starts a fresh worker).
        self.stopping = None
        self.threads = conf.get('threads', 1)
        self.conf_max_apps = conf.get('maxApps', 64)
        self.conf_callable = (conf.get('app') or {}).get('callable') or 'application'
        self.cores = [Core(i) for i in range(self.threads)]
        # The core each serving thread runs (the uwsgi module finds the current request's core through it).
        self.core_by_thread = {}
        # Called before an immediate stop ends the process (uwsgi.atexit); set by main.
        self.at_exit = None
        self.max_requests = conf.get('maxRequests', 0)
        # Threads share the totals; a lock keeps them (and their scoreboard copy) consistent.
        self.lock = threading.Lock() if self.threads > 1 else None
        self.stop_w = -1
        base = {
            'wsgi.version': (1, 0),
            'wsgi.errors': ErrorStream(),
            'wsgi.multithread': self.threads > 1,
            'wsgi.multiprocess': conf['processes'] > 1,
            'wsgi.run_once': False,
            'SCRIPT_NAME': '',
            'PATH_INFO': '',
            'QUERY_STRING': '',
        }
        if conf['fileWrapper']:
            base['wsgi.file_wrapper'] = FileWrapper
        self.base_environ = base
        self.base_size = len(base) + 2   # wsgi.input and wsgi.url_scheme are added per request
        # static-map and friends, answered here for requests on uwsgi sockets (the router serves its own).
        # None, the common case, costs a request one attribute test.
        self.static = None
        if conf.get('static') and (conf.get('routes') or any(kind != LINK for _, kind in listeners)):
            from .static import StaticFiles
            self.static = StaticFiles(conf['static'], self.log_error)
        # route, route-run, route-if, ... (routing.py, docs/routing.md): run before static files and the app, on
        # every socket and link (the router then leaves static files to the worker). None costs one attribute test.
        self.routing = None
        if conf.get('routes'):
            from .routing import Routing
            self.routing = Routing(conf['routes'], self.worker_id, self.pid, self.log_error, self.log_line)
        # error-route*, response-route*, collect-header, pull-header: None (the common case) costs one attribute test.
        self.late_routing = None
        if conf.get('errorRoutes') or conf.get('responseRoutes') or conf.get('collectHeaders') or conf.get('pullHeaders'):
            from .late_routing import LateRouting
            self.late_routing = LateRouting(conf, self.worker_id, self.pid, self.log_error, self.log_line)
        # final-route*: after the response, before its log line (as uWSGI 2.0.21 orders them).
        self.final_routing = None
        if conf.get('finalRoutes'):
            from .routing import Routing
            self.final_routing = Routing(conf['finalRoutes'], self.worker_id, self.pid, self.log_error, self.log_line)

    mounts_for_script_name = False
    script_table = None

    def one_app_table(self):
        """The table a single app's worker makes at the first request with a SCRIPT_NAME: that app, at ''. Such a
        request goes to it unless it names (UWSGI_APPID) or loads (UWSGI_SCRIPT, ...) another app."""
        table = self.script_table
        if table is None:
            table = self.script_table = Mounts([('', self.app)], False, False, max_apps=self.conf_max_apps,
                                               callable_name=self.conf_callable, threads=self.threads)
            table.log_error = self.log_error
        return table

    def pick_app(self, environ, core):
        """The app for a request (the routing rules' way in; serve_request inlines it)."""
        if self.mounts is not None:
            return self.mounts.select(environ, core)
        if environ['SCRIPT_NAME'] and self.mounts_for_script_name:
            return self.one_app_table().select(environ, core)
        core.app_id = 0
        return self.app

    # ---- signals -------------------------------------------------------------------------------------------

    def on_signal(self, signum, frame):
        """Only records the request to stop. The loop sees it between requests: a signal handler that raised
        could land between accept() returning and the connection being taken in hand, and lose it."""
        if signum in (_SIGINT, _SIGQUIT):
            if self.at_exit is not None:
                self.at_exit(self.log_error)
            os._exit(0)
        if self.stopping != 'drain':
            self.stopping = 'drain' if signum == _SIGTERM else 'graceful'

    def request_stop(self, why):
        """A stop decided inside the worker (max-requests); wakes every thread."""
        if self.stopping is None:
            self.stopping = why
        if self.stop_w >= 0:
            try:
                os.write(self.stop_w, b'x')
            except OSError:
                pass

    # ---- the loop ------------------------------------------------------------------------------------------

    def serve(self):
        """One loop per core (thread). Signals reach the main thread through the wakeup pipe; with threads,
        the main thread only waits for them and passes a stop on to the cores through a shared pipe."""
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        _signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for sock, kind in self.listeners:
            sock.setblocking(False)
        if self.threads == 1:
            self.core_loop(self.cores[0], wake_r, True)
        else:
            stop_r, self.stop_w = os.pipe2(os.O_CLOEXEC)
            threads = [threading.Thread(target=self.core_loop, args=(core, stop_r, False), name='tsgi-core-%d' % core.index,
                                        daemon=True) for core in self.cores]
            for t in threads:
                t.start()
            while self.stopping is None:
                select.select([wake_r], [], [])
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
            os.write(self.stop_w, b'x')
            for t in threads:
                t.join()
        if self.stopping == 'drain':
            self._drain()

    def core_loop(self, core, wake_fd, drain_wake):
        """Waits with epoll. EPOLLEXCLUSIVE wakes one idle core per connection (no thundering herd)."""
        self.core_by_thread[threading.get_ident()] = core
        ep = select.epoll()
        listeners = {}
        armed = set()             # listener fds currently registered with epoll

        def arm(fd):
            if fd not in armed:
                ep.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
                armed.add(fd)

        def disarm(fd):
            if fd in armed:
                ep.unregister(fd)
                armed.discard(fd)

        for sock, kind in self.listeners:
            listeners[sock.fileno()] = (sock, kind, sock._accept, int(sock.family))
            arm(sock.fileno())
        ep.register(wake_fd, select.EPOLLIN)
        # uWSGI signals (docs/signals.md): the master's connection, when the app registered a handler, is read by
        # core 0 between its requests; its events reach the loop's rarely taken `entry is None` branch.
        sig_fd = -1
        signals = sys.modules.get('tsgi_worker.signals') if core.index == 0 else None
        if signals is not None and signals.fileno() >= 0:
            sig_fd = signals.fileno()
            ep.register(sig_fd, select.EPOLLIN)
        link_fd = -1
        kept = {}                 # fd -> (connection, unix): front-server connections kept alive, oldest first
        stop_seen = False
        poll = ep.poll
        while True:
            if self.stopping is not None and not stop_seen:
                # Stop taking connections. A router link is told goodbye and served until the router closes
                # it: on a reload the router moves to the new workers, on a shutdown it first empties its queue.
                stop_seen = True
                for fd in list(armed):
                    disarm(fd)
                if not drain_wake:
                    ep.unregister(wake_fd)   # the shared stop pipe stays readable: stop listening to it
                for fd, (conn, unix) in list(kept.items()):
                    # Idle kept connections may be closed at any time; the front server retries.
                    ep.unregister(fd)
                    conn.close()
                kept.clear()
                if core.link is not None:
                    try:
                        core.link.sendall(GOODBYE_FRAME)
                    except OSError:
                        self._drop_link(core, ep)
                        link_fd = -1
            if stop_seen and core.link is None:
                break
            for fd, _ in poll():
                if fd == wake_fd:
                    if drain_wake:
                        try:
                            os.read(wake_fd, 512)
                        except BlockingIOError:
                            pass
                    continue
                if fd == link_fd:
                    if not self.handle_link_request(core):
                        self._drop_link(core, ep)
                        link_fd = -1
                        if not stop_seen:
                            for lfd, entry in listeners.items():
                                if entry[1] == LINK:
                                    arm(lfd)
                    continue
                if fd in kept:
                    # A kept connection stays registered between its requests (two epoll_ctl calls less per
                    # request); one that handle() closed left the epoll set with its descriptor.
                    conn, unix = kept_entry = kept.pop(fd)
                    if self.handle(conn, unix, core, False):
                        if self.stopping is None:
                            kept[fd] = kept_entry   # most recently used last
                        else:
                            conn.close()
                    if self.stopping is not None:
                        break
                    continue
                entry = listeners.get(fd)
                if entry is None or fd not in armed:
                    if fd == sig_fd and not signals.dispatch(self.log_error):
                        ep.unregister(sig_fd)   # the master is gone
                        sig_fd = -1
                    continue
                sock, kind, accept, family = entry
                try:
                    # The C socket type, without socket.socket's Python layer: this is done per request.
                    conn = _socket.socket(family, _SOCK_STREAM, 0, accept()[0])
                except (BlockingIOError, InterruptedError):
                    continue   # another core took it
                except OSError as e:
                    self.log_error('accept() failed: %s' % e)
                    continue
                if kind == LINK:
                    # One link per core: stop accepting links while this one is held.
                    disarm(fd)
                    core.link = conn
                    try:
                        conn.sendall(hello_frame(self.pid))
                    except OSError:
                        self._drop_link(core, ep, registered=False)
                        arm(fd)
                        continue
                    link_fd = conn.fileno()
                    ep.register(link_fd, select.EPOLLIN)
                elif self.handle(conn, kind == UWSGI_UNIX, core):
                    if self.stopping is None:
                        self._keep(ep, kept, conn, kind == UWSGI_UNIX)
                    else:
                        conn.close()
                if self.stopping is not None:
                    break
        for conn, unix in kept.values():
            conn.close()
        ep.close()

    MAX_KEPT = 64

    def _keep(self, ep, kept, conn, unix):
        """Holds a kept-alive connection for its next request; the least recently used idle one goes when a
        core holds too many (a request sent on it is retried by the front server on a new connection)."""
        fd = conn.fileno()
        kept[fd] = (conn, unix)
        ep.register(fd, select.EPOLLIN)
        if len(kept) > self.MAX_KEPT:
            old, _ = kept.pop(next(iter(kept)))
            old.close()   # closing the descriptor takes it out of the epoll set

    def _drop_link(self, core, ep, registered=True):
        if registered:
            try:
                ep.unregister(core.link.fileno())
            except (OSError, ValueError):
                pass
        try:
            core.link.close()
        except OSError:
            pass
        core.link = None

    def _drain(self):
        """At shutdown: answer the uwsgi connections already queued on the sockets, then stop."""
        core = self.cores[0]
        for sock, kind in self.listeners:
            if kind == LINK:
                continue
            while True:
                try:
                    conn = _socket.socket(sock.family.value, _socket.SOCK_STREAM, 0, sock._accept()[0])
                except (BlockingIOError, InterruptedError, OSError):
                    break
                self.handle(conn, kind == UWSGI_UNIX, core)

    # ---- one request ---------------------------------------------------------------------------------------

    def handle(self, conn, unix, core, fresh=True):
        """A uwsgi connection: one request, answered as HTTP, then closed — unless the front server asked
        for tsgi's keep-alive and the response allowed it. Returns True when the connection is kept."""
        arm = None
        if unix:
            # Accepted Unix connections do not inherit socket-timeout from the listening socket (TCP ones do);
            # it is set only when a read or a write has to wait (the request did not arrive whole, the response
            # does not fit in the socket's buffer), which is rare from a front server. A kept connection needs
            # it as much as a fresh one: its next packet may also arrive in pieces, or stop.
            timeout = self.timeout
            armed = []

            def arm():
                if not armed:
                    armed.append(True)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout)
        out = RawOutput(conn, arm=arm)
        keep = False
        try:
            keep = self.serve_request(conn.recv, out, False, core, not fresh, arm) is True and out.reusable()
            # Pipelined requests (docs/protocol-keepalive.md) that came with that one are answered in order, now:
            # they were read, so they are answered even by a stopping worker.
            while keep and core.rest is not None:
                first = core.rest
                core.rest = None
                out = RawOutput(conn, arm=arm)
                held = core.held
                keep = self.serve_request(conn.recv if held is None else held.recv, out, False, core, False, arm, first) is True and out.reusable()
        except LinkClosed:
            keep = False
        finally:
            held = core.held
            if held is not None:
                core.held = None
                try:
                    held.flush()
                except OSError:
                    keep = False
            if not keep:
                try:
                    conn.close()
                except OSError:
                    pass
        return keep

    def handle_link_request(self, core):
        """One request on the router's link. Returns False when the link is finished."""
        link = core.link
        try:
            return self.serve_request(link.recv, LinkOutput(link), True, core)
        except LinkClosed:
            return False

    def serve_request(self, recv, out, on_link, core, quiet_eof=False, arm=None, first=None):
        """Reads one request, runs the app, sends the response. `quiet_eof`: an end of stream before the request
        is the normal end of a kept connection, not worth a log line. `first`: bytes of the request already read
        (a pipelined request that came with the previous one)."""
        start = time.time()
        core.rest = None
        try:
            if not on_link and first is None:
                try:
                    first = recv(READ_SIZE, _MSG_DONTWAIT)
                except BlockingIOError:
                    first = None
            modifier1, modifier2, end, data = read_packet(recv, self.buffer_size, first, arm)
            environ = self.base_environ.copy()
            if not parse_vars(data, end, environ):
                raise BadPacket(MALFORMED_VARS)
        except BadPacket as e:
            if (on_link or quiet_eof) and e.args and e.args[0].startswith('connection closed'):
                raise LinkClosed()
            self.log_error('bad request: %s; connection closed' % e)
            return False
        except (BlockingIOError, socket.timeout):
            self.log_error('bad request: no complete uwsgi request within socket-timeout; connection closed')
            return False
        except OSError as e:
            if on_link or quiet_eof:
                raise LinkClosed()
            self.log_error('bad request: %s; connection closed' % e)
            return False
        if modifier1 != 0:
            self.log_error('bad request: uwsgi modifier1 %d is not a WSGI request (tsgi serves modifier1 0); '
                           'connection closed' % modifier1)
            return False
        start_us = int(start * 1000000)
        core.start_us = start_us
        line = (environ.get('REQUEST_METHOD', '') + ' ' + environ.get('REQUEST_URI', environ['PATH_INFO'])).encode('latin-1', 'replace')
        self.scoreboard.busy(core.index, start_us, self.requests, self.exceptions, self.tx, self.rt_total, line)
        cl = environ.get('CONTENT_LENGTH')
        length = 0
        if cl:
            try:
                length = int(cl)
            except ValueError:
                length = 0
        if arm is not None and length > len(data) - end:
            arm()   # the body is still coming: its reads must time out
        environ['wsgi.input'] = body = make_input(recv, data, end, length)
        scheme = environ.get('UWSGI_SCHEME')
        if scheme is None:
            https = environ.get('HTTPS')
            scheme = 'https' if (https and https.lower() in ('on', '1', 'yes')) else environ.get('REQUEST_SCHEME', 'http')
        environ['wsgi.url_scheme'] = scheme
        if not on_link:
            marker = environ.get('TSGI_KEEPALIVE')
            if marker == '1' or marker == '2':
                out.keepalive = marker
                out.bodiless = environ.get('REQUEST_METHOD') == 'HEAD'
                if marker == '2' and len(data) - end > length:
                    # Past this request's body: the next request, which the front server pipelined.
                    core.rest = data[end + length:]
                    if core.held is None and core.last_us < HOLD_BELOW_US:
                        # Its response waits to leave with the batch's last one, unless requests here are slow
                        # (the last one took a millisecond or more): then each goes out as it is made.
                        core.held = Held(out.send, recv)
                held = core.held
                if held is not None:
                    out.hold(held)
        log = self.log_requests
        late = self.late_routing
        if late is not None:
            # error-route, response-route, collect/pull-header: run as the head goes out (late_routing.py).
            out = late.wrap(out, environ, core)
        if self.routing is not None:
            # The rules run first; they choose the app (mounts) once they have changed the request.
            r, healthy, log = self.routing.serve(self, out, environ, core, on_link)
            log = log and self.log_requests
        else:
            if self.mounts is None:
                if environ['SCRIPT_NAME'] and self.mounts_for_script_name:
                    app = self.one_app_table().select(environ, core)
                else:
                    app = self.app
                    core.app_id = 0
            else:
                app = self.mounts.select(environ, core)
            if self.static is not None and not on_link:
                r, healthy = self.serve_static(out, environ, app)
            else:
                r, healthy = self.run_app(out, environ, app)
        if late is not None:
            healthy = out.finish(r, healthy, on_link)
            if out.quiet:
                log = False
        if body.__class__ is SocketInput and body.unread_bytes():
            healthy = self._discard_body(body) and healthy
        if self.final_routing is not None:
            log = self._final_routes(environ, core, log)
        now = time.time()
        usec = int((now - start) * 1000000)
        core.last_us = usec
        core.requests += 1
        core.start_us = 0
        lock = self.lock
        if lock is None:
            self.requests += 1
            self.tx += r.body_bytes
            self.rt_total += usec
            self.scoreboard.idle(0, int(now * 1000000), core.requests, self.requests, self.exceptions, self.tx, self.rt_total, 0)
            requests = self.requests
        else:
            with lock:
                self.requests += 1
                self.tx += r.body_bytes
                self.rt_total += usec
                oldest = min([c.start_us for c in self.cores if c.start_us] or [0])
                self.scoreboard.idle(core.index, int(now * 1000000), core.requests, self.requests, self.exceptions,
                                     self.tx, self.rt_total, oldest)
                requests = self.requests
        if log and (self.log_when is None or self.log_wanted(r, usec)):
            self.log_request(environ, len(environ) - self.base_size, end - 4, start, usec, r, requests, core)
        if core.logvars is not None:
            core.logvars = None
        if self.max_requests and requests >= self.max_requests and self.stopping is None:
            self.log_error('recycling after %d requests (max-requests)' % requests)
            self.request_stop('recycle')
        return healthy

    def _discard_body(self, body):
        """Reads what the app left of the body: on a uwsgi connection, so that closing does not reset it (a
        reset can make the front server lose the response it has not read yet); on a link, so that the next
        request starts where it should. Returns False if the connection broke."""
        try:
            while body.unread_bytes():
                if not body.read(65536):
                    return False
        except (OSError, IOError):
            return False
        return True

    def _final_routes(self, environ, core, log):
        """Runs the final routes (their log lines, logvars for the request's line, donotlog); returns `log`."""
        try:
            o = self.final_routing.apply(environ)
        except Exception as e:
            self.log_error('final route failed: %s' % e)
            return log
        if o is None:
            return log
        if o.logvars is not None:
            if core.logvars is None:
                core.logvars = {}
            core.logvars.update(o.logvars)
        return log and not o.quiet

    def run_app(self, out, environ, app, edit=None):
        """Calls the app and sends its response to `out`. Returns (state, connection still usable). `edit`: the
        routing rules' header changes (with add-header/del-header's), else add-header/del-header's alone."""
        r = ResponseState()
        if edit is None and self.header_edit is not None:
            edit = self.edit_headers
        head = environ.get('REQUEST_METHOD') == 'HEAD'
        proto = environ.get('SERVER_PROTOCOL') or 'HTTP/1.1'

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
            r.headers = headers if edit is None else edit(headers)
            return write

        def write(data):
            if r.status is None:
                raise AssertionError('write() called before start_response()')
            if data.__class__ is not bytes:
                data = self.coerce_chunk(data)
            if r.ended:
                r.excess += len(data)
                return
            if not r.sent:
                code = r.code = int(r.status[:3])
                r.header_count = len(r.headers)
                r.sent = True
                if not head and code >= 200 and code != 204 and code != 304:
                    r.remaining = declared_length(r.headers)
                if 0 <= r.remaining <= len(data):
                    # The first chunk is the whole body the head promises: head, body and end in one write,
                    # so the router hears the end (and can give this worker its next request) while the app
                    # finishes its iteration and close().
                    if r.remaining < len(data):
                        r.excess = len(data) - r.remaining
                        data = data[:r.remaining]
                    r.header_bytes = out.whole(proto, r.status, r.headers, data)
                    r.ended = True
                else:
                    r.header_bytes = out.head(proto, r.status, r.headers, b'' if head else data)
                    if r.remaining > 0:
                        r.remaining -= len(data)
            elif not data or head:
                return
            elif 0 <= r.remaining <= len(data):
                if r.remaining < len(data):
                    r.excess = len(data) - r.remaining
                    data = data[:r.remaining]
                out.last(data)
                r.ended = True
            else:
                out.body(data)
                if r.remaining > 0:
                    r.remaining -= len(data)
            if not head:
                r.body_bytes += len(data)

        result = None
        healthy = True
        try:
            result = app(environ, start_response)
            if result.__class__ is list and len(result) == 1 and r.status is not None and not r.sent:
                # The common case (one body chunk): the whole response in one write, with a Content-Length.
                chunk = result[0]
                if chunk.__class__ is not bytes:
                    chunk = self.coerce_chunk(chunk)
                r.code = code = int(r.status[:3])
                if not head:
                    for name, value in r.headers:
                        if name.__class__ is str and name.lower() == 'content-length':
                            # The app's own length: a longer chunk is cut to it, as write() cuts.
                            if (value.__class__ is str and value.isdigit() and int(value) < len(chunk)
                                    and code >= 200 and code != 204 and code != 304):
                                r.excess = len(chunk) - int(value)
                                chunk = chunk[:int(value)]
                            break
                    else:
                        r.headers.append(('Content-Length', str(len(chunk))))
                r.header_count = len(r.headers)
                r.header_bytes = out.whole(proto, r.status, r.headers, b'' if head else chunk)
                r.sent = True
                r.ended = True
                if not head:
                    r.body_bytes += len(chunk)
            elif isinstance(result, FileWrapper) and result.fileno() is not None and r.status is not None:
                self.send_file(out, result, write, head, r)
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
                # No body at all (a HEAD, a 204, an empty iterable): head and end in one write.
                r.code = int(r.status[:3])
                r.header_count = len(r.headers)
                r.header_bytes = out.whole(proto, r.status, r.headers, b'')
                r.sent = True
            elif not r.ended:
                out.end()
            r.ended = True
            if r.excess:
                self.log_error('the app gave %d body bytes more than its Content-Length (%s %s); they were not sent'
                               % (r.excess, environ.get('REQUEST_METHOD', ''), environ.get('REQUEST_URI', environ.get('PATH_INFO', ''))))
        except (BrokenPipeError, ConnectionResetError) as e:
            self.log_error('client went away during the response (%s)' % e.__class__.__name__)
            healthy = False
        except (BlockingIOError, socket.timeout):
            self.log_error(self.send_timeout_message())
            healthy = False
        except Exception:
            self.exceptions += 1
            healthy = self.app_error(out, r, proto, edit)
        finally:
            close = getattr(result, 'close', None)
            if close is not None:
                try:
                    close()
                except Exception:
                    self.exceptions += 1
                    self.log_error('exception in the close() method of the app response:\n' + traceback.format_exc())
        return r, healthy

    def serve_static(self, out, environ, app, edit=None):
        """A request on a uwsgi socket when static options are set: the file a mount gives, else the app.
        Returns (state, connection still usable), as run_app does."""
        try:
            reply = self.static.lookup(environ)
        except Exception:
            self.log_error('static file lookup failed, the app answers:\n' + traceback.format_exc().rstrip('\n'))
            reply = None
        if reply is None:
            return self.run_app(out, environ, app, edit)
        r = ResponseState()
        r.status = reply.status
        if edit is None and self.header_edit is not None:
            edit = self.edit_headers
        r.headers = reply.headers if edit is None else edit(reply.headers)
        r.code = reply.code
        r.header_count = len(r.headers)
        fd = reply.fd
        try:
            r.header_bytes = out.head(environ.get('SERVER_PROTOCOL') or 'HTTP/1.1', reply.status, r.headers, b'')
            r.sent = True
            if fd >= 0 and reply.size > 0:
                r.body_bytes = sent = out.sendfile(fd, 0, reply.size)
                if sent != reply.size:
                    # The head promised more: the connection cannot carry an honest end of this response.
                    self.log_error('static file %s ended after %d of its %d bytes; connection closed'
                                   % (reply.path, sent, reply.size))
                    return r, False
            out.end()   # the router's link needs its END frame (with routes, static files travel on it too)
            return r, True
        except (BrokenPipeError, ConnectionResetError) as e:
            self.log_error('client went away during the response (%s)' % e.__class__.__name__)
            return r, False
        except (BlockingIOError, socket.timeout):
            self.log_error(self.send_timeout_message())
            return r, False
        except OSError as e:
            self.log_error('static file %s could not be sent (%s); connection closed' % (reply.path, e))
            return r, False
        finally:
            if fd >= 0:
                os.close(fd)

    def send_file(self, out, wrapper, write, head, r):
        fd = wrapper.fileno()
        try:
            pos = os.lseek(fd, 0, os.SEEK_CUR)
            size = os.fstat(fd).st_size - pos
        except OSError:
            for chunk in wrapper:
                write(chunk)
            return
        if size > 0 and not head and not any(n.lower() == 'content-length' for n, _ in r.headers):
            r.headers.append(('Content-Length', str(size)))
        write(b'')
        if head or size <= 0 or r.ended:
            return
        r.body_bytes += out.sendfile(fd, pos, size)

    def send_timeout_message(self):
        return ('the client did not take the response within socket-timeout (%d s); connection closed'
                % struct.unpack('ll', self.timeout)[0])

    def coerce_chunk(self, chunk):
        """A body chunk that is not bytes. A str (the guide's own Python 2 style app) is served as UTF-8 with a
        one-time explanation in the log, or refused under --strict; anything else is an app error."""
        if isinstance(chunk, str):
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

    def app_error(self, out, r, proto, edit=None):
        """Logs the app's exception and answers 500, or, if the head is already out, aborts the response.
        Returns whether the connection is still usable."""
        tb = traceback.format_exc()
        if r.ended:
            # The whole body the head promised is out: the client has its response, the connection is sound.
            self.log_error('exception in the app after its response was complete (its Content-Length sent):\n'
                           + tb.rstrip('\n'))
            return True
        if r.sent:
            self.log_error('exception in the app after the response started; response cut:\n' + tb.rstrip('\n'))
            try:
                out.abort()
            except OSError:
                return False
            return False
        self.log_error('exception in the app, answered 500:\n' + tb.rstrip('\n'))
        body = tb.encode('utf-8', 'replace') if self.catch_exceptions else b'Internal Server Error'
        headers = [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))]
        if edit is not None:
            headers = edit(headers)
        r.sent = True
        r.code = 500
        r.header_count = len(headers)
        r.body_bytes = len(body)
        try:
            r.header_bytes = out.head(proto, '500 Internal Server Error', headers, body)
            out.end()
        except OSError:
            return False
        return True

    def edit_headers(self, headers):
        """add-header / del-header: a new list (the app's stays as it made it), removed names first."""
        remove, add = self.header_edit
        if remove:
            kept = []
            for h in headers:
                name = h[0]
                if name.__class__ is not str or name.lower() not in remove:
                    kept.append(h)
        else:
            kept = list(headers)
        kept.extend(add)
        return kept

    # ---- logging -------------------------------------------------------------------------------------------

    def log_error(self, message):
        line = '[pid: %d|worker %d] %s\n' % (self.pid, self.worker_id, message)
        _write_stderr(line if self.date_prefix is None else self.date_prefix() + line)

    def log_line(self, message):
        """A line as given (the routing action log:, as uWSGI writes it), with the log-date prefix."""
        line = message + '\n'
        _write_stderr(line if self.date_prefix is None else self.date_prefix() + line)

    def log_wanted(self, r, usec):
        """Conditional logging (log-4xx, log-5xx, log-slow, log-big, log-zero): any one is enough."""
        w = self.log_when
        code = r.code
        return ((w['status4xx'] and 400 <= code <= 499) or (w['status5xx'] and 500 <= code <= 599)
                or (w['slowMs'] and usec // 1000 > w['slowMs']) or (w['bigBytes'] and r.body_bytes >= w['bigBytes'])
                or (w['zero'] and r.body_bytes == 0))

    def log_request(self, environ, nvars, vars_size, start, usec, r, requests, core_state):
        core = core_state.index
        if self.log_format is not None:
            c = LogContext()
            c.environ = environ
            c.r = r
            c.start = start
            c.usec = usec
            c.addr = client_address(environ, self.x_forwarded_for)
            c.pid = self.pid
            c.worker_id = self.worker_id
            c.core = core
            c.logvars = core_state.logvars
            c.nvars = nvars
            c.pktsize = vars_size
            _write_log(self.log_format(c) + '\n')
            return
        line = '%s[pid: %d|app: %d|req: %d/%d] %s (%s) {%d vars in %d bytes} [%s] %s %s => generated %d bytes in %s (%s %d) %d headers in %d bytes (1 switches on core %d)\n' % (
            (environ.get('HTTP_HOST') or environ.get('SERVER_NAME', '')) + ' ' if self.log_host else '', self.pid, core_state.app_id, requests, self.scoreboard.total_requests(), client_address(environ, self.x_forwarded_for) or '-',
            environ.get('REMOTE_USER', ''), nvars, vars_size, _ctime(start), environ.get('REQUEST_METHOD', ''),
            environ.get('REQUEST_URI', environ.get('PATH_INFO', '')), r.body_bytes, ('%d micros' % usec) if self.log_micros else ('%d msecs' % (usec // 1000)),
            environ.get('SERVER_PROTOCOL', ''), r.code, r.header_count, r.header_bytes, core)
        _write_log(line)


def _write_stderr(line):
    try:
        os.write(2, line.encode('utf-8', 'replace'))
    except OSError:
        pass


REQ_LOG_FD = 2  # request lines: stderr (the log), or the log master's request pipe with req-logger


def _write_log(line):
    try:
        os.write(REQ_LOG_FD, line.encode('utf-8', 'replace'))
    except OSError:
        pass


def _short_repr(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


_MSG_DONTWAIT = socket.MSG_DONTWAIT
_SOCK_STREAM = _socket.SOCK_STREAM
_SIGINT = _signal.SIGINT
_SIGQUIT = _signal.SIGQUIT
_SIGTERM = _signal.SIGTERM
