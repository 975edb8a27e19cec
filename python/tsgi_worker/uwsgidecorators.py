"""tsgi's `uwsgidecorators` (docs/python-uwsgi-module.md), put in sys.modules of tsgi's Python processes as
`uwsgidecorators`, so `from uwsgidecorators import postfork` works whether or not uWSGI's own file is
installed. It keeps uWSGI 2.0's semantics for what tsgi can do: @postfork, @thread, @lock. The decorators that
need a part of uWSGI tsgi does not have (spooler, mules, signals, timers, cron, RPC...) stop the app's import
with a message naming them, rather than decorating functions that would never run.
"""
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


for _name, _what in (('spool', "uWSGI's spooler"), ('spoolforever', "uWSGI's spooler"), ('spoolraw', "uWSGI's spooler"),
                     ('mulefunc', "uWSGI's mules"), ('mule_brain', "uWSGI's mules"), ('mule_brainloop', "uWSGI's mules"),
                     ('mule', "uWSGI's mules"), ('muleloop', "uWSGI's mules"),
                     ('mulemsg', "uWSGI's mules"), ('farm', "uWSGI's mule farms"),
                     ('rpc', "uWSGI's RPC"), ('signal', "uWSGI's signal framework"),
                     ('timer', "uWSGI's signal framework (timers)"), ('rbtimer', "uWSGI's signal framework (timers)"),
                     ('cron', "uWSGI's signal framework (cron; tsgi's cron option runs commands)"),
                     ('filemon', "uWSGI's signal framework (file monitors)"), ('erlang', "uWSGI's Erlang plugin"),
                     ('harakiri', 'uwsgi.set_user_harakiri()')):
    globals()[_name] = _unsupported(_name, _what)
del _name, _what
