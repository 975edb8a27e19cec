"""tsgi's `uwsgidecorators` (docs/python-uwsgi-module.md), put in sys.modules of tsgi's Python processes as
`uwsgidecorators`, so `from uwsgidecorators import postfork` works whether or not uWSGI's own file is
installed. It keeps uWSGI 2.0's semantics for what tsgi can do: @postfork, @thread, @lock, @spool, @spoolforever,
@spoolraw (docs/spooler.md), @mulefunc, @mule, @muleloop, @mulemsg, @farm (docs/mules.md), @signal, @timer,
@rbtimer, @cron, @filemon (docs/signals.md). The decorators that need a part of uWSGI tsgi does not have (RPC,
Erlang, user harakiri) stop the app's import
with a message naming them, rather than decorating functions that would never run.
"""
import sys
import threading

import uwsgi

postfork_chain = []


def postfork_chain_hook():
    """uwsgi.post_fork_hook: the @postfork functions, in the order they were decorated."""
    for entry in postfork_chain:
        entry()


uwsgi.post_fork_hook = postfork_chain_hook


class postfork(object):
    """Runs the function in every worker right after the app loader forked it (`@postfork`), or only in the
    worker whose id is given (`@postfork(2)`). Not in the loader, and not with lazy-apps (no fork follows the
    import), as in uWSGI."""

    def __init__(self, target):
        # @postfork on a function, or @postfork(WID) and then the function.
        self.only = 0 if callable(target) else target
        self.f = target if callable(target) else None
        postfork_chain.append(self)

    def __call__(self, *args, **kwargs):
        if self.f is None:
            self.f = args[0]      # the decoration step of @postfork(WID); uWSGI's returns None here
            return self.f
        if self.only and self.only != uwsgi.worker_id():
            return None
        return self.f()


class thread(object):
    """Calling the function runs it in a new daemon thread (threads always work in tsgi workers)."""

    def __init__(self, f):
        self.f = f

    def __call__(self, *args):
        t = threading.Thread(target=self.f, args=args)
        t.daemon = True
        t.start()
        return self.f


class lock(object):
    """Calls to the function hold the instance-wide lock (uwsgi.lock()): one at a time across every worker."""

    def __init__(self, f):
        self.f = f

    def __call__(self, *args, **kwargs):
        uwsgi.lock()
        try:
            return self.f(*args, **kwargs)
        finally:
            uwsgi.unlock()


def _unsupported(name, what):
    def refuse(*args, **kwargs):
        raise RuntimeError('uwsgidecorators.%s needs %s, which tsgi does not provide (see %s)'
                           % (name, what, 'docs/python-uwsgi-module.md'))
    refuse.__name__ = name
    return refuse


for _name, _what in (('rpc', "uWSGI's RPC"), ('erlang', "uWSGI's Erlang plugin"),
                     ('harakiri', 'uwsgi.set_user_harakiri()')):
    globals()[_name] = _unsupported(_name, _what)
del _name, _what


# ---- the spooler (docs/spooler.md) --------------------------------------------------------------------------
# A decorated function is registered under its name; calling it (or its .spool()) writes a task naming it
# ('ud_spool_func'), and the spooler process, which imported the same app, calls it with the task's dict.
# 'ud_spool_ret' fixes the task's outcome whatever the function returns: SPOOL_OK for @spool (done once),
# SPOOL_RETRY for @spoolforever (run again every spooler-frequency); @spoolraw leaves it to the function.

spooler_functions = {}

_SPOOLER_KEYS = ('message_dict', 'spooler', 'priority', 'at', 'body')


def _to_bytes(v):
    return v.encode('utf-8') if v.__class__ is str else v


def _to_str(v):
    return v.decode('utf-8') if v.__class__ is bytes else v


