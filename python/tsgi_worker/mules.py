"""uWSGI's mules (docs/mules.md): the message transport and a mule process's life.

Each mule binds a Unix datagram socket at RUN_DIR/mule-N (RUN_DIR: the master's private directory); any tsgi
process of the instance sends it messages with sendto(). A datagram is one message; its first byte says which
queue it is for, as uWSGI keeps them apart: b'M' (the mule's own queue, or the instance's shared one) or b'F' (a
farm's). uWSGI's shared queue and farm queues are read by whichever mule is free first; here the sender picks
the mules in turn and the first that takes the datagram (its socket buffer is not full) gets the message.

Nothing here is imported by a worker unless the app calls uwsgi.mule_msg() or farm_msg().
"""
import collections
import os
import select
import signal
import socket
import sys
import threading
import traceback

MULE = b'M'
FARM = b'F'


def socket_path(run_dir, mule_id):
    return os.path.join(run_dir, 'mule-%d' % mule_id)


class Sender(object):
    """The sending side, one per process: an unbound datagram socket, never blocking a request."""

    def __init__(self, conf):
        self.run_dir = conf['runDir']
        self.count = conf['count']
        self.farms = dict((f['name'], f['mules']) for f in conf['farms'])
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.turn = 0
        self.lock = threading.Lock()

    def send_to(self, mule_id, data):
        try:
            self.sock.sendto(data, socket_path(self.run_dir, mule_id))
            return True
        except OSError:
            return False

    def send_any(self, ids, data):
        """To one of `ids`: the next in turn that takes it. False when none could (all gone or full)."""
        with self.lock:
            start = self.turn
            self.turn += 1
        n = len(ids)
        for i in range(n):
            if self.send_to(ids[(start + i) % n], data):
                return True
        return False


class Receiver(object):
    """A mule's own socket. Messages of the queue not asked for wait in `pending` for the next call that wants
    them (farm_get_msg() leaves mule messages to mule_get_msg(), and the reverse)."""

    def __init__(self, run_dir, mule_id, farms):
        path = socket_path(run_dir, mule_id)
        try:
            os.unlink(path)   # the socket of the mule this one replaces
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.farms = [f['name'] for f in farms if mule_id in f['mules']]
        self.pending = {MULE: collections.deque(), FARM: collections.deque()}

    def get(self, kinds, buffer_size, timeout, signals=None, log_error=None):
        """`signals`: the signals module, when this mule handles signals while it waits (docs/signals.md)."""
        for kind in kinds:
            if self.pending[kind]:
                return self.pending[kind].popleft()
        while True:
            sig_fd = signals.fileno() if signals is not None else -1
            if sig_fd >= 0 or (timeout is not None and timeout >= 0):
                fds = [self.sock, sig_fd] if sig_fd >= 0 else [self.sock]
                ready, _, _ = select.select(fds, [], [], timeout if timeout is not None and timeout >= 0 else None)
                if not ready:
                    return None
                if sig_fd in ready:
                    signals.dispatch(log_error or _stderr)
                    if self.sock not in ready:
                        continue
            data = self.sock.recv(max(buffer_size, 1) + 1)
            if not data:
                continue
            kind, body = data[:1], data[1:1 + buffer_size]
            if kind in kinds:
                return body
            if kind in self.pending:
                self.pending[kind].append(body)


def _stderr(line):
    os.write(2, (line + '\n').encode('utf-8', 'replace'))


def serve(conf, log, set_name, control_fd):
    """A mule process, once the app is loaded: post-fork hooks (@mule, @muleloop, @mulemsg take over here),
    then its script or function, or the generic loop. Never returns."""
    from . import uwsgi_api
    run = conf['muleRun']
    mule_id = run['id']
    set_name(conf.get('titles', {}).get('mule', 'tsgi mule {id}').replace('{id}', str(mule_id)))
    signal.signal(signal.SIGWINCH, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda s, f: os._exit(0))
    who = 'mule %d' % mule_id

    def log_error(message):
        log('[pid: %d|%s] %s' % (os.getpid(), who, message))

    uwsgi_api.post_fork(log_error)
    script = run.get('script')
    if script:
        try:
            if script.endswith('.py'):
                import runpy
                sys.argv = [script]
                runpy.run_path(script, run_name='__main__')
            else:
                import importlib
                module, func = script.split(':', 1)
                getattr(importlib.import_module(module), func)()
        except SystemExit as e:
            os._exit(e.code if isinstance(e.code, int) else 1)
        except BaseException:
            log_error('%s failed:\n%s' % (script, traceback.format_exc().rstrip('\n')))
            os._exit(1)
        # A script that returns ends its mule; the master starts it again.
        os._exit(0)
    harakiri = run.get('harakiri', 0)
    uwsgi = sys.modules['uwsgi']
    while True:
        message = uwsgi_api.mule_get_msg()
        hook = uwsgi.__dict__.get('mule_msg_hook')
        if hook is None:
            continue
        if harakiri:
            # Default SIGALRM disposition: the mule dies, and the master logs it as mule-harakiri.
            signal.alarm(harakiri)
        try:
            hook(message)
        except Exception:
            log_error('exception in uwsgi.mule_msg_hook:\n' + traceback.format_exc().rstrip('\n'))
        if harakiri:
            signal.alarm(0)
        try:
            os.write(control_fd, b'M')
        except OSError:
            pass
