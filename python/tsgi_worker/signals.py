"""uWSGI's signal framework (docs/signals.md), the process side. The master (src/master/signals.ts) owns the
registrations' targets, the timers, cron entries and file monitors, and routes each raised signal; a process
talks to it over one Unix stream connection, opened at the first signal call it makes (nothing for apps that
use no signal). The connection is also where the master sends `NUM\\n` for each signal this process must
handle: a worker reads it in its epoll loop, between requests; a mule in mule_get_msg().

A handler table is per process, filled by the app's import (each process runs it, or inherits it from the
loader that forked it); the master keeps the first target registered for a signal.
"""
import os
import re
import socket
import sys
import traceback

_TARGET = re.compile(r'^(|worker|workers|worker\d+|mule|mules|mule\d+)$')

handlers = {}
_path = None
_sock = None
_sock_pid = 0
_role = None      # ('worker', id) or ('mule', id) once the process knows what it is
_pending = b''


def configure(path):
    global _path
    _path = path


def _send(line):
    global _sock, _sock_pid
    if _sock is None or _sock_pid != os.getpid():
        if _path is None:
            raise ValueError('uWSGI signals are not available in this process')
        if _sock is not None:
            _sock.close()       # the loader's connection, inherited by a fork
        _sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _sock.connect(_path)
        _sock_pid = os.getpid()
        if _role is not None:
            _sock.sendall(b'hello %s %d %d\n' % (_role[0].encode(), _role[1], os.getpid()))
    _sock.sendall(line.encode('utf-8', 'surrogateescape') + b'\n')


def become(role, ident):
    """This process is a worker or a mule: it says so to the master when it has handlers to receive with."""
    global _role
    _role = (role, ident)
    if handlers:
        _send('hello %s %d %d' % (role, ident, os.getpid()))


def fileno():
    """The connection the master sends signals on, in this process; -1 when there is none."""
    if _sock is None or _sock_pid != os.getpid():
        return -1
    return _sock.fileno()


def _num(num):
    if not isinstance(num, int) or num < 0 or num > 255:
        raise ValueError('invalid signal number')
    return num


def register_signal(num, target, func):
    _num(num)
    if target.__class__ is bytes:
        target = target.decode('utf-8', 'replace')
    if not _TARGET.match(target):
        raise ValueError("uwsgi.register_signal: tsgi does not deliver signals to target '%s' (docs/signals.md)" % target)
    if not callable(func):
        raise TypeError('the signal handler must be callable')
    if num in handlers:
        # As uWSGI answers a second registration of a signal (made where the app is imported).
        raise ValueError('unable to register signal')
    handlers[num] = func
    _send('reg %d %s' % (num, target))


def signal_registered(num):
    return _num(num) in handlers


def raise_signal(num):
    _send('raise %d' % _num(num))


def add_timer(num, secs):
    _send('timer %d %d' % (_num(num), int(secs)))


def add_rb_timer(num, secs, iterations=0):
    _send('rbtimer %d %d' % (_num(num), int(secs)))


def add_cron(num, minute, hour, day, month, weekday):
    _send('cron %d %d %d %d %d %d' % (_num(num), int(minute), int(hour), int(day), int(month), int(weekday)))


def add_file_monitor(num, path):
    if path.__class__ is bytes:
        path = path.decode('utf-8', 'surrogateescape')
    _send('filemon %d %s' % (_num(num), os.path.abspath(path)))


def dispatch(log_error):
    """Reads the signals the master sent and runs their handlers. False when the master closed the connection."""
    global _pending
    try:
        data = _sock.recv(4096)
    except BlockingIOError:
        return True
    if not data:
        return False
    _pending += data
    while b'\n' in _pending:
        line, _pending = _pending.split(b'\n', 1)
        num = int(line)
        handler = handlers.get(num)
        if handler is None:
            continue
        try:
            handler(num)
        except Exception:
            log_error('exception in the handler of signal %d:\n%s' % (num, traceback.format_exc().rstrip('\n')))
    return True
