"""uWSGI's internal routing (route, route-run, route-if, route-label, ...), run in the worker before static files
and the app, as uWSGI runs it. The rules arrive checked (src/config/routing.ts): names are canonical, regular
expressions valid, goto targets of fixed labels exist further down. docs/routing.md says what is supported.

Per request: the rules run top to bottom. A regexp rule matches its request variable (PATH_INFO for `route`) with
re.search, as PCRE does; a condition (route-if) is tested on its expanded arguments. An action either lets the
next rule run (NEXT), ends the rules and goes on to the app (CONTINUE), or answers the request itself (a response,
or CLOSE: nothing is sent, as uWSGI's `break` without a status).

Texts are expanded as uWSGI's uwsgi_routing_translate does: first $0..$9 from the rule's regular expression (a
`$` before anything else than a digit stays, a trailing one goes), then ${VAR} from the request variables and
${name[key]} route variables.
"""
import base64
import binascii
import email.utils
import ipaddress
import os
import re
import stat
import struct
import time
import uuid
from urllib.parse import unquote

# What an action says: the next rule, the app, or the answer is ready; an int >= 0 is a goto's rule index.
NEXT, CONTINUE, RESPOND = -1, -2, -3
CLOSE = object()   # a response of nothing: the connection is closed (a link is told ABORT)

_LABEL, _RUN, _REGEXP, _COND = 0, 1, 2, 3

_NO_CAPS = ()


class Outcome(object):
    """What the rules decided for one request, beyond the environ they changed in place."""
    __slots__ = ('response', 'add', 'remove', 'quiet', 'logvars', 'store', 'no_cl')

    def __init__(self):
        self.store = None       # cachestore: (cache, key, expires, status, value, gzip key) for the app's response
        self.no_cl = False      # the cache action's no_content_length
        self.response = None    # None: the app answers; CLOSE; or (status, headers, body)
        self.add = None         # headers added to the response (addheader)
        self.remove = None      # lower-case names removed from it (delheader)
        self.quiet = False      # donotlog
        self.logvars = None     # logvar


class Rule(object):
    __slots__ = ('kind', 'label', 'subject', 'regex', 'cond', 'negate', 'args', 'cond_regex', 'action', 'arg', 'extra',
                 'where', 'code')


def _dynamic(text):
    return text if '$' not in text else _Template(text)


class _Template(object):
    __slots__ = ('text',)

    def __init__(self, text):
        self.text = text


