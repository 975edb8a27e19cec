"""uWSGI's spooler (docs/spooler.md): task files and the spooler process's loop.

A task file is what uWSGI 2.0 writes, so a directory is shared with a real uWSGI both ways: a 4-byte uwsgi header
(modifier1 17, the size of the vars, little-endian, modifier2 0), the task's dict as uwsgi vars (2-byte length, key,
2-byte length, value), then the `body` bytes, if any. The name starts with `uwsgi_spoolfile_on_` (the spooler runs
nothing else); a `priority` puts it in that subdirectory, which only an ordered spooler scans; an `at` (epoch
seconds) sets the file's mtime, and a spooler leaves a file whose mtime is in the future. A writer holds a POSIX
write lock on the file while writing it, and a spooler holds one while it runs the task: several spoolers on one
directory (and uWSGI's own) never run a task twice at once.

Nothing here is imported by a worker unless the app calls uwsgi.spool() or a spooler function.
"""
import errno
import fcntl
import os
import random
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback

PREFIX = 'uwsgi_spoolfile_on_'
SPOOL_OK, SPOOL_RETRY, SPOOL_IGNORE = -2, -1, 0

_counter = [0]
_write_lock = threading.Lock()
_hostname = None


def pack_vars(task):
    """The uwsgi vars of a task dict: keys and values bytes (str keys/values are UTF-8; other values their
    bytes(), as uWSGI's PyObject_Bytes). Returns (vars, body)."""
    body = b''
    parts = []
    for key, value in task.items():
        if key == 'body' or key == b'body':
            if isinstance(value, (bytes, bytearray)):
                body = bytes(value)
                continue
        if key.__class__ is str:
            key = key.encode('utf-8')
        elif not isinstance(key, (bytes, bytearray)):
            raise ValueError('spooler callable dictionary must contains only bytes')
        if value.__class__ is str:
            value = value.encode('utf-8')
        elif not isinstance(value, (bytes, bytearray)):
            try:
                value = bytes(value)
            except Exception:
                raise ValueError('spooler callable dictionary must contains only bytes')
        if len(key) > 0xffff or len(value) > 0xffff:
            raise ValueError('spooler: a key or value is longer than 64k (put big data in body)')
        parts.append(struct.pack('<H', len(key)) + key + struct.pack('<H', len(value)) + value)
    data = b''.join(parts)
    if len(data) > 0xffff:
        raise ValueError('spooler: the task\'s vars exceed 64k (put big data in body)')
    return data, body


def parse_vars(data):
    """uwsgi vars -> dict of bytes; None when malformed."""
    out = {}
    i, n = 0, len(data)
    while i < n:
        if i + 2 > n:
            return None
        (kl,) = struct.unpack_from('<H', data, i)
        i += 2
        if kl == 0 or i + kl + 2 > n:
            return None
        key = data[i:i + kl]
        i += kl
        (vl,) = struct.unpack_from('<H', data, i)
        i += 2
        if i + vl > n:
            return None
        out[key] = data[i:i + vl]
        i += vl
    return out


def _str_of(value):
    return value.decode('utf-8', 'replace') if isinstance(value, (bytes, bytearray)) else str(value)


def write_task(dirs, task):
    """uwsgi.spool(): writes the task file, returns its path (bytes). `dirs`: this instance's spooler directories,
    the first the default; a `spooler` key names another of them."""
    global _hostname
    if not dirs:
        raise ValueError('unable to spool job: no spooler is configured (spooler = DIR)')
    data, body = pack_vars(task)
    target = dirs[0]
    spooler = task.get(b'spooler', task.get('spooler'))
    if spooler:
        name = _str_of(spooler)
        if name not in dirs:
            raise ValueError('unable to find spooler "%s"' % name)
        target = name
    directory = target
    priority = task.get(b'priority', task.get('priority'))
    if priority:
        directory = os.path.join(target, _str_of(priority))
        try:
            os.mkdir(directory, 0o777)
        except FileExistsError:
            pass
    at = task.get(b'at', task.get('at'))
    when = 0
    if at:
        try:
            when = int(_str_of(at).split('.', 1)[0])
        except ValueError:
            when = 0
    if _hostname is None:
        _hostname = socket.gethostname()
    with _write_lock:
        _counter[0] += 1
        now = time.time()
        path = os.path.join(directory, '%s%s_%d_%d_%d_%d_%d' % (
            PREFIX, _hostname, os.getpid(), _counter[0], random.randrange(1 << 31), int(now), int(now * 1e6) % 1000000))
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            # Locked while written: a spooler scanning now skips it (and retries later).
            fcntl.lockf(fd, fcntl.LOCK_EX)
            content = struct.pack('<BHB', 17, len(data), 0) + data + body
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view):]
            if when > 0:
                os.utime(fd, (when, when))
        except BaseException:
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:
                pass
            raise
        os.close(fd)
    return path.encode('utf-8', 'surrogateescape'), len(content)


