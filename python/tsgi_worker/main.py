"""Worker start-up: read what the master passed, load the app, tell the master we are ready, serve.

The master passes its configuration in the TSGI_WORKER environment variable (JSON, read once and removed
from os.environ so the app never sees it), the listening sockets and the scoreboard as inherited file
descriptors, and a control descriptor to which the worker writes one byte once the app is loaded.

Exit statuses the master understands: 0 stopped normally, 22 the app could not be loaded, 23 a socket could
not be listened on, 24 recycled itself (max-requests) and wants a fresh worker, 1 anything else.
"""
import faulthandler
import gc
import importlib
import importlib.machinery
import importlib.util
import json
import os
import select
import signal
import socket
import struct
import sys
import traceback

EXIT_APP_FAILED = 22
EXIT_SOCKET_FAILED = 23
EXIT_RECYCLED = 24


def _die_with_parent():
    """Asks Linux to send SIGTERM when the master dies, so workers never outlive it."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:
        pass
    if os.getppid() == 1:
        os._exit(0)


def _set_name(name):
    """The process title: /proc/PID/comm (15 bytes at most, what top shows) and /proc/PID/cmdline (what ps
    shows), the latter by writing over the original argv strings, whose bounds Linux gives in /proc/self/stat
    (Python keeps its own copy of argv, so nothing reads that memory any more)."""
    data = name.encode('utf-8', 'replace')
    try:
        import ctypes
        ctypes.CDLL(None).prctl(15, data[:15], 0, 0, 0)   # PR_SET_NAME
    except Exception:
        pass
    try:
        import ctypes
        with open('/proc/self/stat', 'rb') as f:
            fields = f.read().rsplit(b')', 1)[1].split()
        # Fields 48 and 49 (arg_start, arg_end), counted from 1 with pid and comm left out of `fields`.
        start, end = int(fields[45]), int(fields[46])
        size = end - start
        if start and size > 1:
            text = data[:size - 1]
            ctypes.memset(start, 0, size)
            ctypes.memmove(start, text, len(text))
    except Exception:
        pass


_date_prefix = None   # log-date, set from the configuration


def _log(line):
    if _date_prefix is not None:
        line = _date_prefix() + line
    os.write(2, (line + '\n').encode('utf-8', 'replace'))


def load_app(app):
    """Imports the app as uWSGI's python plugin would. Returns the callable or raises with a clear message."""
    callable_name = app.get('callable') or 'application'
    if app.get('wsgiFile'):
        path = os.path.abspath(app['wsgiFile'])
        what = 'wsgi-file' if not app.get('mountpoint') else 'mount %s: file' % app['mountpoint']
        if not os.path.exists(path):
            raise ImportError('%s %s does not exist' % (what, path))
        name = 'uwsgi_file_' + ''.join(c if c.isalnum() else '_' for c in path)
        # A .wsgi file is Python too (uWSGI loads it as one): its loader is chosen explicitly.
        loader = importlib.machinery.SourceFileLoader(name, path)
        spec = importlib.util.spec_from_file_location(name, path, loader=loader)
        if spec is None or spec.loader is None:
            raise ImportError('%s %s is not a Python file' % (what, path))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        where = path
    else:
        module = importlib.import_module(app['module'])
        where = app['module']
    try:
        application = getattr(module, callable_name)
    except AttributeError:
        if app.get('mountpoint'):
            raise ImportError("%s has no callable named '%s' (name it: mount = %s=%s:NAME)"
                              % (where, callable_name, app['mountpoint'], app.get('module') or 'MODULE'))
        raise ImportError("%s has no callable named '%s' (set callable = NAME or module = %s:NAME)"
                          % (where, callable_name, app.get('module') or 'MODULE'))
    if not callable(application):
        raise ImportError("'%s' in %s is not callable" % (callable_name, where))
    return application


