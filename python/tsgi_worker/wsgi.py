"""PEP 3333 pieces the worker hands to the app: wsgi.input, wsgi.errors, wsgi.file_wrapper."""
import io
import sys


class EmptyInput(object):
    """wsgi.input of a request without a body. Stateless, so one instance serves every such request."""
    __slots__ = ()

    def read(self, size=-1):
        return b''

    def readline(self, size=-1):
        return b''

    def readlines(self, hint=-1):
        return []

    def __iter__(self):
        return iter(())

    def close(self):
        pass


EMPTY_INPUT = EmptyInput()


class SocketInput(object):
    """wsgi.input for a body still arriving on the connection: reads never go past CONTENT_LENGTH, so a read
    can never block waiting for bytes the client will not send."""
    __slots__ = ('_recv', '_buf', '_remaining')

    def __init__(self, recv, initial, remaining):
        self._recv = recv
        self._buf = initial          # bytes received but not yet given to the app
        self._remaining = remaining  # bytes still to receive from the socket

    def _fill(self, want):
        """Receives until the buffer holds `want` bytes or the body is complete."""
        chunks = [self._buf] if self._buf else []
        have = len(self._buf)
        recv = self._recv
        while have < want and self._remaining > 0:
            chunk = recv(min(self._remaining, max(want - have, 65536)))
            if not chunk:
                raise IOError('client closed the connection with %d body bytes unsent' % self._remaining)
            self._remaining -= len(chunk)
            have += len(chunk)
            chunks.append(chunk)
        self._buf = b''.join(chunks)

    def read(self, size=-1):
        if size is None or size < 0:
            self._fill(len(self._buf) + self._remaining)
            out, self._buf = self._buf, b''
            return out
        if len(self._buf) < size:
            self._fill(size)
        out, self._buf = self._buf[:size], self._buf[size:]
        return out

    def readline(self, size=-1):
        while True:
            nl = self._buf.find(b'\n')
            if nl != -1 and (size is None or size < 0 or nl < size):
                out, self._buf = self._buf[:nl + 1], self._buf[nl + 1:]
                return out
            if size is not None and 0 <= size <= len(self._buf):
                out, self._buf = self._buf[:size], self._buf[size:]
                return out
            if self._remaining == 0:
                out, self._buf = self._buf, b''
                return out
            self._fill(len(self._buf) + 1)

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def unread_bytes(self):
        return self._remaining

    def close(self):
        pass


def make_input(recv, data, body_start, content_length):
    """The wsgi.input for a request whose body starts at data[body_start]."""
    if content_length <= 0:
        return EMPTY_INPUT
    have = len(data) - body_start
    if have >= content_length:
        return io.BytesIO(data[body_start:body_start + content_length])
    return SocketInput(recv, data[body_start:], content_length - have)


class ErrorStream(object):
    """wsgi.errors: text written by the app goes to the log (the worker's stderr)."""
    __slots__ = ()

    def write(self, s):
        return sys.stderr.write(s)

    def writelines(self, seq):
        for s in seq:
            sys.stderr.write(s)

    def flush(self):
        sys.stderr.flush()


class FileWrapper(object):
    """wsgi.file_wrapper: the worker sends the file with sendfile() when it has a real file descriptor."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, 'close'):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def fileno(self):
        """The file descriptor to sendfile from, or None."""
        try:
            fd = self.filelike.fileno()
        except (AttributeError, io.UnsupportedOperation, OSError):
            return None
        return fd
