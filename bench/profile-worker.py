#!/usr/bin/python3
"""Where a tsgi Python worker spends its time per request, without nginx, wrk or a second core in the way.

Drives the real worker code (python/tsgi_worker, Worker.handle) in one process: a client connects to a Unix
listening socket and sends the uwsgi packet nginx sends for `wrk http://127.0.0.1:PORT/` (captured from
nginx 1.22 with Debian's uwsgi_params), the worker accepts and handles it, the client reads the response.
Only the worker's side (epoll wait, accept, handle, as in Worker.serve) is timed, and, with --cprofile, profiled.

It also times a floor: the four syscalls any uwsgi worker needs (accept4, read, write, close) with no other
work, in blocks interleaved with the worker's, so that the worker's own cost per request (its time minus
the floor: Python work and extra syscalls) can be read off directly.

    /usr/bin/python3 bench/profile-worker.py [--app hello|flask|FILE] [--requests N] [--cprofile] [--logging]

Run it under `strace -c -f` to count the worker's syscalls per request (the client's are counted too:
connect, sendto, recvfrom, close per request).
"""
import argparse
import cProfile
import gc
import importlib.util
import os
import pstats
import select
import socket
import struct
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'python'))

from tsgi_worker.scoreboard import Scoreboard  # noqa: E402
from tsgi_worker.server import UWSGI_UNIX, Worker  # noqa: E402

NGINX_VARS = [
    ('QUERY_STRING', ''), ('REQUEST_METHOD', 'GET'), ('CONTENT_TYPE', ''), ('CONTENT_LENGTH', ''),
    ('REQUEST_URI', '/'), ('PATH_INFO', '/'), ('DOCUMENT_ROOT', '/etc/nginx/html'), ('SERVER_PROTOCOL', 'HTTP/1.1'),
    ('REQUEST_SCHEME', 'http'), ('REMOTE_ADDR', '127.0.0.1'), ('REMOTE_PORT', '51598'), ('SERVER_PORT', '8080'),
    ('SERVER_NAME', ''), ('HTTP_HOST', '127.0.0.1'),
]


def uwsgi_packet(pairs):
    body = b''.join(len(k).to_bytes(2, 'little') + k.encode('latin-1') + len(v).to_bytes(2, 'little') + v.encode('latin-1')
                    for k, v in pairs)
    return bytes([0]) + len(body).to_bytes(2, 'little') + bytes([0]) + body


