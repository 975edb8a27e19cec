"""Static files on the worker's uwsgi sockets: static-map, static-map2, check-static and friends, answered
before the app is called (docs/static-files.md is the contract; the HTTP router follows the same one).

Everything that does not depend on the request is prepared once, when the worker starts: the mime table, the
mounts in the byte form PATH_INFO arrives in, the real paths of the mount roots and static-safe directories,
the compiled regular expressions. Per request, `lookup` only decides: a request under no mount costs a method
comparison and one prefix test; the disk is touched only under a mount. The caller (server.py) sends the
answer and logs and counts the request like any other.

This module is imported only when the configuration maps something: without static options a worker pays
nothing for it.
"""
import mimetypes
import os
import re
import stat as _stat
import time
from email.utils import mktime_tz, parsedate_tz

DEFAULT_MIME_FILE = '/etc/mime.types'
UNKNOWN_TYPE = 'application/octet-stream'

_DAYS = ('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')
_MONTHS = ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec')
_S_ISREG = _stat.S_ISREG
_S_ISDIR = _stat.S_ISDIR
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC


def http_date(seconds):
    """An HTTP date (IMF-fixdate), whatever the locale: Thu, 01 Jan 1970 00:00:00 GMT."""
    t = time.gmtime(seconds)
    return '%s, %02d %s %04d %02d:%02d:%02d GMT' % (
        _DAYS[t.tm_wday], t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min, t.tm_sec)


def parse_http_date(text):
    """Seconds since the epoch, or None when `text` is not a date (any of HTTP's three formats)."""
    try:
        parsed = parsedate_tz(text)
        return None if parsed is None else mktime_tz(parsed)
    except (TypeError, ValueError, OverflowError):
        return None


def load_mime_types(files, log_error):
    """extension (lower case, without the dot) -> content type. From `files` (mime.types format, later files
    win), else /etc/mime.types when it exists, else Python's built-in table."""
    if not files:
        files = [DEFAULT_MIME_FILE] if os.path.isfile(DEFAULT_MIME_FILE) else []
    types = {}
    if not files:
        builtin = mimetypes.MimeTypes()   # an instance holds only the built-in defaults
        for strict in (False, True):      # the strict (registered) types win
            for ext, ctype in builtin.types_map[strict].items():
                types[ext.lstrip('.').lower()] = ctype
        return types
    for path in files:
        try:
            with open(path, 'r', encoding='utf-8', errors='replace') as f:
                for line in f:
                    fields = line.split('#', 1)[0].split()
                    for ext in fields[1:]:
                        types[ext.lower()] = fields[0]
        except OSError as e:
            log_error('mime-file %s cannot be read (%s); its types are not known' % (path, e.strerror or e))
    return types


def accepts_gzip(header):
    """The client's Accept-Encoding lists gzip, and not with q=0."""
    if not header or 'gzip' not in header.lower():
        return False
    for part in header.split(','):
        params = part.split(';')
        if params[0].strip().lower() != 'gzip':
            continue
        for param in params[1:]:
            name, _, value = param.partition('=')
            if name.strip().lower() == 'q':
                try:
                    if float(value.strip()) == 0:
                        return False
                except ValueError:
                    pass
        return True
    return False


def _under(path, root):
    """`path` is `root` or lies below it (both real paths)."""
    return path == root or path.startswith(root if root.endswith('/') else root + '/')


def _wire(text):
    """A str from the configuration in the form PATH_INFO arrives in: its UTF-8 bytes, one char per byte."""
    return text.encode('utf-8', 'surrogateescape').decode('latin-1')


def _fs(text):
    """A PATH_INFO piece (bytes as latin-1 chars) as a file system path str."""
    return text if text.isascii() else os.fsdecode(text.encode('latin-1'))


class StaticReply(object):
    """What to answer: the status line, the headers, and the open file to send (-1: no body)."""
    __slots__ = ('code', 'status', 'headers', 'fd', 'size', 'path')

    def __init__(self, code, status, headers, fd, size, path):
        self.code = code
        self.status = status
        self.headers = headers
        self.fd = fd
        self.size = size
        self.path = path


