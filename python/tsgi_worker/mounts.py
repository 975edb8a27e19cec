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

Dynamic apps (docs/vhost.md): a request whose app id (UWSGI_APPID, else SCRIPT_NAME, else with vhost
'HOST|SCRIPT_NAME') names no app and that carries UWSGI_SCRIPT, UWSGI_MODULE or UWSGI_FILE loads that app in this
worker (dynapps.py) under that id, and keeps it. A load that fails is retried by the next such request.

Nothing here runs unless one of those options is set or a request has a SCRIPT_NAME: the worker then makes one
attribute test (and, with a single app, one dict lookup) per request.
"""
import os
import threading
import time
import traceback


class Mounts(object):
    __slots__ = ('apps', 'by_name', 'prefixes', 'manage', 'default', 'no_default', 'log_error', 'vhost', 'max_apps',
                 'callable', 'chdirs', 'lock')

    def __init__(self, apps, manage_script_name, no_default_app, vhost=False, max_apps=64, callable_name='application',
                 threads=1):
        """`apps`: [(mountpoint, callable)] in app-id order."""
        self.vhost = vhost
        self.max_apps = max_apps
        self.callable = callable_name
        self.chdirs = None            # {app id: UWSGI_CHDIR} of dynamic apps loaded with one
        self.lock = threading.Lock() if threads > 1 else None
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
        setenv = environ.get('UWSGI_SETENV')
        if setenv is not None:
            # As uWSGI: the process environment (what child processes get), not os.environ.
            name, eq, value = setenv.partition('=')
            if eq and name:
                os.putenv(name, value)
        appid = environ.get('UWSGI_APPID')
        if appid is None:
            if self.vhost:
                # uWSGI's virtual hosting key; the app sees it as UWSGI_APPID, as under uWSGI.
                appid = environ['UWSGI_APPID'] = (environ.get('HTTP_HOST') or environ.get('SERVER_NAME', '')) + '|' + environ['SCRIPT_NAME']
            else:
                appid = environ['SCRIPT_NAME']
        i = self.by_name.get(appid)
        if i is None and ('UWSGI_SCRIPT' in environ or 'UWSGI_MODULE' in environ or 'UWSGI_FILE' in environ):
            i = self.load(environ, appid)
        if i is None:
            if self.no_default or self.default is None:
                core.app_id = -1
                return self.no_app
            i = 0
        if self.chdirs is not None:
            chdir = self.chdirs.get(i)
            if chdir is not None:
                try:
                    os.chdir(chdir)
                except OSError as e:
                    self.log_error('chdir to %s (UWSGI_CHDIR of app %d) failed: %s' % (chdir, i, e.strerror))
        core.app_id = i
        return self.apps[i]

    def load(self, environ, appid):
        """Loads the app this request's vars name under `appid`, in this worker, once. Returns its id, or None
        (logged) when it cannot be loaded: the request then goes where a request without the vars would."""
        from . import dynapps
        what = dynapps.describe(environ)
        if what is None:
            return None
        lock = self.lock
        if lock is not None:
            lock.acquire()
        try:
            i = self.by_name.get(appid)
            if i is not None:
                return i   # another thread loaded it meanwhile
            i = len(self.apps)
            if i >= self.max_apps:
                self.log_error("cannot load %s (mountpoint='%s'): this worker has %d apps already (max-apps)"
                               % (what, appid, self.max_apps))
                return None
            start = time.time()
            try:
                app, chdir = dynapps.load(environ, self.callable)
            except BaseException:
                self.log_error("cannot load the app %s (app %d, mountpoint='%s'); the request %s:\n%s" % (
                    what, i, appid, 'gets a 500' if self.no_default or self.default is None else 'goes to the default app',
                    _app_traceback()))
                return None
            default = i == 0 and not self.vhost and not self.no_default
            self.log_error("WSGI app %d (mountpoint='%s') ready in %d seconds: %s%s%s" % (
                i, appid, int(time.time() - start), what, ' (chdir %s)' % chdir if chdir else '', ' (default app)' if default else ''))
            self.apps.append(app)
            if chdir is not None:
                if self.chdirs is None:
                    self.chdirs = {}
                self.chdirs[i] = chdir
            if default:
                self.default = app
            self.by_name[appid] = i
            return i
        finally:
            if lock is not None:
                lock.release()

    def no_app(self, environ, start_response):
        """The answer when no app takes the request (no-default-app): a 500, and a line saying why."""
        if self.log_error is not None:
            if self.no_default:
                self.log_error("no app is mounted at SCRIPT_NAME '%s' (no-default-app): answered 500" % environ.get('UWSGI_APPID', environ['SCRIPT_NAME']))
            else:
                self.log_error("no app for this request (app id '%s') and no default app: answered 500"
                               % environ.get('UWSGI_APPID', environ['SCRIPT_NAME']))
        start_response('500 Internal Server Error', [('Content-Type', 'text/plain')])
        return [b'Internal Server Error']


def _app_traceback():
    """The current exception as the app's author needs it: the frames of tsgi and of importlib left out."""
    import sys
    etype, value, tb = sys.exc_info()
    frames = [f for f in traceback.extract_tb(tb)
              if '/tsgi_worker/' not in f.filename and not f.filename.startswith('<frozen') and '/importlib/' not in f.filename]
    text = ''.join(traceback.format_exception_only(etype, value)).rstrip('\n')
    if not frames:
        return text
    return 'Traceback (most recent call last):\n' + ''.join(traceback.format_list(frames)) + text