def load_app(path):
    spec = importlib.util.spec_from_file_location('bench_app', path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(path))
    spec.loader.exec_module(module)
    return module.application


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--app', default='hello', help='hello, flask or a WSGI file (default hello)')
    ap.add_argument('--requests', type=int, default=20000)
    ap.add_argument('--cprofile', action='store_true', help='print the functions that take the time (cProfile)')
    ap.add_argument('--logging', action='store_true', help='log every request (to /dev/null), as without --disable-logging')
    ap.add_argument('--top', type=int, default=25)
    args = ap.parse_args()
    path = {'hello': os.path.join(HERE, 'apps/hello.py'), 'flask': os.path.join(HERE, 'apps/flask_hello.py')}.get(args.app, args.app)
    app = load_app(os.path.abspath(path))
    # As the loader does before forking workers (main.py): what the import made is never scanned again.
    gc.freeze()

    tmp = tempfile.mkdtemp(prefix='tsgi-profile-')
    sock_path = os.path.join(tmp, 'w.sock')
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(sock_path)
    listener.listen(100)
    # A scoreboard as the master lays it out (docs/scoreboard.md): header, then slot 1 for this worker.
    stride = 64 + 128
    sb_file = open(os.path.join(tmp, 'scoreboard'), 'w+b')
    sb_file.write(struct.pack('<IIIIQII', 0x49475354, 2, 2, 0, 0, stride, 1).ljust(stride * 2, b'\0'))
    sb_file.flush()
    scoreboard = Scoreboard(sb_file.fileno(), stride * 2, 1, os.getpid())
    conf = {'id': 1, 'bufferSize': 4096, 'socketTimeout': 4, 'disableLogging': not args.logging, 'strict': False,
            'catchExceptions': False, 'processes': 2, 'fileWrapper': True}
    if args.logging:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    worker = Worker(conf, app, [(listener, UWSGI_UNIX)], scoreboard)
    core = worker.cores[0]
    packet = uwsgi_packet(NGINX_VARS)

    def client_request():
        c = socket.socket(socket.AF_UNIX)
        c.connect(sock_path)
        c.sendall(packet)
        return c

    def client_finish(c):
        data = c.recv(65536)
        c.close()
        return data

    # Check the answer once, then warm up (blocking accept here; the timed loop below waits as the worker does).
    c = client_request()
    conn, _ = listener.accept()
    worker.handle(conn, True, core)
    answer = client_finish(c)
    if not answer.startswith(b'HTTP/1.1 200'):
        sys.exit('unexpected answer: %r' % answer[:200])
    for _ in range(2000):
        c = client_request()
        conn, _ = listener.accept()
        worker.handle(conn, True, core)
        client_finish(c)

    # The worker's wait, as in Worker.serve(): a non-blocking listener registered with epoll (EPOLLEXCLUSIVE).
    listener.setblocking(False)
    ep = select.epoll()
    ep.register(listener.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)

    def timed_worker(n, profile=None):
        """What the worker's loop does per request (server.py, Worker.serve): epoll wait, accept(), handle()."""
        accept = listener.accept
        handle = worker.handle
        poll = ep.poll
        clock = time.perf_counter
        total = 0.0
        for _ in range(n):
            c = client_request()
            t0 = clock()
            if profile:
                profile.enable()
            poll()
            conn, _ = accept()
            handle(conn, True, core)
            if profile:
                profile.disable()
            total += clock() - t0
            client_finish(c)
        return total / n

    response = (b'HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s'
                % (len(answer.split(b'\r\n\r\n', 1)[1]), answer.split(b'\r\n\r\n', 1)[1]))

    def timed_floor(n):
        """The syscalls any uwsgi worker must make (accept4, read, write, close) and no other work."""
        accept = listener._accept
        listener.setblocking(True)
        read, write, close = os.read, os.write, os.close
        clock = time.perf_counter
        total = 0.0
        for _ in range(n):
            c = client_request()
            t0 = clock()
            fd, _ = accept()
            read(fd, 65536)
            write(fd, response)
            close(fd)
            total += clock() - t0
            client_finish(c)
        return total / n

    # The app alone, called with the environ the worker built for the same packet: what any server pays.
    captured = {}

    def capture_app(environ, start_response):
        captured.update(environ)
        return app(environ, start_response)

    worker.app = capture_app
    c = client_request()
    conn, _ = listener.accept()
    worker.handle(conn, True, core)
    client_finish(c)
    worker.app = app
    environ0 = dict(captured)

    def timed_app(n):
        clock = time.perf_counter
        total = 0.0

        def start_response(status, headers, exc_info=None):
            return None
        for _ in range(n):
            environ = environ0.copy()
            t0 = clock()
            result = app(environ, start_response)
            for _chunk in result:
                pass
            close = getattr(result, 'close', None)
            if close is not None:
                close()
            total += clock() - t0
        return total / n

    # Interleaved blocks, so that a burst of load from elsewhere hits both; the minimum over blocks is the
    # cost without interference (noise only ever adds time), the median shows how noisy the machine was.
    block = max(200, args.requests // 40)
    floors, workers, apps = [], [], []
    for _ in range(max(1, args.requests // block)):
        floors.append(timed_floor(block))
        workers.append(timed_worker(block))
        apps.append(timed_app(block))
    floors.sort()
    workers.sort()
    apps.sort()
    mid = len(floors) // 2
    print('app %s, %d requests in blocks of %d, Python %s' % (path, len(floors) * block, block, sys.version.split()[0]))
    print('                                            min      median  (us/request)')
    print('worker (epoll, accept(), handle())       %6.1f      %6.1f' % (workers[0] * 1e6, workers[mid] * 1e6))
    print('floor  (accept4, read, write, close)     %6.1f      %6.1f' % (floors[0] * 1e6, floors[mid] * 1e6))
    print('app alone (call, iterate, close)       %6.1f      %6.1f' % (apps[0] * 1e6, apps[mid] * 1e6))
    print('worker cost over floor + app             %6.1f      %6.1f' % ((workers[0] - floors[0] - apps[0]) * 1e6,
                                                                       (workers[mid] - floors[mid] - apps[mid]) * 1e6))
    if args.cprofile:
        prof = cProfile.Profile()
        timed_worker(args.requests, prof)
        print('\ncProfile of the worker side (cProfile inflates Python calls; read it for proportions):')
        pstats.Stats(prof, stream=sys.stdout).sort_stats('tottime').print_stats(args.top)
    listener.close()
    sb_file.close()
    for name in os.listdir(tmp):
        os.unlink(os.path.join(tmp, name))
    os.rmdir(tmp)


if __name__ == '__main__':
    main()
