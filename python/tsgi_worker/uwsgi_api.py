"""The `uwsgi` module apps import (`import uwsgi`), as uWSGI 2.0 embeds it: the part of its API that apps and
libraries really use (docs/python-uwsgi-module.md). It is not on sys.path: `install()` puts it, and tsgi's own
`uwsgidecorators`, in sys.modules of the loader or worker before the app is imported, so only apps run by tsgi
see them.

Nothing here runs per request. request_id() and total_requests() read the counters the worker keeps anyway;
logvars live on the core serving the request, and the worker only clears them when one was set.

Anything uWSGI has and tsgi does not provide raises AttributeError naming it (module __getattr__), so
`hasattr(uwsgi, 'cache_get')` is False and no call silently does nothing.
"""
import fcntl
import os
import signal
import socket
import sys
import threading
import types

DOCS = 'docs/python-uwsgi-module.md'

# The uWSGI release whose module this one follows (checked against Debian's uwsgi 2.0.21).
VERSION_INFO = (2, 0, 21, 0, b'tsgi')
VERSION = b'2.0.21-tsgi'

_conf = {}
_worker = None          # the Worker serving requests in this process; None in the app loader
_date_prefix = None
_lock_fd = -1
_thread_locks = {}


def _core():
    """The core (thread) of the worker serving a request in the calling thread, or None."""
    w = _worker
    if w is None:
        return None
    return w.core_by_thread.get(threading.get_ident())


# ---- the API ---------------------------------------------------------------------------------------------

def worker_id():
    """The worker's id (1..processes); 0 in the app loader, which plays the part of uWSGI's master here."""
    return _conf.get('id', 0)


def mule_id():
    """The mule's id (1..) in a mule (docs/mules.md); 0 elsewhere."""
    return _mule_id


def masterpid():
    """The pid of the tsgi master (the Node process that owns the sockets)."""
    return _conf['masterPid']


def total_requests():
    """Requests completed by every worker of the instance, gone ones included (the scoreboard's totals)."""
    w = _worker
    return w.scoreboard.total_requests() if w is not None else 0


def request_id():
    """How many requests this worker's core (thread) completed before the current one (uWSGI counts per core)."""
    core = _core()
    return core.requests if core is not None else 0


def mem():
    """(rss, vsz) of this process, in bytes."""
    from .procmem import memory
    return memory()


def logsize():
    """The size of the log file (logto), 0 when the log is not a file tsgi writes."""
    if not _conf.get('logto'):
        return 0
    try:
        return os.fstat(2).st_size
    except OSError:
        return 0


def log(message):
    """Writes one line to the instance's log."""
    if message.__class__ is bytes:
        message = message.decode('utf-8', 'replace')
    line = '%s\n' % (message,)
    if _date_prefix is not None:
        line = _date_prefix() + line
    try:
        os.write(2, line.encode('utf-8', 'replace'))
    except OSError:
        return False
    return True