def _prepare(conf):
    """Environment, import path, and the listening sockets (shared by a zygote's children)."""
    for key, value in conf['env']:
        os.environ[key] = value
    # The app's import path: what --pythonpath adds, then the working directory (as uWSGI does).
    for p in reversed(conf['pythonpath']):
        sys.path.insert(0, p)
    sys.path.insert(len(conf['pythonpath']), os.getcwd())
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except AttributeError:
        pass
    from .server import LINK, UWSGI_TCP, UWSGI_UNIX
    listeners = []
    for fd in conf['socketFds']:
        sock = socket.socket(fileno=fd)
        try:
            sock.listen(conf['listen'])
        except OSError as e:
            _log('[pid: %d] cannot listen on socket fd %d: %s' % (os.getpid(), fd, e.strerror))
            os._exit(EXIT_SOCKET_FAILED)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Accepted TCP connections inherit these timeouts from the listening socket.
            tv = struct.pack('ll', conf['socketTimeout'], 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
            listeners.append((sock, UWSGI_TCP))
        else:
            listeners.append((sock, UWSGI_UNIX))
    if conf.get('linkFd') is not None:
        link = socket.socket(fileno=conf['linkFd'])
        link.listen(conf['listen'])
        listeners.append((link, LINK))
    return listeners


def _load(conf, who):
    """Loads the app (with mounts: every app, in a Mounts table) or exits with EXIT_APP_FAILED (need-app);
    without need-app, an app that cannot be loaded answers 500s and the log says why."""
    if conf.get('autoreload'):
        from . import autoreload
    try:
        for module in conf.get('imports', ()):
            _import_one(conf, module, who)
        if conf.get('mounts') is not None:
            return _load_mounts(conf, who)
        return _load_one(conf, conf['app'], conf['appName'], who)
    finally:
        if conf.get('autoreload'):
            autoreload.snapshot()


def _import_one(conf, module, who):
    """import = MODULE: imported before the app, in the process that loads it, as uWSGI does. uWSGI logs a
    failure and goes on; tsgi stops as for an app that fails (need-app), since what the module sets up (signal
    handlers, hooks, registrations) would be missing without a word at run time."""
    try:
        importlib.import_module(module)
    except BaseException:
        _log('[pid: %d|%s] cannot import %s (import option):\n%s' % (
            os.getpid(), who, module, traceback.format_exc().rstrip('\n')))
        if conf.get('needApp', True):
            os._exit(EXIT_APP_FAILED)


def _load_one(conf, spec, name, who):
    try:
        return load_app(spec)
    except BaseException:
        _log('[pid: %d|%s] cannot load the app %s:\n%s' % (
            os.getpid(), who, name, traceback.format_exc().rstrip('\n')))
        if conf.get('needApp', True):
            os._exit(EXIT_APP_FAILED)
    return _no_app


def _no_app(environ, start_response):
    """Stands for an app that could not be loaded (without need-app)."""
    start_response('500 Internal Server Error', [('Content-Type', 'text/plain')])
    return [b'Internal Server Error: the app could not be loaded (see the log)']


def _load_mounts(conf, who):
    """mount (docs/mount.md): each app loaded in turn, its id its place (the main app, if any, is app 0, the
    default one); one log line per app, as uWSGI writes."""
    import time
    from .mounts import Mounts
    apps = []
    for i, spec in enumerate(conf['mounts']):
        mountpoint = spec['mountpoint']
        start = time.time()
        app = _load_one(conf, spec, "%s (app %d, mountpoint='%s')" % (spec['name'], i, mountpoint), who)
        if app is not _no_app:
            _log("[pid: %d|%s] WSGI app %d (mountpoint='%s') ready in %d seconds: %s%s" % (
                os.getpid(), who, i, mountpoint, int(time.time() - start), spec['name'], ' (default app)' if i == 0 else ''))
        apps.append((mountpoint, app))
    if not apps:
        _log('[pid: %d|%s] no app configured: apps are loaded as requests name them (UWSGI_SCRIPT, UWSGI_MODULE, '
             'UWSGI_FILE; docs/vhost.md)' % (os.getpid(), who))
    return Mounts(apps, conf.get('manageScriptName', False), conf.get('noDefaultApp', False), vhost=conf.get('vhost', False),
                  max_apps=conf.get('maxApps', 64), callable_name=conf['app'].get('callable') or 'application',
                  threads=conf.get('threads', 1))


def _serve(conf, app, listeners, worker_id, slot, max_requests, control_fd, ready_message, forked=False):
    """Runs one worker until it stops; never returns. `forked`: the app loader forked this worker (after the
    app was imported), so uwsgi.post_fork_hook runs before it serves."""
    from . import uwsgi_api
    from .scoreboard import NoScoreboard, Scoreboard
    from .server import Worker
    _set_name(conf.get('titles', {}).get('worker', 'tsgi worker {id}').replace('{id}', str(worker_id)))
    sb = conf.get('scoreboard')
    scoreboard = Scoreboard(sb['fd'], sb['size'], slot, os.getpid()) if sb else NoScoreboard()
    if conf.get('logto'):
        def reopen_log(signum, frame):
            # Log rotation: the master reopened the file and asks every process to do the same.
            try:
                fd = os.open(conf['logto'], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.close(fd)
            except OSError as e:
                _log('[pid: %d|worker %d] cannot reopen the log %s: %s' % (os.getpid(), worker_id, conf['logto'], e.strerror))
        signal.signal(signal.SIGWINCH, reopen_log)
    else:
        signal.signal(signal.SIGWINCH, signal.SIG_IGN)
    # harakiri-verbose: the master sends SIGUSR2 before killing a stuck worker; every thread's stack goes to the log.
    faulthandler.register(signal.SIGUSR2, file=sys.stderr, all_threads=True)
    worker_conf = dict(conf, id=worker_id, maxRequests=max_requests)
    worker = Worker(worker_conf, app, listeners, scoreboard)
    uwsgi_api.bind_worker(worker, worker_id)
    worker.at_exit = uwsgi_api.at_exit
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, worker.on_signal)
    if forked:
        uwsgi_api.post_fork(worker.log_error)
    if conf.get('autoreload') and worker_id == 1:
        # One worker is enough to notice: every worker runs the same modules.
        from . import autoreload
        autoreload.start(conf['autoreload'], conf['masterPid'], _log)
    if control_fd is not None:
        os.write(control_fd, ready_message)
    worker.serve()
    uwsgi_api.at_exit(worker.log_error)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_RECYCLED if worker.stopping == 'recycle' else 0)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGCHLD)