class Routing(object):
    status = 0   # the response's status code, for the error and response tables' `status` rules

    def __init__(self, rules, worker_id, pid, log_error, log_line):
        self.worker_id = worker_id
        self.pid = pid
        self.log_error = log_error
        self.log_line = log_line
        self.rules = []
        self.labels = {}
        for spec in rules:
            self.rules.append(self._compile(spec, len(self.rules)))

    def _compile(self, spec, index):
        r = Rule()
        r.where = spec['where']
        r.label = spec.get('label')
        r.subject = r.regex = r.cond = r.args = r.cond_regex = r.action = r.arg = r.extra = None
        r.negate = False
        if r.label is not None:
            r.kind = _LABEL
            self.labels.setdefault(r.label, index)
            return r
        if spec.get('pattern') is not None:
            r.kind = _REGEXP
            r.subject = spec['subject']
            r.regex = re.compile(spec['pattern'])
        elif spec.get('cond') is not None:
            r.kind = _COND
            r.cond = spec['cond']
            r.negate = bool(spec.get('negate'))
            r.args = [_dynamic(a) for a in spec['args']]
            if r.cond == 'regexp':
                r.cond_regex = re.compile(spec['args'][1])
            elif r.cond == 'status':
                r.code = int(spec['args'][0])
        else:
            r.kind = _RUN
        r.action = action = spec['action']
        arg = spec.get('arg', '')
        if action == 'return':
            reason = spec['reason']
            r.extra = ('%s %s' % (arg, reason), reason.encode('latin-1'))
            r.arg = arg
        elif action in ('basicauth', 'basicauth-next'):
            realm, _, creds = arg.partition(',')
            colon = creds.find(':')
            # (realm, credentials or htpasswd file, user name length or -1 for a file)
            r.extra = (realm, creds, colon)
            r.arg = arg
        elif action in _CACHE_ACTIONS:
            # router_cache's KEY=VALUE list, split once; each value is expanded per request
            kv = []
            for part in arg.split(','):
                if part:
                    k, _, v = part.partition('=')
                    kv.append((k, _dynamic(v)))
            r.extra = kv
            r.arg = arg
        elif action in ('logvar', 'addvar'):
            key, _, value = arg.partition('=')
            r.extra = key
            r.arg = _dynamic(value)
        else:
            r.arg = _dynamic(arg)
        return r

    # ---- expansion -------------------------------------------------------------------------------------------

    def expand(self, text, environ, caps):
        if text.__class__ is str:
            return text
        return self._vars(_apply_caps(text.text, caps), environ)

    def _vars(self, s, environ):
        if '${' not in s:
            return s
        out = []
        i = 0
        n = len(s)
        while i < n:
            j = s.find('${', i)
            if j < 0:
                out.append(s[i:])
                break
            out.append(s[i:j])
            k = s.find('}', j + 2)
            if k < 0:
                out.append(s[j:])
                break
            key = s[j + 2:k]
            b = key.find('[')
            if b >= 0 and key.endswith(']'):
                value = self._route_var(key[:b], key[b + 1:-1], environ)
            else:
                value = environ.get(key)
            if value:
                out.append(value if value.__class__ is str else str(value))
            i = k + 1
        return ''.join(out)

    def _route_var(self, name, key, environ):
        if name == 'cookie':
            for part in environ.get('HTTP_COOKIE', '').split(';'):
                k, eq, v = part.strip().partition('=')
                if eq and k == key:
                    return v
            return ''
        if name == 'qs':
            for part in environ.get('QUERY_STRING', '').split('&'):
                k, eq, v = part.partition('=')
                if eq and k == key:
                    return v
            return ''
        if name == 'time':
            return str(int(time.time())) if key == 'unix' else str(int(time.time() * 1000000))
        if name == 'httptime':
            try:
                delta = int(key or 0)
            except ValueError:
                delta = 0
            return email.utils.formatdate(time.time() + delta, usegmt=True)
        if name == 'uwsgi':
            if key == 'wid':
                return str(self.worker_id)
            if key == 'pid':
                return str(self.pid)
            if key == 'uuid':
                return str(uuid.uuid4())
            if key == 'sor':
                return str(int(time.time() * 1000000))
            return ''
        value = environ.get(key)
        if value is None:
            return ''
        raw = value.encode('latin-1', 'replace')
        if name == 'base64':
            return base64.b64encode(raw).decode('ascii')
        if name == 'hex':
            return binascii.hexlify(raw).decode('ascii').upper()
        return ''

    # ---- the rules -------------------------------------------------------------------------------------------

    def apply(self, environ):
        """Runs the rules for a request: changes `environ` in place, returns the Outcome (None when there is
        nothing more to do than call the app)."""
        o = None
        rules = self.rules
        n = len(rules)
        i = 0
        while i < n:
            rule = rules[i]
            kind = rule.kind
            if kind == _LABEL:
                i += 1
                continue
            caps = _NO_CAPS
            if kind == _REGEXP:
                subject = environ.get(rule.subject)
                if subject is None:
                    i += 1
                    continue
                m = rule.regex.search(subject)
                if m is None:
                    i += 1
                    continue
                caps = _captures(m)
            elif kind == _COND:
                hit, caps = self._condition(rule, environ)
                if hit == rule.negate:
                    i += 1
                    continue
            if o is None:
                o = Outcome()
            step = self._action(rule, environ, caps, o, i)
            if step == NEXT:
                i += 1
            elif step == CONTINUE:
                break
            elif step == RESPOND:
                return o
            else:
                i = step   # goto: the label, which the loop steps over
        return o

    def _condition(self, rule, environ):
        args = rule.args
        cond = rule.cond
        if cond == 'status':
            return self.status == rule.code, _NO_CAPS
        a = self.expand(args[0], environ, _NO_CAPS)
        if cond == 'empty':
            return a == '', _NO_CAPS
        if cond in ('isfile', 'isdir', 'islink', 'exists', 'isexec'):
            return _path_test(cond, a), _NO_CAPS
        if cond == 'regexp':
            m = rule.cond_regex.search(a)
            if m is None:
                return False, _NO_CAPS
            return True, _captures(m)
        b = self.expand(args[1], environ, _NO_CAPS)
        if cond == 'equal':
            return a == b, _NO_CAPS
        if cond == 'startswith':
            return a.startswith(b), _NO_CAPS
        if cond == 'endswith':
            return a.endswith(b), _NO_CAPS
        if cond == 'contains':
            return b in a, _NO_CAPS
        if cond in ('ishigher', 'islower', 'ishigherequal', 'islowerequal'):
            x, y = _strtol(a), _strtol(b)
            if cond == 'ishigher':
                return x > y, _NO_CAPS
            if cond == 'islower':
                return x < y, _NO_CAPS
            if cond == 'ishigherequal':
                return x >= y, _NO_CAPS
            return x <= y, _NO_CAPS
        if cond in ('ipv4in', 'ipv6in'):
            try:
                net = ipaddress.ip_network(b, strict=False)
                return ipaddress.ip_address(a) in net, _NO_CAPS
            except ValueError:
                return False, _NO_CAPS
        return False, _NO_CAPS

    def _action(self, rule, environ, caps, o, index):
        action = rule.action
        if action == 'continue':
            return CONTINUE
        if action == 'addheader':
            line = self.expand(rule.arg, environ, caps)
            name, _, value = line.partition(':')
            if o.add is None:
                o.add = []
            o.add.append((name.strip(), value.lstrip(' \t')))
            return NEXT
        if action == 'delheader':
            if o.remove is None:
                o.remove = set()
            o.remove.add(self.expand(rule.arg, environ, caps).strip().lower())
            return NEXT
        if action == 'log':
            self.log_line(self.expand(rule.arg, environ, caps))
            return NEXT
        if action == 'logvar':
            if o.logvars is None:
                o.logvars = {}
            o.logvars[rule.extra] = self.expand(rule.arg, environ, caps)
            return NEXT
        if action == 'donotlog':
            o.quiet = True
            return NEXT
        if action == 'addvar':
            environ[rule.extra] = self.expand(rule.arg, environ, caps)
            return NEXT
        if action == 'goto':
            label = self.expand(rule.arg, environ, caps)
            at = self.labels.get(label, -1)
            if at <= index:
                self.log_line('[uwsgi-route] ERROR "goto" instruction can only jump forward (check your label !!!)')
                o.response = CLOSE
                return RESPOND
            return at
        if action in _SETTERS:
            value = self.expand(rule.arg, environ, caps)
            key = _SETTERS[action]
            if action == 'setuser':
                value = value.partition(':')[0]
            environ[key] = value
            if action == 'setscheme':
                environ['wsgi.url_scheme'] = value
            return NEXT
        if action == 'rewrite' or action == 'rewrite-last':
            url = self.expand(rule.arg, environ, caps)
            path, q, qs = url.partition('?')
            old = environ.get('QUERY_STRING', '')
            if q:
                if old:
                    qs = qs + '&' + old
            else:
                qs = old
            environ['PATH_INFO'] = unquote(path, encoding='latin-1')
            environ['QUERY_STRING'] = qs
            return CONTINUE if action == 'rewrite-last' else NEXT
        if action == 'redirect' or action == 'redirect-permanent':
            url = self.expand(rule.arg, environ, caps)
            if action == 'redirect':
                o.response = ('302 Found', [('Location', url)], b'Moved')
            else:
                o.response = ('301 Moved Permanently', [('Location', url)], b'Moved Permanently')
            return RESPOND
        if action == 'return':
            status, body = rule.extra
            o.response = (status, [('Content-Type', 'text/plain')], body)
            return RESPOND
        if action == 'break':
            status = rule.arg if rule.arg.__class__ is str else rule.arg.text
            if len(status) >= 3:
                o.response = (status, [('Connection', 'close'), ('Content-Type', 'text/plain')], b'')
            else:
                o.response = CLOSE
            return RESPOND
        if action == 'basicauth' or action == 'basicauth-next':
            return self._basicauth(rule, environ, o, action == 'basicauth-next')
        if action in _CACHE_ACTIONS:
            return self._cache_action(rule, environ, caps, o)
        if action == 'fixpathinfo':
            sn = environ.get('SCRIPT_NAME', '')
            if sn:
                environ['PATH_INFO'] = environ.get('PATH_INFO', '')[len(sn):]
            return NEXT
        if action == 'chdir':
            d = self.expand(rule.arg, environ, caps)
            try:
                os.chdir(d)
            except OSError as e:
                self.log_error('route chdir:%s failed (%s); connection closed (%s)' % (d, e, rule.where))
                o.response = CLOSE
                return RESPOND
            return NEXT
        self.log_error('route action %r is not known to this worker (%s)' % (action, rule.where))
        return NEXT

    def _cache_action(self, rule, environ, caps, o):
        """router_cache's actions (docs/cache.md), on the caches of cache2/cache."""
        from . import uwsgi_api
        action = rule.action
        kv = dict((k, self.expand(v, environ, caps)) for k, v in rule.extra)
        caches = uwsgi_api.caches()
        cache = caches.get(kv.get('name')) if caches is not None else None
        key = _raw(kv['key'])
        if action == 'cache':
            if cache is None:
                return NEXT
            value, expires = cache.get_expires(key)
            if value is None:
                return NEXT
            ctype = kv.get('content_type') or 'text/html'
            if kv.get('mime'):
                ctype = self._mime_of(kv['key']) or ctype
            headers = [('Content-Type', ctype)]
            if kv.get('content_encoding'):
                headers.append(('Content-Encoding', kv['content_encoding']))
            if expires:
                from .static import http_date
                headers.append(('Expires', http_date(expires)))
            if kv.get('no_content_length') or kv.get('no_cl') or kv.get('nocl'):
                o.no_cl = True
            o.response = ('200 OK', headers, value)
            return RESPOND
        if action == 'cachevar':
            if cache is None:
                return NEXT
            value = cache.get(key)
            if value is not None:
                if kv.get('as_num'):
                    value = str(struct.unpack('<q', value)[0] if len(value) == 8 else 0)
                else:
                    value = value.decode('latin-1')
                environ[kv['var']] = value
            return NEXT
        if action == 'cachestore':
            status = kv.get('status') or kv.get('code')
            if o.store is None:
                o.store = []
            o.store.append((cache, key, _strtol(kv.get('expires', '0')), _strtol(status) if status else 0,
                            _raw(kv['value']) if 'value' in kv else None, _raw(kv['gzip']) if kv.get('gzip') else None))
            return NEXT
        # cacheset, cacheinc, ...: a failure ends the request without a response, as in uWSGI
        if cache is None:
            o.response = CLOSE
            return RESPOND
        expires = max(_strtol(kv.get('expires', '0')), 0)
        if action == 'cacheset':
            ok = cache.set(key, _raw(kv.get('value', '')), expires)
        else:
            from . import cache as cachemod
            op = _CACHE_MATH[action]
            delta = _strtol(kv['value']) if 'value' in kv else (1 if op in (cachemod.INC, cachemod.DEC) else 2)
            ok = cache.math(key, delta, expires, op)
        if not ok:
            o.response = CLOSE
            return RESPOND
        return NEXT

    _mime = None

    def _mime_of(self, name):
        if self._mime is None:
            from .static import load_mime_types
            Routing._mime = load_mime_types([], self.log_error)
        dot = name.rfind('.')
        return self._mime.get(name[dot + 1:].lower()) if dot >= 0 else None

    def _basicauth(self, rule, environ, o, next_on_failure):
        if environ.get('REMOTE_USER'):
            return NEXT
        realm, creds, ulen = rule.extra
        auth = environ.get('HTTP_AUTHORIZATION', '')
        if len(auth) > 7 and creds:
            if not auth.startswith('Basic '):
                return self._unauthorized(realm, o)
            try:
                given = base64.b64decode(auth[6:].strip().encode('latin-1')).decode('latin-1')
            except (binascii.Error, ValueError):
                given = None
            if given is not None:
                if ulen >= 0:
                    user = given[:ulen] if given == creds else None
                else:
                    user = _htpasswd_check(creds, given)
                if user:
                    environ['REMOTE_USER'] = user
                    return NEXT
                if next_on_failure:
                    return NEXT
        return self._unauthorized(realm, o)

    def _unauthorized(self, realm, o):
        o.response = ('401 Authorization Required', [('WWW-Authenticate', 'Basic realm="%s"' % realm)], b'Unauthorized')
        return RESPOND

    # ---- the worker's side -----------------------------------------------------------------------------------

    def serve(self, worker, out, environ, core, on_link):
        """Runs the rules, then answers as they say: their own response, or static files and the app with
        their header edits. Returns (state, connection usable, log this request)."""
        o = self.apply(environ)
        if o is None:
            return _go_on(worker, out, environ, None, core) + (True,)
        if o.logvars is not None:
            if core.logvars is None:
                core.logvars = {}
            core.logvars.update(o.logvars)
        edit = None
        if o.add is not None or o.remove is not None:
            edit = _header_edit(worker, o.add, o.remove)
        log = not o.quiet
        response = o.response
        if response is None:
            if o.store is not None:
                return _go_on_storing(worker, out, environ, edit, core, o.store) + (log,)
            return _go_on(worker, out, environ, edit, core) + (log,)
        from .server import ResponseState
        r = ResponseState()
        core.app_id = -1   # answered by the rules: no app, as uWSGI's request log says
        if response is CLOSE:
            if on_link:
                try:
                    out.abort()
                except OSError:
                    pass
            return r, False, log
        status, headers, body = response
        if worker.header_edit is not None and edit is None:
            edit = worker.edit_headers
        if edit is not None:
            headers = edit(headers)
        if body and not o.no_cl and not any(h[0] == 'Content-Length' for h in headers):
            headers.append(('Content-Length', str(len(body))))
        if environ.get('REQUEST_METHOD') == 'HEAD':
            body = b''
        r.status = status
        r.headers = headers
        r.code = int(status[:3])
        r.header_count = len(headers)
        r.sent = True
        try:
            r.header_bytes = out.whole(environ.get('SERVER_PROTOCOL') or 'HTTP/1.1', status, headers, body)
        except OSError as e:
            worker.log_error('client went away during the response (%s)' % e.__class__.__name__)
            return r, False, log
        r.ended = True
        r.body_bytes = len(body)
        return r, True, log