def read_task(path, fd=None):
    """(vars dict, body) of a task file, or None when it is not a complete task. With `fd`, reads that descriptor."""
    own = fd is None
    if own:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
    try:
        content = b''
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            content += chunk
    finally:
        if own:
            os.close(fd)
    if len(content) < 4:
        return None
    size = struct.unpack_from('<H', content, 1)[0]
    if len(content) < 4 + size:
        return None
    task = parse_vars(content[4:4 + size])
    if task is None:
        return None
    return task, content[4 + size:]


def task_dict(name, task, body):
    """The dict a spooler function gets, as uWSGI's python plugin builds it: the vars (bytes keys and values),
    'spooler_task_name' (the file name, bytes) and 'body' (bytes) when the task had one."""
    d = dict(task)
    d['spooler_task_name'] = name.encode('utf-8', 'surrogateescape') if name.__class__ is str else name
    if body:
        d['body'] = body
    return d


# ---- the spooler process -----------------------------------------------------------------------------------

class Spooler(object):
    def __init__(self, conf, log):
        sp = conf['spoolerRun']
        self.dir = sp['dir']
        self.frequency = sp['frequency']
        self.chdir = sp.get('chdir')
        self.max_tasks = sp.get('maxTasks', 0)
        self.harakiri = sp.get('harakiri', 0)
        self.ordered = sp.get('ordered', False)
        self.quiet = sp.get('quiet', False)
        self.run_dir = (conf.get('spooler') or {}).get('runDir')
        self.log = log
        self.tasks = 0
        self.stopping = False
        self.running = False
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def prefix(self):
        return '[spooler %s pid: %d]' % (self.dir, os.getpid())

    def on_stop(self, signum, frame):
        # A task in progress finishes (the master waits reload-mercy, then kills); an idle spooler leaves now.
        self.stopping = True
        if not self.running:
            raise SystemExit(0)

    def on_wakeup(self, signum, frame):
        try:
            os.write(self.wake_w, b'w')
        except OSError:
            pass

    def install_signals(self):
        signal.signal(signal.SIGTERM, self.on_stop)
        signal.signal(signal.SIGINT, self.on_stop)
        signal.signal(signal.SIGQUIT, self.on_stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, self.on_wakeup)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    def loop(self):
        while not self.stopping:
            os.chdir(self.dir)
            self.scan(self.dir)
            if self.stopping:
                break
            frequency = self.current_frequency()
            try:
                r, _, _ = select.select([self.wake_r], [], [], frequency)
            except InterruptedError:
                r = []
            if r:
                try:
                    os.read(self.wake_r, 4096)
                except BlockingIOError:
                    pass

    def current_frequency(self):
        """spooler-frequency, or what uwsgi.set_spooler_frequency() set last (in any process of the instance)."""
        if self.run_dir:
            try:
                with open(os.path.join(self.run_dir, 'frequency')) as f:
                    value = int(f.read().strip() or 0)
                if value > 0:
                    return value
            except (OSError, ValueError):
                pass
        return self.frequency

    def scan(self, directory):
        try:
            names = os.listdir(directory)
        except OSError as e:
            self.log('%s cannot read %s: %s' % (self.prefix(), directory, e.strerror))
            return
        if self.ordered:
            names.sort(key=_version_key)
        for name in names:
            if self.stopping:
                return
            if name.startswith(PREFIX) or (self.ordered and name.isdigit()):
                self.manage(directory, name)

    def manage(self, directory, name):
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
        except OSError:
            return
        if st.st_mtime > time.time():
            return   # `at`: not yet
        import stat as statmod
        if statmod.S_ISDIR(st.st_mode):
            if self.ordered and directory == self.dir:
                self.scan(path)
            return
        if not statmod.S_ISREG(st.st_mode):
            return
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return   # being written, or run by another spooler
            if not os.path.exists(path):
                return   # run and removed by another spooler between our open and lock
            parsed = read_task(path, fd)
            if parsed is None:
                if os.fstat(fd).st_size >= 4:
                    # Broken beyond repair (uWSGI removes such a file too).
                    self.log('%s removing malformed task %s' % (self.prefix(), name))
                    _unlink(path)
                return
            task, body = parsed
            self.run_task(directory, name, path, task, body)
        finally:
            os.close(fd)   # and the lock with it
        if self.max_tasks and self.tasks >= self.max_tasks:
            self.log('%s maximum number of tasks reached (%d) recycling ...' % (self.prefix(), self.max_tasks))
            raise SystemExit(0)

    def run_task(self, directory, name, path, task, body):
        self.running = True
        _notify(b'B\n')
        if not self.quiet:
            self.log('%s managing request %s ...' % (self.prefix(), name))
        if self.chdir:
            try:
                os.chdir(self.chdir)
            except OSError as e:
                self.log('%s spooler-chdir %s: %s' % (self.prefix(), self.chdir, e.strerror))
        start = time.time()
        if self.harakiri:
            signal.alarm(self.harakiri)
        try:
            ret = _call_spooler(name, task, body, self.log)
        finally:
            if self.harakiri:
                signal.alarm(0)
            self.running = False
        if ret == SPOOL_IGNORE:
            self.log('unable to find the spooler function, have you loaded it into the spooler process ?')
        else:
            self.tasks += 1
            if ret == SPOOL_OK:
                if not self.quiet:
                    self.log('%s done with task %s after %d seconds' % (self.prefix(), name, int(time.time() - start)))
                _unlink(path)
        _notify_tasks(self.tasks)
        try:
            os.chdir(self.dir)
        except OSError:
            pass
        if self.stopping:
            raise SystemExit(0)