def _zygote(conf, app, listeners):
    """Preloading (uWSGI's default, without lazy-apps): this process imported the app once and forks the
    workers on the master's request, so they share its memory copy-on-write. The control channel carries lines:
      master -> zygote   fork TOKEN ID SLOT MAXREQ
      zygote -> master   Z (app loaded) | F TOKEN PID | X PID STATUS (a worker ended; -N for signal N)
      worker -> master   R PID (serving)
    SIGTERM: fork no more, exit once every worker has ended. SIGINT: the same, after passing it to the workers."""
    ctl = conf['controlFd']
    _set_name(conf.get('titles', {}).get('loader', 'tsgi loader'))
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    stopping = [False]
    children = set()

    def on_term(signum, frame):
        stopping[0] = True
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    def on_int(signum, frame):
        # An immediate stop: the workers are told too (they end at once) and the loader goes once they have,
        # so that how each ended still reaches the master instead of being lost with the loader.
        stopping[0] = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGINT)
            except OSError:
                pass
    signal.signal(signal.SIGINT, on_int)
    signal.signal(signal.SIGCHLD, lambda s, f: None)   # wakes the loop through the wakeup fd
    # Objects the app made at import move to a generation the collector never scans again, so the workers do
    # not touch (and copy) every page of the loader's heap at their first collection.
    gc.freeze()
    os.write(ctl, b'Z\n')
    pending = b''
    while True:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            os.write(ctl, b'X %d %d\n' % (pid, code))
        if stopping[0] and not children:
            os._exit(0)
        readable, _, _ = select.select([ctl, wake_r], [], [])
        if wake_r in readable:
            try:
                os.read(wake_r, 512)
            except BlockingIOError:
                pass
        if ctl not in readable:
            continue
        data = os.read(ctl, 4096)
        if not data:
            os._exit(0)   # the master is gone
        pending += data
        while b'\n' in pending:
            line, pending = pending.split(b'\n', 1)
            parts = line.split()
            if len(parts) != 5 or parts[0] != b'fork' or stopping[0]:
                continue
            token, wid, slot, max_requests = int(parts[1]), int(parts[2]), int(parts[3]), int(parts[4])
            # The master may signal the new worker as soon as it reads its pid, before the child has dropped the
            # loader's handlers: blocked across the fork, such a signal waits for the child's own disposition
            # instead of being swallowed by the loader's handler (a stop lost that way left the worker running).
            saved_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            pid = os.fork()
            if pid == 0:
                # Until the worker installs its own handlers, a stop signal simply ends it (it serves nothing yet);
                # the loader's handlers would swallow it.
                for sig in _STOP_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                signal.set_wakeup_fd(-1)
                signal.pthread_sigmask(signal.SIG_SETMASK, saved_mask)
                os.close(wake_r)
                os.close(wake_w)
                _die_with_parent()
                _serve(conf, app, listeners, wid, slot, max_requests, ctl, b'R %d\n' % os.getpid(), forked=True)
            signal.pthread_sigmask(signal.SIG_SETMASK, saved_mask)
            children.add(pid)
            os.write(ctl, b'F %d %d\n' % (token, pid))