_SETTERS = {
    'setmethod': 'REQUEST_METHOD', 'seturi': 'REQUEST_URI', 'setpathinfo': 'PATH_INFO', 'setscriptname': 'SCRIPT_NAME',
    'setdocroot': 'DOCUMENT_ROOT', 'sethome': 'UWSGI_HOME', 'setremoteaddr': 'REMOTE_ADDR', 'setuser': 'REMOTE_USER',
    'setscheme': 'UWSGI_SCHEME',
}


def _go_on(worker, out, environ, edit, core):
    """Static files, else the app (chosen by mount after the rules changed the request, as in uWSGI)."""
    app = worker.pick_app(environ, core)
    if worker.static is not None:
        return worker.serve_static(out, environ, app, edit)
    return worker.run_app(out, environ, app, edit)


class _StoreTee(object):
    """The response output, with a copy of the body kept for cachestore (only while such a rule asked)."""

    def __init__(self, out):
        self.out = out
        self.code = 0
        self.chunks = []
        self.whole_body = True

    def __getattr__(self, name):
        return getattr(self.out, name)

    def head(self, proto, status, headers, chunk):
        self.code = int(status[:3])
        self.chunks.append(chunk)
        return self.out.head(proto, status, headers, chunk)

    def whole(self, proto, status, headers, chunk):
        self.code = int(status[:3])
        self.chunks.append(chunk)
        return self.out.whole(proto, status, headers, chunk)

    def body(self, chunk):
        self.chunks.append(chunk)
        return self.out.body(chunk)

    def last(self, chunk):
        self.chunks.append(chunk)
        return self.out.last(chunk)

    def sendfile(self, fd, offset, count):
        self.whole_body = False   # a file sent by the kernel: not seen here, so not stored
        return self.out.sendfile(fd, offset, count)