_tasks_fd = [None]


def _notify(line):
    """A line to the master on the control channel: B (a task began), T N (it ended; N tasks so far)."""
    fd = _tasks_fd[0]
    if fd is not None:
        try:
            os.write(fd, line)
        except OSError:
            pass


def _notify_tasks(n):
    _notify(b'T %d\n' % n)


def _call_spooler(name, task, body, log):
    """Runs uwsgi.spooler with the task: its int result; a non-int result or an exception is a retry (-1), as
    uWSGI's python plugin decides; no uwsgi.spooler at all is 0 (the task is left alone)."""
    mod = sys.modules.get('uwsgi')
    func = mod.__dict__.get('spooler') if mod is not None else None
    if func is None:
        return SPOOL_IGNORE
    try:
        ret = func(task_dict(name, task, body))
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt,)):
            raise
        log(traceback.format_exc().rstrip('\n'))
        return SPOOL_RETRY
    if not isinstance(ret, int):
        return SPOOL_RETRY
    return ret


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _version_key(name):
    """glibc's versionsort, near enough: digit runs compare as numbers."""
    import re
    return [(0, int(p), '') if p.isdigit() else (1, 0, p) for p in re.split(r'(\d+)', name)]


def serve(conf, log, set_name):
    """The spooler process's main, after the app (and spooler-import modules) loaded; never returns."""
    from . import uwsgi_api
    sp = Spooler(conf, log)
    sp.install_signals()
    uwsgi_api.bind_spooler(sp)
    set_name(conf.get('titles', {}).get('spooler', 'tsgi spooler'))
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 19)   # as uWSGI: tasks yield to the workers
    except (OSError, AttributeError):
        pass
    ctl = conf.get('controlFd')
    _tasks_fd[0] = ctl
    if ctl is not None:
        os.write(ctl, b'R\n')
    code = 0
    try:
        sp.loop()
    except SystemExit as e:
        code = e.code or 0
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
