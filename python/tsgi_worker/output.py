"""Where a response goes: a one-shot uwsgi connection (an HTTP head and the body, ended by closing), or the
router's persistent link (framed, see docs/protocol-link.md)."""
import os
import socket
import struct

_U16 = struct.Struct('<H')
_FRAME = struct.Struct('<I')   # type in the low byte, payload length in the upper 24 bits

HELLO, HEAD, BODY, END, ABORT, GOODBYE = 1, 2, 3, 4, 5, 6
MAX_FRAME = (1 << 24) - 1
END_FRAME = _FRAME.pack(END)
_MSG_DONTWAIT = socket.MSG_DONTWAIT
ABORT_FRAME = _FRAME.pack(ABORT)
GOODBYE_FRAME = _FRAME.pack(GOODBYE)


def check_header(name, value):
    if name.__class__ is not str or value.__class__ is not str:
        raise TypeError('header %r: name and value must be str' % ((name, value),))
    if '\n' in value or '\r' in value or '\n' in name or '\r' in name or ':' in name or not name:
        raise ValueError('header %r contains a line break or a bad name' % ((name, value),))


def head_block(proto, status, headers):
    """The HTTP head as bytes. Checked as a whole: as many line breaks as lines (no header can split the
    response), and only str (a bytes header is an app error, said precisely)."""
    parts = [proto, ' ', status, '\r\n']
    for header in headers:
        parts += (header[0], ': ', header[1], '\r\n')
    parts.append('\r\n')
    try:
        text = ''.join(parts)
    except TypeError:
        for name, value in headers:
            check_header(name, value)
        raise
    lines = len(headers) + 2
    if text.count('\n') != lines or text.count('\r') != lines:
        for name, value in headers:
            check_header(name, value)
        check_header('Status', status)
    return text.encode('latin-1')


def frame_header(kind, length):
    return _FRAME.pack(kind | (length << 8))


def hello_frame(pid):
    return frame_header(HELLO, 4) + struct.pack('<I', pid)


class Held(object):
    """The responses of a pipelined batch (docs/protocol-keepalive.md), gathered to leave in one write: the front
    server then reads them at once and its clients' next requests come back together, as the next batch."""
    __slots__ = ('parts', 'size', 'send', 'conn_recv')

    LIMIT = 65536   # past this, what is held goes out at once

    def __init__(self, send, conn_recv):
        self.parts = []
        self.size = 0
        self.send = send
        self.conn_recv = conn_recv

    def add(self, data):
        self.parts.append(data)
        self.size += len(data)
        if self.size > self.LIMIT:
            self.flush()

    def flush(self):
        parts = self.parts
        if parts:
            self.parts = []
            self.size = 0
            self.send(parts[0] if len(parts) == 1 else b''.join(parts))

    def recv(self, *args):
        """A read that may wait: what is held goes first (the front server may be waiting for it)."""
        self.flush()
        return self.conn_recv(*args)


class RawOutput(object):
    """A uwsgi connection from a front server: the response is an HTTP head then the body, and closing ends
    it — unless the front server offered tsgi's keep-alive extension (docs/protocol-keepalive.md), in which
    case the body is framed (Content-Length or chunked) and the connection can carry the next request."""
    __slots__ = ('send', 'fileno', 'keepalive', 'bodiless', 'chunked', 'declared', 'sent', 'arm', '_sock', 'held')

    def __init__(self, sock, keepalive=False, bodiless=False, arm=None):
        # `arm` (a Unix connection whose socket-timeout is not set yet) sets it. A send that completes at
        # once, which is every send to a front server that reads, never needs it; one that cannot arms it
        # first, so a client that stops reading loses its connection after socket-timeout instead of
        # holding this worker for good.
        self.arm = arm
        self._sock = sock
        self.send = sock.sendall if arm is None else self._send_or_arm
        self.fileno = sock.fileno()
        self.keepalive = keepalive      # the request's TSGI_KEEPALIVE ('1', or '2': it may pipeline), else False
        self.bodiless = bodiless        # a HEAD request: no body whatever the headers say
        self.chunked = False
        self.declared = -1
        self.sent = 0
        self.held = None

    def hold(self, held):
        """This response waits in `held` to leave with the rest of its batch."""
        self.held = held
        self.send = held.add

    def head(self, proto, status, headers, chunk):
        if self.keepalive:
            headers = self._frame(status, headers)
            proto = 'HTTP/1.1'
        block = head_block(proto, status, headers)
        if chunk:
            self.sent += len(chunk)
            if self.chunked:
                chunk = b'%x\r\n%s\r\n' % (len(chunk), chunk)
            self.send(block + chunk)
        else:
            self.send(block)
        return len(block)

    def _send_or_arm(self, data):
        try:
            n = self._sock.send(data, _MSG_DONTWAIT)
        except BlockingIOError:
            n = 0
        if n < len(data):
            self._arm()
            self._sock.sendall(memoryview(data)[n:])

    def _arm(self):
        if self.arm is not None:
            self.arm()
            self.arm = None
            self.send = self._sock.sendall

    def _frame(self, status, headers):
        """Keep-alive: make the body's end explicit, or give up keeping the connection."""
        code = int(status[:3])
        for name, value in headers:
            lower = name.lower()
            if lower == 'content-length':
                try:
                    self.declared = int(value)
                except ValueError:
                    self.keepalive = False
            elif lower == 'transfer-encoding' or (lower == 'connection' and 'close' in value.lower()):
                self.keepalive = False
        if not self.keepalive:
            return headers
        headers = list(headers)
        if not (self.bodiless or code < 200 or code in (204, 304)) and self.declared < 0:
            self.chunked = True
            headers.append(('Transfer-Encoding', 'chunked'))
        headers.append(('X-Tsgi-Keepalive', self.keepalive))
        return headers

    def body(self, chunk):
        self.sent += len(chunk)
        if self.chunked:
            self.send(b'%x\r\n%s\r\n' % (len(chunk), chunk))
        else:
            self.send(chunk)

    def end(self):
        if self.chunked:
            self.send(b'0\r\n\r\n')

    def last(self, chunk):
        """The body's last chunk, and the end."""
        self.sent += len(chunk)
        if self.chunked:
            self.send(b'%x\r\n%s\r\n0\r\n\r\n' % (len(chunk), chunk))
        else:
            self.send(chunk)

    def whole(self, proto, status, headers, chunk):
        """A complete response: head, body and end."""
        n = self.head(proto, status, headers, chunk)
        self.end()
        return n

    def abort(self):
        self.keepalive = False

    def reusable(self):
        """After a complete response: can the connection carry another request?"""
        return self.keepalive and (self.chunked or self.bodiless or self.declared < 0 or self.sent == self.declared)

    def sendfile(self, fd, offset, count):
        if self.held is not None:
            # The file goes straight to the socket: what is held goes before it, and nothing more is held.
            self.held.flush()
            self.held = None
            self.send = self._sock.sendall if self.arm is None else self._send_or_arm
        self._arm()   # a file is sent in many writes: any may have to wait for the client
        if self.chunked:
            self.send(b'%x\r\n' % count)
        sent = 0
        sendfile = os.sendfile
        out = self.fileno
        while sent < count:
            n = sendfile(out, fd, offset + sent, count - sent)
            if n == 0:
                break
            sent += n
        if self.chunked:
            if sent != count:
                self.keepalive = False
            else:
                self.send(b'\r\n')
        self.sent += sent
        return sent