def _go_on_storing(worker, out, environ, edit, core, stores):
    """cachestore: the app answers, and a successful response's body is stored (uWSGI stores a 200, or the
    rule's status=)."""
    tee = _StoreTee(out)
    result = _go_on(worker, tee, environ, edit, core)
    state, healthy = result
    body = b''.join(tee.chunks)
    if healthy and tee.whole_body and environ.get('REQUEST_METHOD') != 'HEAD':
        for cache, key, expires, status, value, gzip_key in stores:
            if cache is None or not (tee.code == 200 or (status and tee.code == status)):
                continue
            data = value if value is not None else body
            if not data:
                continue
            cache.set(key, data, max(expires, 0), 1)
            if gzip_key is not None:
                import gzip
                cache.set(gzip_key, gzip.compress(data), max(expires, 0), 1)
    return result


def _raw(text):
    """A route text as the bytes uWSGI would use: request variables are latin-1 already."""
    try:
        return text.encode('latin-1')
    except UnicodeEncodeError:
        return text.encode('utf-8', 'surrogateescape')


_CACHE_ACTIONS = frozenset(('cache', 'cachestore', 'cachevar', 'cacheset', 'cacheinc', 'cachedec', 'cachemul', 'cachediv'))
_CACHE_MATH = {'cacheinc': 8, 'cachedec': 16, 'cachemul': 32, 'cachediv': 64}


