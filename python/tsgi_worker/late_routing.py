"""error-route*, response-route*, collect-header and pull-header (docs/routing.md), as uWSGI 2.0.21 runs them.

uWSGI runs the error table when a response's status is set and the response table once, when its headers are
written; both apply to every response (the app's, a static file, a routing rule's own answer). Here both run when
the head is written, through a wrapper around the request's output, which sees every response however it was made.
That is the same result: the error table's header removals apply to the app's headers (uWSGI checks them as the
app's headers are added, after the error table ran), the response table's do not (they came too late), and the
headers either table adds go after the app's. A table's answer of its own (break:STATUS, return) replaces the
response; after a response-table answer, the error table runs again for its status, as uWSGI's does.

Nothing here runs, nor is allocated, when none of these options is set: the worker holds None.
"""
from .routing import CLOSE, Routing


class LateRouting(object):
    def __init__(self, conf, worker_id, pid, log_error, log_line):
        self.error = None
        self.response = None
        if conf.get('errorRoutes'):
            self.error = Routing(conf['errorRoutes'], worker_id, pid, log_error, log_line)
        if conf.get('responseRoutes'):
            self.response = Routing(conf['responseRoutes'], worker_id, pid, log_error, log_line)
        # lower-case header name -> request variable
        self.pull = dict((h.lower(), v) for h, v in (conf.get('pullHeaders') or ()))
        self.collect = dict((h.lower(), v) for h, v in (conf.get('collectHeaders') or ()))
        self.copies = bool(self.pull or self.collect)

    def wrap(self, out, environ, core):
        return RoutedOutput(self, out, environ, core)


class RoutedOutput(object):
    """The request's output, with the error and response tables run when the head goes out."""

    def __init__(self, late, out, environ, core):
        self.late = late
        self.out = out
        self.environ = environ
        self.core = core
        self.routed = False      # the head went through the tables
        self.ignore = False      # a table answered: the app's body is not sent
        self.closed = False      # nothing sent (error table's break:): the connection is dropped
        self.close_after = False  # the response table's break: the head with no body, then the connection closes
        self.status = None       # the status sent, when a table changed it
        self.quiet = False

    def __getattr__(self, name):
        return getattr(self.out, name)

    # ---- the tables -----------------------------------------------------------------------------------------

    def _run(self, routing, code, adds, removes):
        routing.status = code
        o = routing.apply(self.environ)
        if o is None:
            return None
        if o.add is not None:
            adds.extend(o.add)
        if o.remove is not None:
            removes.update(o.remove)
        if o.logvars is not None:
            core = self.core
            if core.logvars is None:
                core.logvars = {}
            core.logvars.update(o.logvars)
        if o.quiet:
            self.quiet = True
        return o.response

    def _copy(self, headers):
        """collect-header / pull-header: the values into request variables; pulled headers are not sent."""
        late = self.late
        pull = late.pull
        collect = late.collect
        environ = self.environ
        kept = []
        for h in headers:
            lower = h[0].lower()
            var = pull.get(lower)
            if var is not None:
                environ.setdefault(var, h[1])
                continue
            var = collect.get(lower)
            if var is not None:
                environ.setdefault(var, h[1])
            kept.append(h)
        return kept

    def _route(self, status, headers, chunk):
        """The head as it goes out: (status, headers, chunk, replaced)."""
        self.routed = True
        late = self.late
        adds = []
        removes = set()
        replaced = False
        code = int(status[:3])
        if late.error is not None:
            answer = self._run(late.error, code, adds, removes)
            if answer is CLOSE:
                # Nothing is sent; uWSGI still runs the response table when the request ends (its log effects).
                self.closed = True
                if late.response is not None:
                    self._run(late.response, code, adds, removes)
                return status, headers, b'', True
            if answer is not None:
                status, headers, chunk = answer
                headers = list(headers)
                replaced = True
                code = int(status[:3])
        if not replaced:
            if removes:
                headers = [h for h in headers if h[0].lower() not in removes]
            if late.copies:
                headers = self._copy(headers)
        if late.response is not None:
            answer = self._run(late.response, code, adds, removes)
            if answer is CLOSE:
                self.close_after = True
                headers = [h for h in headers if h[0].lower() != 'content-length']
                chunk = b''
                replaced = True
            elif answer is not None:
                status, headers, chunk = answer
                headers = list(headers)
                replaced = True
                code = int(status[:3])
                if late.error is not None:
                    # uWSGI sets the new status the same way as the first: the error table runs again.
                    again = self._run(late.error, code, adds, removes)
                    if again is CLOSE:
                        self.closed = True
                        return status, headers, b'', True
                    if again is not None:
                        status, headers, chunk = again
                        headers = list(headers)
        if adds:
            if removes:
                adds = [h for h in adds if h[0].lower() not in removes]
            if late.copies:
                adds = self._copy(adds)
            headers = headers + adds
        if replaced:
            self.status = status
            if chunk and not any(h[0] == 'Content-Length' for h in headers):
                headers.append(('Content-Length', str(len(chunk))))
            if self.environ.get('REQUEST_METHOD') == 'HEAD':
                chunk = b''
        return status, headers, chunk, replaced

    # ---- the output's interface -----------------------------------------------------------------------------

    def head(self, proto, status, headers, chunk):
        if self.routed:
            return self.out.head(proto, status, headers, chunk)
        status, headers, chunk, replaced = self._route(status, headers, chunk)
        if self.closed:
            self.ignore = True
            return 0
        if replaced:
            self.ignore = True
            return self.out.whole(proto, status, headers, chunk)
        return self.out.head(proto, status, headers, chunk)

    def whole(self, proto, status, headers, chunk):
        if self.routed:
            return self.out.whole(proto, status, headers, chunk)
        status, headers, chunk, replaced = self._route(status, headers, chunk)
        if self.closed:
            self.ignore = True
            return 0
        if replaced:
            self.ignore = True
        return self.out.whole(proto, status, headers, chunk)

    def body(self, chunk):
        if not self.ignore:
            self.out.body(chunk)

    def last(self, chunk):
        if not self.ignore:
            self.out.last(chunk)

    def end(self):
        if not self.ignore:
            self.out.end()

    def sendfile(self, fd, offset, count):
        if self.ignore:
            return count
        return self.out.sendfile(fd, offset, count)

    def finish(self, r, healthy, on_link):
        """After the response: the state the log sees, and whether the connection can go on."""
        if self.closed:
            if on_link:
                try:
                    self.out.abort()
                except OSError:
                    pass
            return False
        if self.status is not None:
            r.status = self.status
            r.code = int(self.status[:3])
        if self.close_after:
            if not on_link:
                return False
        return healthy
