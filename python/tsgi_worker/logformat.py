"""`log-format`: uWSGI's request log variables (%(addr) %(method) %(uri) %(status) %(msecs) ...), compiled
once into a list of pieces. A template that starts with `{` is a JSON log: every value is JSON-escaped, so a
quote, a backslash or a control character in a URI or a header can never break a line (uWSGI's own JSON
logs could, its issue #1654)."""
import json
import time

from .procmem import memory


def _env(key):
    return lambda c: c.environ.get(key, '')


def _rss(c):
    return str(memory()[0])


def _vsz(c):
    return str(memory()[1])


VARIABLES = {
    'uri': _env('REQUEST_URI'),
    'method': _env('REQUEST_METHOD'),
    'user': _env('REMOTE_USER'),
    'host': _env('HTTP_HOST'),
    'proto': _env('SERVER_PROTOCOL'),
    'uagent': _env('HTTP_USER_AGENT'),
    'referer': _env('HTTP_REFERER'),
    'addr': lambda c: c.addr,
    'status': lambda c: str(c.r.code),
    'micros': lambda c: str(c.usec),
    'msecs': lambda c: str(c.usec // 1000),
    'secs': lambda c: '%.6f' % (c.usec / 1e6),
    'time': lambda c: str(int(c.start)),
    'ctime': lambda c: time.asctime(time.localtime(c.start)),   # C's ctime(): 'Dec  5', as uWSGI
    'ltime': lambda c: time.strftime('%d/%b/%Y:%H:%M:%S %z', time.localtime(c.start)),
    'epoch': lambda c: str(int(time.time())),
    'size': lambda c: str(c.r.body_bytes + c.r.header_bytes),
    'rsize': lambda c: str(c.r.body_bytes),
    'hsize': lambda c: str(c.r.header_bytes),
    'headers': lambda c: str(c.r.header_count),
    'cl': lambda c: c.environ.get('CONTENT_LENGTH', '') or '0',
    'pid': lambda c: str(c.pid),
    'wid': lambda c: str(c.worker_id),
    'core': lambda c: str(c.core),
    'switches': lambda c: '1',
    'vars': lambda c: str(c.nvars),
    'pktsize': lambda c: str(c.pktsize),
    'modifier1': lambda c: '0',
    'modifier2': lambda c: '0',
    'rss': _rss,
    'vsz': _vsz,
    'rssM': lambda c: str(memory()[0] // (1024 * 1024)),
    'vszM': lambda c: str(memory()[1] // (1024 * 1024)),
}


def _logvar(name):
    def get(c):
        logvars = c.logvars
        if logvars is None:
            return '-'
        return logvars.get(name, '-')
    return get


class LogContext(object):
    """What one request's log line is made of."""
    __slots__ = ('environ', 'r', 'start', 'usec', 'addr', 'pid', 'worker_id', 'core', 'nvars', 'pktsize', 'logvars')


def _json_escape(value):
    return json.dumps(value)[1:-1]


def compile_format(template, x_forwarded_for=False, ftime=None):
    """Returns a function LogContext -> line (without the newline)."""
    escape = _json_escape if template.lstrip().startswith('{') else None
    pieces = []
    i = 0
    while i < len(template):
        start = template.find('%(', i)
        if start == -1:
            pieces.append(template[i:])
            break
        close = template.find(')', start)
        if close == -1:
            pieces.append(template[i:])
            break
        pieces.append(template[i:start])
        name = template[start + 2:close]
        if name == 'ftime':
            # logformat-strftime with a log-date format; else the same as %(ltime).
            getter = VARIABLES['ltime'] if ftime is None else (lambda f: lambda c: time.strftime(f, time.localtime(c.start)))(ftime)
        elif name.startswith('var.'):
            getter = _env(name[4:])
        else:
            getter = VARIABLES.get(name)
            if getter is None:
                # Any other name is a logvar the app sets with uwsgi.set_logvar(); '-' when unset, as in uWSGI.
                getter = _logvar(name)
        pieces.append(getter if escape is None else (lambda g: lambda c: escape(g(c)))(getter))
        i = close + 1

    def line(c):
        return ''.join([p if p.__class__ is str else p(c) for p in pieces])
    return line


def date_prefix(setting):
    """log-date: what goes before a log line that is not a request line; None when off."""
    if setting is None:
        return None
    fmt = '%a %b %e %H:%M:%S %Y' if setting in ('true', '1') else setting
    return lambda: time.strftime(fmt, time.localtime()) + ' - '


def client_address(environ, x_forwarded_for):
    """%(addr): REMOTE_ADDR, or with log-x-forwarded-for the first address of X-Forwarded-For."""
    if x_forwarded_for:
        xff = environ.get('HTTP_X_FORWARDED_FOR')
        if xff:
            return xff.split(',')[0].strip()
    return environ.get('REMOTE_ADDR', '')