def _header_edit(worker, add, remove):
    """add-header/del-header (the worker's), then the rules' delheader and addheader."""
    base = worker.edit_headers if worker.header_edit is not None else None

    def edit(headers):
        headers = base(headers) if base is not None else list(headers)
        if remove:
            headers = [h for h in headers if h[0].__class__ is not str or h[0].lower() not in remove]
        if add:
            headers.extend(add)
        return headers
    return edit


def _captures(m):
    groups = m.groups()
    caps = [m.group(0)]
    for g in groups:
        caps.append(g if g is not None else '')
    return caps


def _apply_caps(s, caps):
    """uWSGI's uwsgi_regexp_apply_ovec: $N is the Nth group ('' past the last), $ before anything else stays,
    a trailing $ goes."""
    if '$' not in s:
        return s
    out = []
    i = 0
    n = len(s)
    ncaps = len(caps)
    while i < n:
        c = s[i]
        if c != '$':
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:
            break
        d = s[i + 1]
        if '0' <= d <= '9':
            pos = ord(d) - 48
            if pos < ncaps:
                out.append(caps[pos])
        else:
            out.append('$')
            out.append(d)
        i += 2
    return ''.join(out)


def _strtol(s):
    m = re.match(r'\s*[+-]?\d+', s)
    return int(m.group(0)) if m else 0


