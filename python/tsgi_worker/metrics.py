"""uwsgi.metric_get/set/inc/dec/mul/div (docs/metrics.md).

The values live in the master's shared file (one little-endian int64 per metric, in the master's order): the
app reads and updates them in place, so an update costs a record lock on 8 bytes and never a message to the
master. Off (no enable-metrics), the functions answer as uWSGI's do then: 0 for a get, None for a change.
"""
import fcntl
import mmap
import struct

_Q = struct.Struct('<q')
_LIMIT = 1 << 63


class Metrics(object):
    def __init__(self, conf):
        self.fd = conf['fd']
        self.mm = mmap.mmap(self.fd, conf['size'], mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        # name -> (offset, writable): built-in (collected) metrics and aliases are the master's, read-only here.
        self.index = {name: (slot * 8, writable) for name, slot, writable in conf['table']}

    def get(self, name):
        e = self.index.get(name)
        if e is None:
            return 0
        return _Q.unpack_from(self.mm, e[0])[0]

    def update(self, name, op, value):
        e = self.index.get(name)
        if e is None or not e[1]:
            return None
        off = e[0]
        # A lock on the metric's 8 bytes: workers' read-modify-write must not interleave (uWSGI takes a lock too).
        fcntl.lockf(self.fd, fcntl.LOCK_EX, 8, off)
        try:
            v = op(_Q.unpack_from(self.mm, off)[0], value)
            # int64 arithmetic wraps as in C.
            v = ((v + _LIMIT) % (1 << 64)) - _LIMIT
            _Q.pack_into(self.mm, off, v)
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 8, off)
        return True


def _div(a, b):
    # C division truncates toward zero.
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


_OPS = {
    'metric_set': lambda a, b: b,
    'metric_inc': lambda a, b: a + b,
    'metric_dec': lambda a, b: a - b,
    'metric_mul': lambda a, b: a * b,
    'metric_div': _div,
}


def functions(conf):
    """The uwsgi module's metric functions, on the shared file described by conf (None: metrics are off)."""
    m = Metrics(conf) if conf else None

    def _args(fname, name, value):
        if not isinstance(name, str):
            raise TypeError('%s() argument 1 must be str, not %s' % (fname, type(name).__name__))
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError('%s() argument 2 must be int, not %s' % (fname, type(value).__name__))

    def metric_get(name):
        _args('metric_get', name, 0)
        return m.get(name) if m else 0

    def make(fname, default):
        op = _OPS[fname]

        def f(name, value=default):
            _args(fname, name, value)
            if m is None:
                return None
            if fname == 'metric_div' and value == 0:
                return None
            return m.update(name, op, value)
        f.__name__ = fname
        return f

    out = {'metric_get': metric_get}
    for fname in _OPS:
        if fname == 'metric_set':
            def metric_set(name, value, _f=make('metric_set', 0)):
                return _f(name, value)
            out[fname] = metric_set
        else:
            out[fname] = make(fname, 1)
    return out
