"""mount, manage-script-name and no-default-app: which of the loaded apps answers a request (docs/mount.md).

The rules are uWSGI 2.0's, checked against Debian's uwsgi 2.0.21:
  - apps have ids in load order: the main app (module or wsgi-file, mountpoint '') first, then each mount;
    app 0 is the default app;
  - with manage-script-name, when PATH_INFO is longer than '/', the longest mountpoint that starts PATH_INFO and
    ends there or at a '/' wins: SCRIPT_NAME becomes the mountpoint, PATH_INFO what follows it ('/a' -> '');
    a mountpoint of '/' never wins that way;
  - otherwise (or when none matches) the app whose mountpoint is exactly SCRIPT_NAME, as the front server sent it;
  - otherwise the default app, with SCRIPT_NAME and PATH_INFO untouched; with no-default-app, a 500.
Where tsgi differs: a mountpoint written with a trailing slash (/a/) matches as /a, and SCRIPT_NAME becomes /a
(uWSGI 2.0.21 sets SCRIPT_NAME '/a/' and PATH_INFO 'x' for /a/x, and reads past the request for /a).

Nothing here runs unless one of those options is set: the worker then makes one attribute test per request.
"""


class Mounts(object):
    __slots__ = ('apps', 'by_name', 'prefixes', 'manage', 'default', 'no_default', 'log_error')

    def __init__(self, apps, manage_script_name, no_default_app):
        """`apps`: [(mountpoint, callable)] in app-id order."""
        self.apps = [app for _, app in apps]
        self.by_name = {}
        prefixes = []
        for i, (mountpoint, _) in enumerate(apps):
            self.by_name.setdefault(mountpoint, i)
            trimmed = mountpoint.rstrip('/')
            if trimmed != mountpoint and trimmed:
                self.by_name.setdefault(trimmed, i)
            if trimmed:
                prefixes.append((trimmed, i))
        # Longest first: the first that matches is the longest.
        prefixes.sort(key=lambda p: -len(p[0]))
        self.prefixes = prefixes if manage_script_name else []
        self.manage = bool(self.prefixes)
        self.default = self.apps[0] if self.apps else None
        self.no_default = no_default_app
        self.log_error = None

    def select(self, environ, core):
        """The app for this request; rewrites SCRIPT_NAME and PATH_INFO when manage-script-name moves a
        mountpoint from one to the other. Sets core.app_id (-1: no app) for the request log."""
        if self.manage:
            path = environ['PATH_INFO']
            if len(path) > 1:
                for prefix, i in self.prefixes:
                    if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == '/'):
                        environ['SCRIPT_NAME'] = prefix
                        environ['PATH_INFO'] = path[len(prefix):]
                        core.app_id = i
                        return self.apps[i]
        i = self.by_name.get(environ['SCRIPT_NAME'])
        if i is not None:
            core.app_id = i
            return self.apps[i]
        if self.no_default:
            core.app_id = -1
            return self.no_app
        core.app_id = 0
        return self.default

    def no_app(self, environ, start_response):
        """The answer when no app takes the request (no-default-app): a 500, and a line saying why."""
        if self.log_error is not None:
            self.log_error("no app is mounted at SCRIPT_NAME '%s' (no-default-app): answered 500" % environ['SCRIPT_NAME'])
        start_response('500 Internal Server Error', [('Content-Type', 'text/plain')])
        return [b'Internal Server Error']