def _path_test(cond, path):
    try:
        if cond == 'isexec':
            return os.access(path, os.X_OK)
        st = os.lstat(path) if cond == 'islink' else os.stat(path)
    except (OSError, ValueError):
        return False
    if cond == 'isfile':
        return stat.S_ISREG(st.st_mode)
    if cond == 'isdir':
        return stat.S_ISDIR(st.st_mode)
    if cond == 'islink':
        return stat.S_ISLNK(st.st_mode)
    return True


def _htpasswd_check(filename, given):
    """REMOTE_USER for `user:password` checked against an htpasswd file ({SHA} or crypt() entries, as uWSGI
    2.0 reads them), or None."""
    user, colon, password = given.partition(':')
    if not colon:
        return None
    try:
        with open(filename, 'r', encoding='latin-1') as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    import hashlib
    for line in lines:
        name, c, hashed = line.partition(':')
        if not c:
            break
        if hashed.startswith('{SHA}'):
            ok = hashed == '{SHA}' + base64.b64encode(hashlib.sha1(password.encode('latin-1')).digest()).decode('ascii')
        else:
            if len(hashed) < 13:
                break
            hashed = hashed[:13]
            ok = _crypt(password, hashed) == hashed
        if ok and name == user:
            return user
    return None


def _crypt(password, salt):
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            import crypt
        return crypt.crypt(password, salt)
    except Exception:
        return None