def _head_payload(status, headers):
    """A HEAD frame's payload: status, then name/value pairs, each u16-LE-length-prefixed latin-1."""
    s = status.encode('latin-1')
    parts = [_U16.pack(len(s)), s]
    for name, value in headers:
        check_header(name, value)
        n = name.encode('latin-1')
        v = value.encode('latin-1')
        parts.append(_U16.pack(len(n)))
        parts.append(n)
        parts.append(_U16.pack(len(v)))
        parts.append(v)
    return b''.join(parts)


class LinkOutput(object):
    """The router's link: HEAD, BODY... and END frames; the connection stays open for the next request."""
    __slots__ = ('send', 'fileno')

    def __init__(self, sock):
        self.send = sock.sendall
        self.fileno = sock.fileno()

    def head(self, proto, status, headers, chunk):
        payload = _head_payload(status, headers)
        if chunk and len(chunk) <= MAX_FRAME:
            self.send(b''.join((frame_header(HEAD, len(payload)), payload, frame_header(BODY, len(chunk)), chunk)))
        else:
            self.send(frame_header(HEAD, len(payload)) + payload)
            if chunk:
                self.body(chunk)
        return len(payload)

    def whole(self, proto, status, headers, chunk):
        """A complete response (the app returned one chunk): HEAD, BODY and END in one write, so the router
        gets it in one read, and is woken once."""
        if len(chunk) > MAX_FRAME:
            n = self.head(proto, status, headers, chunk)
            self.end()
            return n
        payload = _head_payload(status, headers)
        parts = [frame_header(HEAD, len(payload)), payload]
        if chunk:
            parts += (frame_header(BODY, len(chunk)), chunk)
        parts.append(END_FRAME)
        self.send(b''.join(parts))
        return len(payload)

    def body(self, chunk):
        n = len(chunk)
        if n <= MAX_FRAME:
            self.send(frame_header(BODY, n) + chunk)
            return
        view = memoryview(chunk)
        for off in range(0, n, MAX_FRAME):
            piece = view[off:off + MAX_FRAME]
            self.send(frame_header(BODY, len(piece)))
            self.send(piece)

    def end(self):
        self.send(END_FRAME)

    def last(self, chunk):
        """The body's last chunk and END in one write: the router is woken once, and frees the link at once."""
        n = len(chunk)
        if n <= MAX_FRAME:
            self.send(b''.join((frame_header(BODY, n), chunk, END_FRAME)))
        else:
            self.body(chunk)
            self.send(END_FRAME)

    def abort(self):
        self.send(ABORT_FRAME)

    def sendfile(self, fd, offset, count):
        """Each frame's bytes go straight from the file with sendfile()."""
        sent = 0
        sendfile = os.sendfile
        out = self.fileno
        while sent < count:
            n = min(count - sent, MAX_FRAME)
            self.send(frame_header(BODY, n))
            done = 0
            while done < n:
                k = sendfile(out, fd, offset + sent + done, n - done)
                if k == 0:
                    # The file shrank under us: the frame cannot be completed, so the link cannot go on.
                    raise IOError('file ended while it was being sent')
                done += k
            sent += n
        return sent
