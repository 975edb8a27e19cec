"""Worker start-up: read what the master passed, load the app, tell the master we are ready, serve.

The master passes its configuration in the TSGI_WORKER environment variable (JSON, read once and removed
from os.environ so the app never sees it), the listening sockets and the scoreboard as inherited file
descriptors, and a control descriptor to which the worker writes one byte once the app is loaded.

Exit statuses the master understands: 0 stopped normally, 22 the app could not be loaded, 23 a socket could
not be listened on, 1 anything else.
"""
import importlib
import importlib.util
import json
import os
import signal
import socket
import struct
import sys
import traceback

EXIT_APP_FAILED = 22
EXIT_SOCKET_FAILED = 23


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


def _log(line):
    os.write(2, (line + '\n').encode('utf-8', 'replace'))


def load_app(app):
    """Imports the app as uWSGI's python plugin would. Returns the callable or raises with a clear message."""
    callable_name = app.get('callable') or 'application'
    if app.get('wsgiFile'):
        path = os.path.abspath(app['wsgiFile'])
        if not os.path.exists(path):
            raise ImportError('wsgi-file %s does not exist' % path)
        name = 'uwsgi_file_' + ''.join(c if c.isalnum() else '_' for c in path)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError('wsgi-file %s is not a Python file' % path)
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
        raise ImportError("%s has no callable named '%s' (set callable = NAME or module = %s:NAME)"
                          % (where, callable_name, app.get('module') or 'MODULE'))
    if not callable(application):
        raise ImportError("'%s' in %s is not callable" % (callable_name, where))
    return application


def main():
    conf = json.loads(os.environ.pop('TSGI_WORKER'))
    _die_with_parent()
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

    from .scoreboard import NoScoreboard, Scoreboard
    from .server import Worker

    from .server import LINK, UWSGI_TCP, UWSGI_UNIX
    listeners = []
    for fd in conf['socketFds']:
        sock = socket.socket(fileno=fd)
        try:
            sock.listen(conf['listen'])
        except OSError as e:
            _log('[pid: %d|worker %d] cannot listen on socket fd %d: %s' % (os.getpid(), conf['id'], fd, e.strerror))
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

    sb = conf.get('scoreboard')
    scoreboard = Scoreboard(sb['fd'], sb['size'], conf['slot'], os.getpid()) if sb else NoScoreboard()

    try:
        app = load_app(conf['app'])
    except BaseException:
        _log('[pid: %d|worker %d] cannot load the app %s:\n%s' % (
            os.getpid(), conf['id'], conf['appName'], traceback.format_exc().rstrip('\n')))
        os._exit(EXIT_APP_FAILED)

    worker = Worker(conf, app, listeners, scoreboard)
    signal.signal(signal.SIGTERM, worker.on_signal)
    signal.signal(signal.SIGHUP, worker.on_signal)
    signal.signal(signal.SIGINT, worker.on_signal)
    signal.signal(signal.SIGQUIT, worker.on_signal)
    if conf.get('controlFd') is not None:
        os.write(conf['controlFd'], b'R')
    worker.serve()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