def _spooler(conf):
    """A spooler process (docs/spooler.md): loads the app as a worker does (its uwsgi.spooler and @spool
    registrations run), then the spooler-import modules, then runs the tasks of its directory; never returns."""
    from . import spooler
    who = 'spooler %s' % conf['spoolerRun']['dir']
    _load(conf, who)
    for module in conf['spoolerRun'].get('imports', ()):
        _import_one(conf, module, who)
    signal.signal(signal.SIGWINCH, signal.SIG_IGN)
    spooler.serve(conf, _log, _set_name)


def _mule(conf):
    """A mule (docs/mules.md): loads the app as a worker does, binds its message socket, then runs its post-fork
    hooks and its script, function or message loop (mules.py); never returns."""
    from . import mules, uwsgi_api
    mule_id = conf['muleRun']['id']
    _load(conf, 'mule %d' % mule_id)
    uwsgi_api.bind_mule(mule_id)
    mules.serve(conf, _log, _set_name, conf['controlFd'])


def main():
    conf = json.loads(os.environ.pop('TSGI_WORKER'))
    global _date_prefix
    from .logformat import date_prefix
    _date_prefix = date_prefix(conf.get('logDate'))
    if conf.get('reqLogFd') is not None:
        # req-logger: request lines go to the log master's request pipe; everything else stays on stderr.
        from . import server as _server
        _server.REQ_LOG_FD = conf['reqLogFd']
    _die_with_parent()
    listeners = _prepare(conf)
    # `import uwsgi` and `import uwsgidecorators` in the app: tsgi's, put in sys.modules before the app loads.
    from . import uwsgi_api
    uwsgi_api.install(conf, _date_prefix)
    if conf.get('spoolerRun'):
        _spooler(conf)
    if conf.get('muleRun'):
        _mule(conf)
    if conf.get('zygote'):
        _zygote(conf, _load(conf, 'app loader'), listeners)
    app = _load(conf, 'worker %d' % conf['id'])
    _serve(conf, app, listeners, conf['id'], conf['slot'], conf.get('maxRequests', 0), conf.get('controlFd'), b'R')