class StaticFiles(object):
    def __init__(self, conf, log_error):
        self.log_error = log_error
        mounts = []
        for m in conf['mounts']:
            mount = _wire(m['mount'])
            root = m['path']
            # The rest of the path after the mount keeps its leading '/': `/static/=/srv/static/` (whose PATH
            # lost its trailing slash when it was resolved) must give /srv/static/a.css, not /srv/statica.css.
            cut = len(mount) - 1 if mount.endswith('/') else len(mount)
            prefix = mount if (mount == '' or mount.endswith('/')) else mount + '/'
            mounts.append((mount, prefix, root, m['appendWhole'], cut, os.path.realpath(root)))
        self.mounts = tuple(mounts)
        # A path can only be static when it equals a mount or starts with one of these (check-static's '' is
        # a prefix of everything): one C-level call rules out every request under no mount.
        self.prefixes = tuple(m[1] for m in mounts)
        self.exact = frozenset(m[0] for m in mounts)
        self.index = tuple(conf['index'])
        self.skip_ext = tuple(_wire(e) for e in conf['skipExt'])
        self.safe = tuple(os.path.realpath(d) for d in conf['safe'])
        rules = []
        for rule in conf['expires']:
            pattern = rule['pattern'] if rule['match'] == 'type' else self._compile(rule['pattern'], 'an Expires rule')
            if pattern is not None:
                rules.append((rule['match'], pattern, rule['seconds'], rule['fromMtime']))
        self.expires = tuple(rules)
        self.gzip_all = conf['gzipAll']
        self.gzip_regex = tuple(r for r in (self._compile(p, 'static-gzip') for p in conf['gzipRegex']) if r is not None)
        self.gzip_ext = tuple(conf['gzipExt'])
        self.gzip_dir = tuple(d if d.endswith('/') else d + '/' for d in conf['gzipDir'])
        self.gzip_any = bool(self.gzip_all or self.gzip_regex or self.gzip_ext or self.gzip_dir)
        self.mime = load_mime_types(conf['mimeFiles'], log_error)

    def _compile(self, pattern, what):
        """The configuration checked the pattern as a JavaScript regular expression; the few that Python's re
        reads differently (a named group spelled (?<name>...)) are said (once per worker) and left out, rather than stopping
        every worker at start."""
        try:
            return re.compile(pattern)
        except re.error as e:
            self.log_error("the regular expression '%s' of %s is not one Python can read (%s); the rule is ignored"
                           % (pattern, what, e))
            return None

    # ---- which file ----------------------------------------------------------------------------------------

    def lookup(self, environ):
        """The answer for this request when a mount gives a file, else None (the app answers)."""
        method = environ.get('REQUEST_METHOD')
        if method != 'GET' and method != 'HEAD':
            return None
        path = environ['PATH_INFO']
        if not path.startswith(self.prefixes) and path not in self.exact:
            return None
        if '\x00' in path or (self.skip_ext and path.endswith(self.skip_ext)):
            return None
        whole = None
        for mount, prefix, root, append_whole, cut, real_root in self.mounts:
            if path != mount and not path.startswith(prefix):
                continue
            if append_whole:
                if whole is None:
                    whole = _fs(path)
                candidate = root + whole
            else:
                candidate = root + _fs(path[cut:])
            found = self._regular_file(candidate)
            if found is None:
                continue
            file, st = found
            if not self._safe(file, root, real_root):
                continue
            reply = self._answer(environ, method, file, root, real_root)
            if reply is not None:
                return reply
        return None

    def _regular_file(self, candidate):
        """(path, stat) of the candidate when it is a regular file, or of its first static-index file when it
        is a directory; None otherwise."""
        try:
            st = os.stat(candidate)
        except (OSError, ValueError):
            return None
        if _S_ISREG(st.st_mode):
            return candidate, st
        if not _S_ISDIR(st.st_mode):
            return None
        base = candidate if candidate.endswith('/') else candidate + '/'
        for name in self.index:
            try:
                st = os.stat(base + name)
            except (OSError, ValueError):
                continue
            if _S_ISREG(st.st_mode):
                return base + name, st
        return None

    def _safe(self, file, root, real_root):
        """The file's real path is the mount's root (a mount of one file), under it, or under a static-safe
        directory; otherwise one line says why it is not served."""
        try:
            real = os.path.realpath(file)
        except (OSError, ValueError):
            return False
        if _under(real, real_root):
            return True
        for d in self.safe:
            if _under(real, d):
                return True
        self.log_error('static file %s is outside %s and every static-safe directory' % (file, root))
        return False

    def _gzip_covers(self, file):
        if self.gzip_all or file.endswith(self.gzip_ext) or file.startswith(self.gzip_dir):
            return True
        for regex in self.gzip_regex:
            if regex.search(file):
                return True
        return False

    # ---- the answer ----------------------------------------------------------------------------------------

    def _answer(self, environ, method, file, root, real_root):
        """Opens what will be sent (FILE, or FILE.gz) and builds the head: 200, or 304. None when the file
        cannot be opened (the next mount is tried)."""
        slash = file.rfind('/')
        dot = file.rfind('.')
        ctype = UNKNOWN_TYPE
        if dot > slash:
            ctype = self.mime.get(file[dot + 1:].lower(), UNKNOWN_TYPE)
        vary = self.gzip_any and self._gzip_covers(file)
        fd = -1
        gzip = False
        if vary and accepts_gzip(environ.get('HTTP_ACCEPT_ENCODING')):
            gz = file + '.gz'
            try:
                if _S_ISREG(os.stat(gz).st_mode) and self._safe(gz, root, real_root):
                    fd = os.open(gz, _OPEN_FLAGS)
                    gzip = True
            except (OSError, ValueError):
                fd = -1
        if fd < 0:
            try:
                fd = os.open(file, _OPEN_FLAGS)
            except (OSError, ValueError):
                return None
        try:
            # The facts of the bytes that will be sent, not of the earlier stat (the file may have been replaced).
            st = os.fstat(fd)
            if not _S_ISREG(st.st_mode):
                os.close(fd)
                return None
        except OSError:
            os.close(fd)
            return None
        mtime = int(st.st_mtime)
        last_modified = http_date(mtime)
        ims = environ.get('HTTP_IF_MODIFIED_SINCE')
        if ims is not None:
            since = mtime if ims == last_modified else parse_http_date(ims)
            if since is not None and mtime <= since:
                os.close(fd)
                headers = [('Last-Modified', last_modified)]
                if vary:
                    headers.append(('Vary', 'Accept-Encoding'))
                return StaticReply(304, '304 Not Modified', headers, -1, 0, file)
        size = st.st_size
        headers = [('Content-Type', ctype), ('Content-Length', str(size)), ('Last-Modified', last_modified)]
        if self.expires:
            expires = self._expires(environ, file, ctype, st.st_mtime)
            if expires is not None:
                headers.append(('Expires', expires))
        if gzip:
            headers.append(('Content-Encoding', 'gzip'))
        if vary:
            headers.append(('Vary', 'Accept-Encoding'))
        if method == 'HEAD':
            os.close(fd)
            fd = -1
        return StaticReply(200, '200 OK', headers, fd, size, file)

    def _expires(self, environ, file, ctype, mtime):
        """The Expires value of the first rule that matches (in the order the settings list them), or None."""
        for match, pattern, seconds, from_mtime in self.expires:
            if match == 'filename':
                hit = pattern.search(file) is not None
            elif match == 'uri':
                uri = environ.get('REQUEST_URI')
                if uri is None:
                    qs = environ.get('QUERY_STRING')
                    uri = environ['PATH_INFO'] + ('?' + qs if qs else '')
                hit = pattern.search(uri) is not None
            elif match == 'path-info':
                hit = pattern.search(_fs(environ['PATH_INFO'])) is not None
            else:
                hit = pattern == ctype
            if hit:
                return http_date((mtime if from_mtime else time.time()) + seconds)
        return None
