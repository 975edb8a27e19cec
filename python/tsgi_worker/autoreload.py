"""py-autoreload: reload the workers when the source file of a loaded module changes (development aid).

The process that imported the app takes a first look at every module's file (snapshot); one worker (id 1)
then looks again every N seconds from a background thread and, at the first change, asks the master for a
graceful reload (SIGHUP, the same reload touch-reload starts). Modules imported later are seen on the first
look after their import. Nothing of this is loaded without py-autoreload."""
import os
import signal
import sys
import threading
import time

_mtimes = {}


def _files():
    for name, module in list(sys.modules.items()):
        path = getattr(module, '__file__', None)
        if isinstance(path, str) and path:
            yield path


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def snapshot():
    """Records the files of the modules loaded so far (called right after the app is imported)."""
    for path in _files():
        if path not in _mtimes:
            _mtimes[path] = _mtime(path)


def changed():
    """The first file that changed since it was first seen, or None."""
    for path in _files():
        now = _mtime(path)
        if path not in _mtimes:
            _mtimes[path] = now
        elif now is not None and now != _mtimes[path]:
            return path
    return None


def start(interval, master_pid, log):
    def loop():
        while True:
            time.sleep(interval)
            path = changed()
            if path is not None:
                log('[tsgi-python-reloader] module/file %s has been modified; asking the master for a reload' % path)
                try:
                    os.kill(master_pid, signal.SIGHUP)
                except OSError as e:
                    log('[tsgi-python-reloader] cannot signal the master (pid %d): %s' % (master_pid, e.strerror))
                return
    threading.Thread(target=loop, name='py-autoreload', daemon=True).start()
