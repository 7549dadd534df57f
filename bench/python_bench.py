#!/usr/bin/env python3
"""Python lock cycles side by side: locks.Mutex on a name and on a path
(through a private locksd), redis-py's Lock on a private redis-server,
and filelock (a plain flock, no broker).

Each system runs an acquire+release loop for --secs seconds, in turns,
--runs times (each run starts from another system); the figure is the
median of the runs, and each ratio is taken within a run, then the
median of those.  Run it with an interpreter that has Debian's
python3-redis and python3-filelock, after building the tree:

    /usr/bin/python3 bench/python_bench.py [--runs 5] [--secs 2]

It is a benchmark only, never part of ctest.  Missing pieces (no
redis-server, no redis-py, no filelock) read n/a.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TREE, 'client', 'python'))
import locks  # noqa: E402


def wait_socket(path, secs=10):
    """Wait until a server accepts on the Unix socket path."""
    deadline = time.monotonic() + secs
    while True:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError('nothing listens on ' + path)
            time.sleep(0.02)
        finally:
            s.close()


def cycles(fn, secs):
    """Run fn() for secs seconds; returns cycles per second."""
    n, start = 0, time.perf_counter()
    end = start + secs
    while True:
        for _ in range(200):
            fn()
        n += 200
        now = time.perf_counter()
        if now >= end:
            return n / (now - start)


def main():
    """Start the servers, measure, print Markdown."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--secs', type=float, default=2.0)
    ap.add_argument('--locksd', default=os.path.join(TREE, 'build-bench',
                                                     'locksd'))
    args = ap.parse_args()
    if not os.path.exists(args.locksd):
        args.locksd = os.path.join(TREE, 'build', 'locksd')
    tmp = tempfile.mkdtemp(prefix='locks-pybench.')
    procs = []
    try:
        sock = os.path.join(tmp, 'locksd.sock')
        procs.append(subprocess.Popen(
            [args.locksd, '--socket', sock, '--lock-dir',
             os.path.join(tmp, 'locks')], stderr=subprocess.DEVNULL))
        wait_socket(sock)
        systems = {}
        name_m = locks.Mutex('bench', socket=sock)
        systems['locks.Mutex (name)'] = lambda: (name_m.lock(),
                                                 name_m.release())
        path_m = locks.Mutex(os.path.join(tmp, 'bench.lock'), socket=sock)
        systems['locks.Mutex (path)'] = lambda: (path_m.lock(),
                                                 path_m.release())
        try:
            import redis
            rsock = os.path.join(tmp, 'redis.sock')
            server = shutil.which('redis-server')
            if server is None:
                raise ImportError('no redis-server')
            procs.append(subprocess.Popen(
                [server, '--port', '0', '--unixsocket', rsock, '--save', '',
                 '--appendonly', 'no', '--dir', tmp],
                stdout=subprocess.DEVNULL))
            wait_socket(rsock)
            rlock = redis.Redis(unix_socket_path=rsock).lock(
                'bench', timeout=30)
            systems['redis-py Lock'] = lambda: (rlock.acquire(),
                                                rlock.release())
        except ImportError as e:
            print('redis: n/a (%s)' % e, file=sys.stderr)
        try:
            import filelock
            flk = filelock.FileLock(os.path.join(tmp, 'filelock.lock'))
            systems['filelock'] = lambda: (flk.acquire(), flk.release())
        except ImportError as e:
            print('filelock: n/a (%s)' % e, file=sys.stderr)

        names = list(systems)
        rates = {k: [] for k in names}
        ratios = {k: [] for k in names}
        for run in range(args.runs):
            order = names[run % len(names):] + names[:run % len(names)]
            got = {}
            for k in order:
                systems[k]()                    # warm: connect
                got[k] = cycles(systems[k], args.secs)
                rates[k].append(got[k])
            base = got.get('redis-py Lock')
            for k in names:
                if base:
                    ratios[k].append(got[k] / base)
            print('run %d: %s' % (run + 1, ', '.join(
                '%s %.0f/s' % (k, got[k]) for k in names)), file=sys.stderr)

        print('Python %s, %d runs of %g s each; cycles = acquire + release, '
              'one process, one thread.\n' %
              (sys.version.split()[0], args.runs, args.secs))
        print('| system | cycles/s (min-max) | us/cycle | vs redis-py Lock |')
        print('|---|---|---|---|')
        for k in names:
            med = statistics.median(rates[k])
            ratio = ('%.2fx' % statistics.median(ratios[k])
                     if ratios[k] else 'n/a')
            print('| %s | %.0f (%.0f-%.0f) | %.1f | %s |' %
                  (k, med, min(rates[k]), max(rates[k]), 1e6 / med, ratio))
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