def workers():
    """uWSGI's uwsgi.workers(): a tuple with a dict per worker id (1..processes), its keys and types as uWSGI
    2.0.21 gives them, read from the scoreboard. What tsgi does not track is 0, as uWSGI shows it without the
    option that tracks it: rss/vsz (memory-report), signals, and per app the interpreter/callable addresses;
    an app's requests/exceptions are the worker's when it runs one app, 0 with mounts."""
    w = _worker
    slots = w.scoreboard.workers() if w is not None else []
    newest = {}
    for rec in slots:
        # During a reload an id has an old and a new worker: the one spawned last is the id's worker.
        old = newest.get(rec[7])
        if old is None or (rec[9], rec[0]) > (old[9], old[0]):
            newest[rec[7]] = rec
    mounts = _conf.get('mounts') or ()
    points = [m.get('mountpoint', '') for m in mounts] or ['']
    out = []
    for wid in range(1, int(_conf.get('processes', 1)) + 1):
        rec = newest.get(wid)
        if rec is None:
            pid = requests = exceptions = tx = rt = respawns = spawned = 0
            status = b'cheap'
        else:
            _slot, pid, busy, requests, exceptions, tx, rt, _id, respawns, spawned = rec
            status = b'busy' if busy else b'idle'
        one = len(points) == 1
        apps = tuple({'id': i, 'modifier1': 0, 'mountpoint': p.encode('utf-8', 'surrogateescape'),
                      'startup_time': 0, 'interpreter': 0, 'callable': 0,
                      'requests': requests if one else 0, 'exceptions': exceptions if one else 0, 'chdir': b''}
                     for i, p in enumerate(points))
        out.append({'id': wid, 'pid': pid, 'requests': requests, 'delta_requests': requests, 'signals': 0,
                    'exceptions': exceptions, 'status': status, 'rss': 0, 'vsz': 0, 'running_time': rt,
                    'last_spawn': spawned, 'respawn_count': respawns, 'tx': tx,
                    'avg_rt': rt // requests if requests else 0, 'apps': apps})
    return tuple(out)


def _text(value, what):
    if value.__class__ is str:
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode('utf-8', 'replace')
    raise TypeError('uwsgi.%s: expected str or bytes, got %s' % (what, type(value).__name__))


def set_logvar(key, value):
    """Sets a variable of the current request's log line: log-format's %(key) prints it. Cleared after the
    request, as in uWSGI."""
    core = _core()
    if core is None or not core.start_us:
        raise SystemError('uwsgi.set_logvar() can only be called while serving a request, from the thread serving it')
    logvars = core.logvars
    if logvars is None:
        logvars = core.logvars = {}
    logvars[_text(key, 'set_logvar')] = _text(value, 'set_logvar')


def get_logvar(key):
    """The value set_logvar() gave `key` in the current request (bytes), None when unset."""
    core = _core()
    if core is None or not core.start_us:
        raise SystemError('uwsgi.get_logvar() can only be called while serving a request, from the thread serving it')
    if core.logvars is None:
        return None
    value = core.logvars.get(_text(key, 'get_logvar'))
    return None if value is None else value.encode('utf-8')


def reload():
    """Reloads the whole instance gracefully, as SIGHUP to the master: new workers, in-flight requests finish
    (this one too). True once the master was told."""
    try:
        os.kill(_conf['masterPid'], signal.SIGHUP)
    except OSError:
        return False
    return True


def stop():
    """Stops the whole instance at once, as uWSGI's stop() (SIGQUIT to the master). True once the master was
    told; the request that called it may not get its response."""
    try:
        os.kill(_conf['masterPid'], signal.SIGQUIT)
    except OSError:
        return False
    return True


def i_am_the_spooler():
    """True in a spooler process (docs/spooler.md), False in workers and the app loader."""
    return _spooler_process is not None


def _check_lock(num):
    if num != 0:
        raise ValueError('uwsgi lock %r: tsgi has one lock, number 0 (see %s)' % (num, DOCS))


def lock(num=0):
    """Takes the instance-wide lock, shared by every worker (and thread) of the instance; blocks until free."""
    _check_lock(num)
    tl = _thread_locks[0]
    tl.acquire()
    if _lock_fd >= 0:
        try:
            fcntl.lockf(_lock_fd, fcntl.LOCK_EX, 1, _LOCK_OFFSET)
        except BaseException:
            tl.release()
            raise


def unlock(num=0):
    """Releases the lock taken by lock()."""
    _check_lock(num)
    if _lock_fd >= 0:
        fcntl.lockf(_lock_fd, fcntl.LOCK_UN, 1, _LOCK_OFFSET)
    _thread_locks[0].release()


# A byte far beyond the end of the scoreboard file: POSIX record locks on it exclude other processes without
# touching the data (threads of one process are excluded by the threading lock).
_LOCK_OFFSET = 1 << 40

# Attributes uWSGI sets that apps and libraries read, and what `import uwsgi` must not lack.
_PUBLIC = ('worker_id', 'mule_id', 'masterpid', 'total_requests', 'request_id', 'mem', 'logsize', 'log',
           'set_logvar', 'get_logvar', 'workers', 'reload', 'stop', 'i_am_the_spooler', 'lock', 'unlock')


def _module_getattr(name):
    if name.startswith('__') and name.endswith('__'):
        raise AttributeError("module 'uwsgi' has no attribute %r" % name)
    raise AttributeError("uwsgi.%s is not provided by tsgi (its uwsgi module has the part of uWSGI's API listed "
                         "in %s)" % (name, DOCS))


def _exported_options(pairs):
    """uwsgi.opt: the options as given, values as bytes (True for a flag given without a value), the last value
    of a repeated option winning, as uWSGI 2.0 shows them."""
    opt = {}
    for key, value in pairs:
        opt[key] = True if value is True else value.encode('utf-8', 'surrogateescape')
    return opt


# ---- wiring (called by tsgi_worker.main) -------------------------------------------------------------------

def install(conf, date_prefix):
    """Puts `uwsgi` and `uwsgidecorators` in sys.modules, before the app is imported."""
    global _conf, _date_prefix, _lock_fd
    _conf = conf
    _date_prefix = date_prefix
    sb = conf.get('scoreboard')
    _lock_fd = sb['fd'] if sb else -1
    _thread_locks[0] = threading.Lock()
    api = conf.get('uwsgi') or {}
    mod = types.ModuleType('uwsgi', 'tsgi\'s uwsgi module: the part of uWSGI 2.0\'s API apps use (%s).' % DOCS)
    for name in _PUBLIC:
        f = globals()[name]
        mod.__dict__[name] = f
    mod.__dict__.update({
        '__getattr__': _module_getattr,
        'opt': _exported_options(api.get('opt', ())),
        'numproc': conf.get('processes', 1),
        'cores': conf.get('threads', 1),
        'buffer_size': conf.get('bufferSize', 4096),
        'started_on': int(api.get('startedOn', 0)),
        'is_a_reload': bool(api.get('isReload', False)),
        'hostname': socket.gethostname().encode('utf-8', 'surrogateescape'),
        'version': VERSION,
        'version_info': VERSION_INFO,
        'SPOOL_OK': -2, 'SPOOL_RETRY': -1, 'SPOOL_IGNORE': 0,
    })
    _install_caches(conf, mod)
    # enable-metrics (docs/metrics.md): the metric functions exist either way, as in uWSGI.
    from . import metrics as _metrics
    mod.__dict__.update(_metrics.functions(conf.get('metrics')))
    if conf.get('signals'):
        # The signal framework (docs/signals.md): routed by the master; nothing connects until the app uses it.
        from . import signals
        signals.configure(conf['signals'])
        mod.__dict__.update({
            'register_signal': signals.register_signal, 'signal': signals.raise_signal,
            'signal_registered': signals.signal_registered, 'add_timer': signals.add_timer,
            'add_rb_timer': signals.add_rb_timer, 'add_cron': signals.add_cron,
            'add_file_monitor': signals.add_file_monitor,
        })
    sys.modules['uwsgi'] = mod
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'uwsgidecorators.py')
    spec = importlib.util.spec_from_file_location('uwsgidecorators', path)
    deco = importlib.util.module_from_spec(spec)
    sys.modules['uwsgidecorators'] = deco
    spec.loader.exec_module(deco)
    return mod


def bind_worker(worker, wid):
    """This process is now worker `wid` (after the loader forked it, or in a lazy-apps worker)."""
    global _worker
    _worker = worker
    _conf['id'] = wid
    # A fork does not carry the loader's threads: a lock held by one of them there is free here.
    _thread_locks[0] = threading.Lock()
    if _caches is not None:
        _caches.after_fork()
    _become('worker', wid)


def _become(role, ident):
    signals = sys.modules.get('tsgi_worker.signals')
    if signals is not None:
        signals.become(role, ident)


def post_fork(log_error):
    """uwsgi.post_fork_hook, in a worker the loader forked (uwsgidecorators' @postfork uses it)."""
    hook = sys.modules['uwsgi'].__dict__.get('post_fork_hook')
    if hook is None:
        return
    try:
        hook()
    except Exception:
        import traceback
        log_error('exception in uwsgi.post_fork_hook:\n' + traceback.format_exc().rstrip('\n'))


def at_exit(log_error):
    """A worker ends: uwsgi.atexit, then the handlers the app registered with Python's atexit (both as uWSGI
    runs them in its workers)."""
    mod = sys.modules.get('uwsgi')
    hook = mod.__dict__.get('atexit') if mod is not None else None
    if hook is not None:
        try:
            hook()
        except Exception:
            import traceback
            log_error('exception in uwsgi.atexit:\n' + traceback.format_exc().rstrip('\n'))
    import atexit
    run = getattr(atexit, '_run_exitfuncs', None)
    if run is not None:
        try:
            run()
        except Exception:
            pass


# ---- mules (docs/mules.md; the transport and the mule's loop are in mules.py) -------------------------------

_mule_id = 0
_mule_receiver = None   # a mule's own socket (mules.Receiver)
_mule_sender = None     # created at the first message this process sends


def bind_mule(mule_id):
    """This process is mule `mule_id`: binds its socket before the post-fork hooks run (they may read it)."""
    global _mule_id, _mule_receiver
    from . import mules
    _mule_id = mule_id
    _mule_receiver = mules.Receiver(_conf['mules']['runDir'], mule_id, _conf['mules']['farms'])
    _become('mule', mule_id)


def _sender():
    global _mule_sender
    if _mule_sender is None:
        conf = _conf.get('mules')
        if not conf:
            raise ValueError('no mule configured')
        from . import mules
        _mule_sender = mules.Sender(conf)
    return _mule_sender


def _msg_bytes(message):
    if message.__class__ is str:
        return message.encode('utf-8')
    if not isinstance(message, (bytes, bytearray)):
        raise TypeError('a mule message must be bytes')
    return bytes(message)


def mule_msg(message, target=0):
    """Sends `message` to mule `target` (1..), to a farm (its name), or (0, the default) to whichever mule takes
    it. True when it was queued; False (and a log line) when that mule cannot take it, as uWSGI answers."""
    from .mules import FARM, MULE
    sender = _sender()
    data = MULE + _msg_bytes(message)
    if target.__class__ in (str, bytes):
        name = target.decode('utf-8', 'replace') if target.__class__ is bytes else target
        ids = sender.farms.get(name)
        if ids is None:
            raise ValueError('invalid farm')
        ok = sender.send_any(ids, FARM + data[1:])
    elif isinstance(target, int):
        if target == 0:
            ok = sender.send_any(range(1, sender.count + 1), data)
        elif 0 < target <= sender.count:
            ok = sender.send_to(target, data)
        else:
            log('mule_msg(): mule %d does not exist' % target)
            return False
    else:
        raise ValueError('invalid mule')
    if not ok:
        log('mule_msg(): the message could not be queued (the mule is not running, or its queue is full)')
    return ok


def farm_msg(farm, message):
    """Sends `message` to one mule of the farm named `farm`."""
    return mule_msg(message, farm)


def mule_get_msg(manage_signals=True, manage_farms=True, buffer_size=65536, timeout=-1):
    """In a mule: waits for the next message of its queue (and of its farms' unless manage_farms is false) and
    returns it (bytes); None after `timeout` seconds (-1: wait for ever)."""
    if _mule_receiver is None:
        raise ValueError('you can receive mule messages only in a mule !')
    from .mules import FARM, MULE
    kinds = (MULE, FARM) if manage_farms else (MULE,)
    signals = sys.modules.get('tsgi_worker.signals') if manage_signals else None
    return _mule_receiver.get(kinds, buffer_size, None if timeout is None or timeout < 0 else timeout, signals)


def farm_get_msg():
    """In a mule of a farm: waits for the next farm message and returns it (bytes); None outside any farm."""
    if _mule_receiver is None or not _mule_receiver.farms:
        return None
    from .mules import FARM
    return _mule_receiver.get((FARM,), 65536, None)


def in_farm(name=None):
    """True in a mule of the farm `name` (str or bytes); None otherwise."""
    if _mule_receiver is None:
        return None
    if name.__class__ is bytes:
        name = name.decode('utf-8', 'replace')
    return True if name in _mule_receiver.farms else None


_PUBLIC = _PUBLIC + ('mule_msg', 'farm_msg', 'mule_get_msg', 'farm_get_msg', 'in_farm')


# ---- the spooler (docs/spooler.md; the task files and the spooler's loop are in spooler.py) -----------------

_spooler_process = None   # the Spooler running in this process, when it is a spooler


def bind_spooler(sp):
    global _spooler_process
    _spooler_process = sp


def _spooler_conf():
    sp = _conf.get('spooler')
    if not sp:
        raise ValueError('no spooler is configured (spooler = DIR; see docs/spooler.md)')
    return sp


def _spooler_pids():
    """[(pid, dir)] of this instance's spooler processes, from the file the master keeps up to date."""
    try:
        with open(os.path.join(_spooler_conf()['runDir'], 'spoolers'), 'r') as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        pid, _, directory = line.partition(' ')
        if pid.isdigit():
            out.append((int(pid), directory))
    return out


def spool(*args, **kwargs):
    """Writes a task for the spooler (a dict, or keyword arguments): its file's path, as bytes. Keys and values
    are bytes or str (other values are converted with bytes()); 'body' may be any size; 'spooler' names the
    directory, 'priority' a subdirectory, 'at' the epoch second before which it does not run."""
    from . import spooler
    if args:
        task = args[0]
        if not isinstance(task, dict):
            raise ValueError('The argument of spooler callable must be a dictionary')
    else:
        task = kwargs
    sp = _spooler_conf()
    path, size = spooler.write_task(list(sp['dirs']) + list(sp['external']), task)
    if not sp.get('quiet'):
        log('[spooler] written %d bytes to file %s' % (size, path.decode('utf-8', 'replace')))
    directory = os.path.dirname(path.decode('utf-8', 'surrogateescape'))
    for pid, d in _spooler_pids():
        # The spoolers of that directory scan at once instead of at their next spooler-frequency tick.
        if d == directory or os.path.dirname(directory) == d:
            try:
                os.kill(pid, signal.SIGUSR1)
            except OSError:
                pass
    return path


send_to_spooler = spool


def spooler_pid():
    """The pid of the first spooler process (0 when none runs)."""
    pids = _spooler_pids() if _conf.get('spooler') else []
    return pids[0][0] if pids else 0


def spooler_pids():
    """The pids of every spooler process of the instance."""
    return [pid for pid, _ in _spooler_pids()] if _conf.get('spooler') else []


def spooler_jobs():
    """The task files waiting in the first spooler directory (its top level, as uWSGI lists them): paths as bytes."""
    from . import spooler
    sp = _conf.get('spooler')
    if not sp or not (sp['dirs'] or sp['external']):
        return []
    directory = (list(sp['dirs']) + list(sp['external']))[0]
    out = []
    try:
        names = os.listdir(directory)
    except OSError:
        return out
    for name in names:
        if name.startswith(spooler.PREFIX):
            path = os.path.join(directory, name)
            if os.path.isfile(path) and not os.path.islink(path) and os.access(path, os.R_OK | os.W_OK):
                out.append(path.encode('utf-8', 'surrogateescape'))
    return out


def spooler_get_task(path):
    """The dict a spooler function would get for the task file at `path`, or None when it is not one."""
    from . import spooler
    if isinstance(path, bytes):
        path = path.decode('utf-8', 'surrogateescape')
    if not os.path.isfile(path) or not os.access(path, os.R_OK | os.W_OK):
        return None
    parsed = spooler.read_task(path)
    if parsed is None:
        return None
    return spooler.task_dict(path, parsed[0], parsed[1])


def set_spooler_frequency(seconds):
    """Every spooler of the instance scans (and retries) every `seconds` from now on, as uWSGI's shared value."""
    seconds = int(seconds)
    run = _spooler_conf()['runDir']
    tmp = os.path.join(run, 'frequency.%d' % os.getpid())
    with open(tmp, 'w') as f:
        f.write('%d\n' % seconds)
    os.replace(tmp, os.path.join(run, 'frequency'))
    return True


_PUBLIC = _PUBLIC + ('spool', 'send_to_spooler', 'spooler_pid', 'spooler_pids', 'spooler_jobs', 'spooler_get_task',
                     'set_spooler_frequency')
# ---- the caches (docs/cache.md) ------------------------------------------------------------------------------
# Installed only when the instance has a cache (cache2, cache): otherwise `uwsgi.cache_get` is an AttributeError,
# as uWSGI's module lacks the cache functions without one. Arguments are checked as uWSGI's PyArg_ParseTuple
# formats check them (s#: str or bytes, l: int, s: str), return values are uWSGI's: bytes or None, True or None.

_caches = None


def _bytes_arg(v):
    if v.__class__ is str:
        return v.encode('utf-8')
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    raise TypeError("a bytes-like object is required, not '%s'" % type(v).__name__)


def _int_arg(v):
    if isinstance(v, int):
        return v
    raise TypeError("'%s' object cannot be interpreted as an integer" % type(v).__name__)


def _name_arg(fname, n, v):
    if v is None or v.__class__ is str:
        return v
    raise TypeError('%s() argument %d must be str, not %s' % (fname, n, type(v).__name__))


def _nargs(fname, args, lo, hi):
    n = len(args)
    if n < lo:
        raise TypeError('%s() takes at least %d argument%s (%d given)' % (fname, lo, '' if lo == 1 else 's', n))
    if n > hi:
        raise TypeError('%s() takes at most %d argument%s (%d given)' % (fname, hi, '' if hi == 1 else 's', n))


def _ok(b):
    return True if b else None


def cache_get(*args):
    """The value of a key (bytes), or None: missing, expired, or no such cache."""
    _nargs('cache_get', args, 1, 2)
    key = _bytes_arg(args[0])
    c = _caches.get(_name_arg('cache_get', 2, args[1]) if len(args) > 1 else None)
    return None if c is None else c.get(key)


def cache_exists(*args):
    _nargs('cache_exists', args, 1, 2)
    key = _bytes_arg(args[0])
    c = _caches.get(_name_arg('cache_exists', 2, args[1]) if len(args) > 1 else None)
    return None if c is None else _ok(c.exists(key))


def cache_del(*args):
    _nargs('cache_del', args, 1, 2)
    key = _bytes_arg(args[0])
    c = _caches.get(_name_arg('cache_del', 2, args[1]) if len(args) > 1 else None)
    return None if c is None else _ok(c.delete(key))


def _setter(fname, flags):
    def setter(*args):
        _nargs(fname, args, 2, 4)
        key = _bytes_arg(args[0])
        value = _bytes_arg(args[1])
        expires = _int_arg(args[2]) if len(args) > 2 else 0
        c = _caches.get(_name_arg(fname, 4, args[3]) if len(args) > 3 else None)
        return None if c is None else _ok(c.set(key, value, max(expires, 0), flags))
    setter.__name__ = setter.__qualname__ = fname
    return setter


cache_set = _setter('cache_set', 0)
cache_set.__doc__ = 'Stores a value under a key that is not in the cache yet (an existing key is left alone: None).'
cache_update = _setter('cache_update', 1)
cache_update.__doc__ = 'Stores a value under a key, replacing the value it has.'


def _math(fname, op):
    def math(*args):
        _nargs(fname, args, 1, 4)
        key = _bytes_arg(args[0])
        delta = _int_arg(args[1]) if len(args) > 1 else 1
        expires = _int_arg(args[2]) if len(args) > 2 else 0
        c = _caches.get(_name_arg(fname, 4, args[3]) if len(args) > 3 else None)
        return None if c is None else _ok(c.math(key, delta, max(expires, 0), op))
    math.__name__ = math.__qualname__ = fname
    math.__doc__ = 'The 64-bit number under a key, changed in place (a missing key starts at 0).'
    return math


def cache_num(*args):
    """The 64-bit number stored under a key (cache_inc & co.), 0 when missing or not 8 bytes long."""
    _nargs('cache_num', args, 1, 2)
    key = _bytes_arg(args[0])
    c = _caches.get(_name_arg('cache_num', 2, args[1]) if len(args) > 1 else None)
    return 0 if c is None else c.num(key)


def cache_clear(*args):
    _nargs('cache_clear', args, 0, 1)
    c = _caches.get(_name_arg('cache_clear', 1, args[0]) if args else None)
    return None if c is None else _ok(c.clear())


def cache_keys(*args):
    _nargs('cache_keys', args, 0, 1)
    c = _caches.get(_name_arg('cache_keys', 1, args[0]) if args else None)
    if c is None:
        raise ValueError('no local uWSGI cache available')
    return c.keys()


_CACHE_API = ('cache_get', 'cache_set', 'cache_update', 'cache_del', 'cache_exists', 'cache_clear', 'cache_inc',
              'cache_dec', 'cache_mul', 'cache_div', 'cache_num', 'cache_keys')


def _install_caches(conf, mod):
    global _caches, cache_inc, cache_dec, cache_mul, cache_div
    cconf = conf.get('caches')
    if not cconf:
        return
    from . import cache as cachemod
    cache_inc = _math('cache_inc', cachemod.INC)
    cache_dec = _math('cache_dec', cachemod.DEC)
    cache_mul = _math('cache_mul', cachemod.MUL)
    cache_div = _math('cache_div', cachemod.DIV)
    _caches = cachemod.Caches(cconf, log)
    for name in _CACHE_API:
        mod.__dict__[name] = globals()[name]


def caches():
    """The instance's caches (for routing), or None."""
    return _caches