def manage_spool_request(vars):
    """uwsgi.spooler when the app uses the decorators: calls the registered function with the task."""
    import pickle
    task = dict((_to_str(k), v) for k, v in vars.items())
    if 'args' in task:
        task['args'] = pickle.loads(task.pop('args'))
        task['kwargs'] = pickle.loads(task.pop('kwargs'))
    task = dict((k, _to_str(v)) for k, v in task.items())
    f = spooler_functions[task['ud_spool_func']]
    if 'args' in task:
        ret = f(*task['args'], **task['kwargs'])
    else:
        ret = f(task)
    return int(task.get('ud_spool_ret', ret))


class _spoolraw(object):
    outcome = None

    def __init__(self, f, pass_arguments):
        if 'spooler' not in uwsgi.opt:
            raise Exception('you have to enable the uWSGI spooler to use @%s decorator' % self.__class__.__name__)
        self.f = f
        self.pass_arguments = pass_arguments
        self.base_dict = {'ud_spool_func': f.__name__}
        spooler_functions[f.__name__] = f
        f.spool = self.__call__        # the pre-1.9.13 spelling: func.spool(...)
        if uwsgi.__dict__.get('spooler') is None:
            uwsgi.spooler = manage_spool_request

    def __call__(self, *args, **kwargs):
        task = dict(self.base_dict)
        if self.outcome is not None:
            task['ud_spool_ret'] = str(self.outcome)
        if self.pass_arguments:
            import pickle
            for key in _SPOOLER_KEYS:
                if key in kwargs:
                    task[key] = kwargs.pop(key)
            task['args'] = pickle.dumps(args)
            task['kwargs'] = pickle.dumps(kwargs)
        else:
            if args:
                task.update(args[0])
            task.update(kwargs)
        return uwsgi.spool(dict((_to_bytes(k), _to_bytes(v)) for k, v in task.items()))

    def spool(self, *args, **kwargs):
        return self.__call__(*args, **kwargs)


class _spool(_spoolraw):
    outcome = uwsgi.SPOOL_OK


class _spoolforever(_spoolraw):
    outcome = uwsgi.SPOOL_RETRY


def _decorate(f, pass_arguments, cls):
    if f is None:
        return lambda g: cls(g, pass_arguments)
    return cls(f, pass_arguments)


def spoolraw(f=None, pass_arguments=False):
    return _decorate(f, pass_arguments, _spoolraw)


def spool(f=None, pass_arguments=False):
    return _decorate(f, pass_arguments, _spool)


def spoolforever(f=None, pass_arguments=False):
    return _decorate(f, pass_arguments, _spoolforever)


# ---- mules (docs/mules.md) ----------------------------------------------------------------------------------
# @mulefunc: calling the function sends a pickled call to a mule, whose uwsgi.mule_msg_hook (the dispatcher
# below, set at import as uWSGI's module does) runs the function registered under that name: the mule imported
# the same app, so it has it. @mule(N), @muleloop(N), @mulemsg(N) and @farm(NAME) take over mule N (or the
# farm's mules) from the post-fork hooks, which mules run after loading the app.

mule_functions = {}


class mulefunc(object):
    """@mulefunc (any mule), @mulefunc(N) (mule N) or @mulefunc('farm') (one mule of that farm)."""

    def __init__(self, target):
        if callable(target):
            self.target = 0
            self.fname = target.__name__
            mule_functions[self.fname] = target
        else:
            self.target = target
            self.fname = None

    def send(self, *args, **kwargs):
        import pickle
        call = {'service': 'uwsgi_mulefunc', 'func': self.fname, 'args': args, 'kwargs': kwargs}
        return uwsgi.mule_msg(pickle.dumps(call), self.target)

    def __call__(self, *args, **kwargs):
        if self.fname is None:
            # The decoration step of @mulefunc(N): what the app gets is the sending function.
            f = args[0]
            self.fname = f.__name__
            mule_functions[self.fname] = f
            return self.send
        self.send(*args, **kwargs)


def mule_msg_dispatcher(message):
    import pickle
    call = pickle.loads(message)
    if call['service'] == 'uwsgi_mulefunc':
        return mule_functions[call['func']](*call['args'], **call['kwargs'])


uwsgi.mule_msg_hook = mule_msg_dispatcher


def _run_in_mule(f, loop):
    """The function takes over the mule: once, or again each time it returns. An exception ends the mule (the
    master starts it again), with its traceback in the log."""
    try:
        f()
        while loop:
            f()
    except Exception:
        sys.excepthook(*sys.exc_info())
        sys.exit(1)


class mule_brain(object):
    def __init__(self, f, num):
        self.f = f
        self.num = num

    def __call__(self):
        if uwsgi.mule_id() == self.num:
            _run_in_mule(self.f, False)


class mule_brainloop(mule_brain):
    def __call__(self):
        if uwsgi.mule_id() == self.num:
            _run_in_mule(self.f, True)


class mule(object):
    """@mule(N): the function runs in mule N once it has loaded the app (instead of its message loop)."""

    def __init__(self, num):
        self.num = num

    def __call__(self, f):
        postfork_chain.append(mule_brain(f, self.num))


class muleloop(mule):
    """@muleloop(N): as @mule(N), called again each time it returns."""

    def __call__(self, f):
        postfork_chain.append(mule_brainloop(f, self.num))


class _mulemsg_loop(object):
    def __init__(self, f, num):
        self.f = f
        self.num = num

    def __call__(self):
        if uwsgi.mule_id() == self.num:
            while True:
                message = uwsgi.mule_get_msg()
                if message:
                    self.f(message)


class mulemsg(object):
    """@mulemsg(N): mule N calls the function with each message it receives."""

    def __init__(self, num):
        self.num = num

    def __call__(self, f):
        postfork_chain.append(_mulemsg_loop(f, self.num))


class _farm_loop(object):
    def __init__(self, f, name):
        self.f = f
        self.name = name

    def __call__(self):
        if uwsgi.mule_id() == 0 or not uwsgi.in_farm(self.name):
            return
        while True:
            message = uwsgi.farm_get_msg()
            if message:
                self.f(message)


class farm(object):
    """@farm(NAME): each mule of the farm calls the function with each farm message (uwsgi.farm_msg) it gets."""

    def __init__(self, name=None, **kwargs):
        self.name = name

    def __call__(self, f):
        postfork_chain.append(_farm_loop(f, self.name))


# ---- signals (docs/signals.md) ------------------------------------------------------------------------------
# Each decorator registers the function as the handler of a signal (a free one unless signum= is given) for
# its target, then asks the master for the timer, cron entry or file monitor that raises it.

def get_free_signal():
    for num in range(256):
        if not uwsgi.signal_registered(num):
            return num
    raise Exception('No free uwsgi signal available')


class signal(object):
    def __init__(self, num, **kwargs):
        self.num = num
        self.target = kwargs.get('target', '')

    def __call__(self, f):
        uwsgi.register_signal(self.num, self.target, f)
        return f


class _raised_by(object):
    def __init__(self, **kwargs):
        self.num = kwargs.get('signum')
        if self.num is None:
            self.num = get_free_signal()
        self.target = kwargs.get('target', '')

    def __call__(self, f):
        uwsgi.register_signal(self.num, self.target, f)
        self.add()
        return f


class timer(_raised_by):
    def __init__(self, secs, **kwargs):
        _raised_by.__init__(self, **kwargs)
        self.secs = secs

    def add(self):
        uwsgi.add_timer(self.num, self.secs)


class rbtimer(timer):
    def add(self):
        uwsgi.add_rb_timer(self.num, self.secs)


class cron(_raised_by):
    def __init__(self, minute, hour, day, month, dayweek, **kwargs):
        _raised_by.__init__(self, **kwargs)
        self.when = (minute, hour, day, month, dayweek)

    def add(self):
        uwsgi.add_cron(self.num, *self.when)


class filemon(_raised_by):
    def __init__(self, fsobj, **kwargs):
        _raised_by.__init__(self, **kwargs)
        self.fsobj = fsobj

    def add(self):
        uwsgi.add_file_monitor(self.num, self.fsobj)
