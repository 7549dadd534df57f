"""What the seed lacks: names, paths beside names and the CLI, shared
mode, tokens, FIFO across processes, threads, fork safety, Lost, and the
errors."""

import errno
import fcntl
import multiprocessing
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

import locks
from locks import Mutex, _conn
from support import LOCKS_CLI, Broker, BrokerCase, FakeBroker


def queue_and_record(target, index, out):
    """Wait for target, then write index to out (one line, appended)."""
    with Mutex(target):
        with open(out, 'a') as f:
            f.write('%d\n' % index)


def hold_and_fork(target, ready, child_pid):
    """Take target, fork a child that sleeps on, then die unreleased."""
    m = Mutex(target)
    m.lock()
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    child_pid.value = pid
    ready.set()
    os._exit(0)


class TestNames(BrokerCase):
    """Broker names, and paths that are the same file."""

    def test_a_name_is_the_lock_dir_file(self):
        m = Mutex('py-name', owner='the test')
        token = m.lock()
        self.assertTrue(os.path.isfile(os.path.join(self.broker.lock_dir,
                                                    'py-name')))
        [lk] = locks.list('py-name')
        self.assertEqual(lk.name, 'py-name')
        [h] = lk.holders
        self.assertEqual((h.pid, h.uid, h.token, h.owner, h.mode),
                         (os.getpid(), os.geteuid(), token, 'the test',
                          'exclusive'))
        m.release()
        self.assertEqual(locks.list('py-name'), [])

    def test_path_and_name_and_cli_share_one_queue(self):
        path = os.path.join(self.broker.lock_dir, 'py-shared-q')
        m = Mutex(path)
        m.lock()
        with self.assertRaises(BlockingIOError):
            Mutex('py-shared-q', timeout=0.2).lock()
        rc = subprocess.call([LOCKS_CLI, 'check', '-q', 'py-shared-q'])
        self.assertEqual(rc, 1)
        rc = subprocess.call([LOCKS_CLI, 'run', '-n', 'py-shared-q', '--',
                              'true'])
        self.assertEqual(rc, 1)
        # A CLI waiter queues behind us, and gets it once we let go.
        cli = subprocess.Popen([LOCKS_CLI, 'run', 'py-shared-q', '--',
                                'true'])
        self.wait_until(lambda: self.waiters('py-shared-q') == 1,
                        'the CLI waits')
        m.release()
        self.assertEqual(cli.wait(10), 0)
        self.assertEqual(subprocess.call([LOCKS_CLI, 'check', '-q', path]),
                         0)

    def test_flock_is_excluded_while_held(self):
        path = self.tmpfile()
        with Mutex(path):
            rc = subprocess.call(['flock', '-n', path, 'true'])
            self.assertEqual(rc, 1)
        self.assertEqual(subprocess.call(['flock', '-n', path, 'true']), 0)

    def test_a_directory_and_a_missing_file(self):
        d = os.path.dirname(self.tmpfile())
        path = os.path.join(d, 'locks-py-new.%d' % os.getpid())
        self.addCleanup(os.unlink, path)
        with Mutex(path):
            self.assertTrue(os.path.isfile(path))
        with Mutex(d + '/'):
            self.assertEqual(len(locks.list(d + '/')), 1)

    def test_non_utf8_path_spelled_with_question_marks(self):
        d = os.path.dirname(self.tmpfile()).encode()
        raw = d + b'/locks-py-\xff.%d' % os.getpid()
        self.addCleanup(os.unlink, raw)
        m = Mutex(raw)
        m.lock()
        with self.assertRaises(BlockingIOError):
            Mutex(raw, timeout=0).lock()
        [lk] = locks.list(raw)
        self.assertTrue(lk.name.endswith('/locks-py-?.%d' % os.getpid()),
                        lk.name)
        m.release()     # by the same spelling, or this would be not_held
        Mutex(raw, timeout=0).lock()

    def test_shared_mode(self):
        a, b = Mutex('py-shared', shared=True), Mutex('py-shared',
                                                     shared=True)
        a.lock()
        b.lock()
        [lk] = locks.list('py-shared')
        self.assertEqual([h.mode for h in lk.holders], ['shared'] * 2)
        with self.assertRaises(BlockingIOError):
            Mutex('py-shared', timeout=0.2).lock()
        a.release()
        b.release()
        Mutex('py-shared', timeout=0).lock()

    def test_tokens_increase(self):
        m = Mutex('py-tokens')
        seen = []
        for _ in range(5):
            with m:
                seen.append(m.token)
            self.assertIsNone(m.token)
        self.assertEqual(seen, sorted(set(seen)))

    def test_invalid_name_is_a_value_error(self):
        for bad in ('two words', '.hidden', '', 'x' * 201, 'caf\u00e9'):
            with self.assertRaises(locks.InvalidName) as e:
                Mutex(bad)
            self.assertIsInstance(e.exception, ValueError)
            self.assertEqual(e.exception.code, 'invalid_name')

    def test_timeout_and_callback_waits_then_calls_once(self):
        holder = Mutex('py-cb')
        holder.lock()
        called = threading.Event()
        start = time.monotonic()
        m = Mutex('py-cb', timeout=1, callback=called.set)
        t = threading.Thread(target=m.lock)
        t.start()
        self.assertFalse(called.wait(0.5))     # not before the timeout
        self.assertTrue(called.wait(5))
        self.assertGreaterEqual(time.monotonic() - start, 0.9)
        self.assertTrue(t.is_alive())          # then it waits on
        holder.release()
        t.join(10)
        self.assertTrue(m.locked)
        m.release()

    def test_pickled_copy_holds_nothing(self):
        m = Mutex('py-pickle', timeout=2, owner='o', shared=True)
        m.lock()
        c = pickle.loads(pickle.dumps(m))
        self.assertFalse(c.locked)
        self.assertEqual((c.path, c.timeout, c.owner, c.shared),
                         ('py-pickle', 2, 'o', True))
        c.release()
        self.assertTrue(m.check())
        m.release()

    def test_status_and_list_are_dataclasses(self):
        st = locks.status()
        self.assertEqual(st.pid, self.broker.proc.pid)
        self.assertGreaterEqual(st.connections, 1)
        with Mutex('py-status'):
            self.assertEqual(locks.status().locks_held, st.locks_held + 1)
            self.assertIn('py-status', [lk.name for lk in locks.list()])

    def test_status_metrics_only_when_asked(self):
        self.assertIsNone(locks.status().metrics)
        before = locks.status(metrics=True).metrics
        with Mutex('py-metrics'):
            pass
        after = locks.status(metrics=True).metrics
        grants = (after['grants_total']['local']['exclusive'] -
                  before['grants_total']['local']['exclusive'])
        self.assertGreaterEqual(grants, 1)
        self.assertEqual(after['hold_seconds']['local']['count'] -
                         before['hold_seconds']['local']['count'], grants)

    def test_status_metrics_from_an_old_daemon_is_unsupported(self):
        def old_status(n, req):
            return [{'id': req['id'], 'ok': True, 'version': '0.0',
                     'pid': 1, 'uptime': 1.0, 'connections': 1,
                     'locks_held': 0, 'waiters': 0, 'acquired_total': 0}]
        fake = FakeBroker(old_status)
        self.addCleanup(fake.stop)
        with self.assertRaises(locks.Unsupported):
            locks.status(socket=fake.socket, metrics=True)
        self.assertEqual(fake.requests[-1][1].get('metrics'), True)


class TestFifoAndThreads(BrokerCase):
    """Order across processes, and threads."""

    def test_fifo_across_processes(self):
        out = self.tmpfile()
        holder = Mutex('py-fifo')
        holder.lock()
        ctx = multiprocessing.get_context('fork')
        procs = []
        for i in range(4):
            p = ctx.Process(target=queue_and_record, args=('py-fifo', i,
                                                           out))
            p.start()
            procs.append(p)
            self.wait_until(lambda: self.waiters('py-fifo') == i + 1,
                            'waiter %d queues' % i)
        holder.release()
        for p in procs:
            p.join(10)
            self.assertEqual(p.exitcode, 0)
        with open(out) as f:
            self.assertEqual(f.read().split(), ['0', '1', '2', '3'])

    def test_threads_exclude_each_other(self):
        state = {'inside': 0, 'most': 0, 'count': 0}

        def work():
            for _ in range(20):
                with Mutex('py-threads'):
                    state['inside'] += 1
                    state['most'] = max(state['most'], state['inside'])
                    n = state['count']
                    time.sleep(0.001)
                    state['count'] = n + 1
                    state['inside'] -= 1

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual((state['count'], state['most']), (80, 1))

    def test_one_mutex_serialises_its_calls(self):
        holder = Mutex('py-serial')
        holder.lock()
        m = Mutex('py-serial')
        tokens = []
        threads = [threading.Thread(target=lambda: tokens.append(m.lock()))
                   for _ in range(2)]
        for t in threads:
            t.start()
        self.wait_until(lambda: self.waiters('py-serial') == 1,
                        'the first lock() waits')
        time.sleep(0.2)
        self.assertEqual(self.waiters('py-serial'), 1)   # not two acquires
        holder.release()
        for t in threads:
            t.join(10)
        self.assertEqual(len(tokens), 2)
        self.assertEqual(tokens[0], tokens[1])
        [lk] = locks.list('py-serial')
        self.assertEqual(len(lk.holders), 1)
        m.release()


class TestFork(BrokerCase):
    """A forked child holds nothing of its parent's."""

    def test_forked_copy_holds_nothing(self):
        path = self.tmpfile()
        m = Mutex(path, timeout=0.2)
        m.lock()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                if m.locked or m.token is not None:
                    code = 2
                m.release()                  # must not release the parent's
                try:
                    m.lock()                 # its own: the parent holds it
                    code = 3
                except BlockingIOError:
                    pass
            except BaseException:
                code = 4
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertTrue(m.check())
        with self.assertRaises(BlockingIOError):
            Mutex(path, timeout=0).lock()
        m.release()

    def test_fork_while_another_thread_waits_in_lock(self):
        holder, waiter = Mutex(self.name()), None
        holder.lock()
        waiter = Mutex(holder.path)
        t = threading.Thread(target=waiter.lock, daemon=True)
        t.start()
        self.wait_until(lambda: self.waiters(holder.path) == 1,
                        'the thread waits')
        pid = os.fork()
        if pid == 0:
            # The thread inside waiter.lock() is not in the child: its
            # hold on the Mutex must not hang the child's calls.
            signal.alarm(10)
            waiter.release()
            os._exit(0 if not waiter.locked else 2)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        holder.release()
        t.join(10)
        self.assertTrue(waiter.locked)
        waiter.release()

    def test_a_forked_child_does_not_keep_the_lock_alive(self):
        ctx = multiprocessing.get_context('fork')
        ready, child = ctx.Event(), ctx.Value('i', 0)
        p = ctx.Process(target=hold_and_fork, args=('py-fork-keep', ready,
                                                     child))
        p.start()
        self.assertTrue(ready.wait(10))
        p.join(10)
        self.addCleanup(os.kill, child.value, signal.SIGKILL)
        os.kill(child.value, 0)     # the grandchild lives on
        # Its holder died; the lock must be free though the child lives.
        Mutex('py-fork-keep', timeout=2).lock()


class TestLostAndErrors(unittest.TestCase):
    """A broker that dies under held locks, and no broker at all."""

    def test_lost(self):
        broker = Broker()
        self.addCleanup(broker.stop)
        lost = threading.Event()
        a = Mutex('py-lost', socket=broker.socket, on_lost=lost.set)
        b = Mutex('py-lost-2', socket=broker.socket)
        a.lock()
        b.lock()
        d = Mutex('py-lost-4', socket=broker.socket)
        d.lock()
        self.assertTrue(a.check())
        broker.kill()
        time.sleep(0.2)
        with self.assertRaises(locks.Lost):
            d.lock()                         # lock() on a held one: Lost
        self.assertFalse(d.locked)
        self.assertTrue(lost.wait(5))
        self.assertFalse(a.locked)
        with self.assertRaises(locks.Lost) as e:
            a.check()
        self.assertIn(broker.socket, str(e.exception))
        self.assertFalse(a.check())         # once
        with self.assertRaises(locks.Lost):
            b.release()
        b.release()                          # holds nothing now
        with self.assertRaises(locks.Unavailable):
            b.lock()

    def test_a_dead_broker_is_lost_not_sigpipe(self):
        # With SIGPIPE at its default, a send to a dead broker must raise,
        # not kill the process: run it in a child to see how it ends.
        broker = Broker()
        self.addCleanup(broker.stop)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            m = Mutex('py-pipe', socket=broker.socket)
            m.lock()
            os.kill(broker.proc.pid, signal.SIGKILL)
            time.sleep(0.3)
            code = 3
            try:
                for _ in range(3):
                    m.release()
                    m.lock()
            except (locks.Lost, locks.Unavailable):
                code = 0
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)

    def test_an_interrupted_release_holds_nothing(self):
        broker = Broker()
        self.addCleanup(broker.stop)
        m = Mutex('py-intr', socket=broker.socket)
        m.lock()

        def interrupt(signum, frame):
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGALRM, interrupt)
        self.addCleanup(signal.signal, signal.SIGALRM, old)
        broker.proc.send_signal(signal.SIGSTOP)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with self.assertRaises(KeyboardInterrupt):
                m.release()
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        self.assertFalse(m.locked)
        # The next lock() is a new one, not a Lost for the old.
        m.lock()
        self.assertTrue(m.locked)
        m.release()

    def test_no_broker_names_the_socket(self):
        path = '/nonexistent-locks-dir/locksd.sock'
        with self.assertRaises(locks.Unavailable) as e:
            Mutex('x', socket=path).lock()
        self.assertIsInstance(e.exception, ConnectionError)
        self.assertIn(path, str(e.exception))
        saved = os.environ.get('LOCKS_SOCKET')
        os.environ['LOCKS_SOCKET'] = path
        try:
            with self.assertRaises(locks.Unavailable) as e:
                locks.status()
            self.assertIn(path, str(e.exception))
        finally:
            if saved is None:
                os.environ.pop('LOCKS_SOCKET')
            else:
                os.environ['LOCKS_SOCKET'] = saved

    def test_a_path_that_cannot_be_opened_names_the_file(self):
        path = '/nonexistent-locks-dir/file.lock'
        with self.assertRaises(FileNotFoundError) as e:
            Mutex(path, socket='/nonexistent/s').lock()
        self.assertEqual(e.exception.filename, path.encode())
        self.assertEqual(e.exception.errno, errno.ENOENT)


class TestAudit(BrokerCase):
    """Connection reuse, the callback-only case, broker errors, FIFO on a
    path with the CLI in the queue, and outside holders in list."""

    def test_one_mutex_reuses_its_connection(self):
        before = locks.status().connections
        m = Mutex('py-reuse')
        conns = set()
        for _ in range(20):
            m.lock()
            conns.add(id(m._conn))
            self.assertLessEqual(locks.status().connections, before + 1)
            m.release()
        self.assertEqual(len(conns), 1)
        self.assertLessEqual(locks.status().connections, before)

    def test_callback_only_calls_promptly_while_taken(self):
        holder = Mutex('py-cb-only')
        holder.lock()
        called = threading.Event()
        m = Mutex('py-cb-only', callback=called.set)
        start = time.monotonic()
        t = threading.Thread(target=m.lock)
        t.start()
        self.assertTrue(called.wait(5))
        self.assertLess(time.monotonic() - start, 1)
        self.assertTrue(t.is_alive())
        holder.release()
        t.join(10)
        self.assertTrue(m.locked)
        m.release()

    def test_callback_only_not_called_when_free(self):
        calls = []
        m = Mutex('py-cb-free', callback=lambda: calls.append(1))
        with m:
            self.assertTrue(m.locked)
        time.sleep(0.1)
        self.assertEqual(calls, [])

    def test_a_broker_error_has_its_code_and_base(self):
        with self.assertRaises(locks.Unsupported) as e:
            Mutex('/dev/null').lock()
        self.assertEqual(e.exception.code, 'unsupported')
        self.assertIsInstance(e.exception, locks.Error)
        self.assertIsInstance(e.exception, OSError)
        self.assertIn('/dev/null', str(e.exception))

    def test_fifo_on_a_path_with_a_cli_waiter_in_the_middle(self):
        path = self.tmpfile()
        out = self.tmpfile()
        holder = Mutex(path)
        holder.lock()
        ctx = multiprocessing.get_context('fork')
        procs = []
        for i in range(5):
            if i == 2:
                p = subprocess.Popen([LOCKS_CLI, 'run', path, '--', 'sh',
                                      '-c', 'echo 2 >> "$1"', 'sh', out])
            else:
                p = ctx.Process(target=queue_and_record, args=(path, i, out))
                p.start()
            procs.append(p)
            self.wait_until(lambda: self.waiters(path) == i + 1,
                            'waiter %d queues' % i)
        holder.release()
        for p in procs:
            if isinstance(p, subprocess.Popen):
                self.assertEqual(p.wait(10), 0)
            else:
                p.join(10)
                self.assertEqual(p.exitcode, 0)
        with open(out) as f:
            self.assertEqual(f.read().split(), ['0', '1', '2', '3', '4'])

    def test_list_all_shows_an_outside_flock_as_external(self):
        name = 'py-outside'
        lock_file = os.path.join(self.broker.lock_dir, name)
        path = self.tmpfile()
        procs = [subprocess.Popen(['flock', f, 'sleep', '30'])
                 for f in (lock_file, path)]
        for p in procs:
            self.addCleanup(p.wait)
            self.addCleanup(p.kill)
        for target in (name, path):
            self.wait_until(
                lambda: subprocess.call(['flock', '-n', lock_file if target
                                         == name else path, 'true']) == 1,
                'flock holds ' + target)
            self.assertEqual(locks.list(target), [])
            [lk] = locks.list(target, all=True)
            [h] = lk.holders
            self.assertTrue(h.external)
            self.assertEqual(h.mode, 'exclusive')
            self.assertIn(h.pid, [p.pid for p in procs])
        self.assertIn(name, [lk.name for lk in locks.list(all=True)
                             if any(h.external for h in lk.holders)])


ATEXIT_CHECK = r"""
import atexit, os
kept = []
def check():
    left = [c for cs in pool.idle.values() for c in cs]
    os._exit(3 if left or not kept or any(c.sock is not None
                                           for c in kept) else 0)
atexit.register(check)      # before locks: so it runs after locks' own
import locks
from locks._conn import pool
locks.status()
with locks.Mutex('py-atexit'):
    pass
kept.extend(c for cs in pool.idle.values() for c in cs)
"""


class TestHygiene(BrokerCase):
    """A timeout reads back as given, idle connections close at exit, and
    a star-import does not shadow the builtin list."""

    def test_an_infinite_timeout_reads_back_as_given(self):
        m = Mutex('py-inf', timeout=float('inf'))
        self.assertEqual(m.timeout, float('inf'))
        with m:
            self.assertTrue(m.locked)
        holder = Mutex('py-inf')
        holder.lock()
        t = threading.Thread(target=m.lock)
        t.start()
        self.wait_until(lambda: self.waiters('py-inf') == 1, 'it waits')
        holder.release()
        t.join(10)
        self.assertTrue(m.locked)
        m.release()
        self.assertEqual(pickle.loads(pickle.dumps(m)).timeout,
                         float('inf'))

    def test_idle_connections_are_closed_at_exit(self):
        proc = subprocess.run([sys.executable, '-c', ATEXIT_CHECK],
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(proc.returncode, 0, proc.stdout)

    def test_star_import_leaves_the_builtin_list(self):
        ns = {}
        exec('from locks import *', ns)
        self.assertNotIn('list', ns)
        self.assertIn('Mutex', ns)
        self.assertTrue(callable(locks.list))


class TestStuckBroker(unittest.TestCase):
    """A broker that is stopped (SIGSTOP) does not hang a lock() with a
    timeout: past the timeout plus the grace it is Unavailable."""

    def setUp(self):
        self.broker = Broker()
        self.addCleanup(self.broker.stop)

    def stop_broker(self):
        """SIGSTOP the broker until the test ends."""
        self.broker.proc.send_signal(signal.SIGSTOP)
        self.addCleanup(self.broker.proc.send_signal, signal.SIGCONT)

    def assert_unavailable_soon(self, m, bound):
        start = time.monotonic()
        with self.assertRaises(locks.Unavailable) as e:
            m.lock()
        took = time.monotonic() - start
        self.assertLess(took, bound)
        self.assertIn(self.broker.socket, str(e.exception))
        self.assertIn('did not answer within', str(e.exception))
        self.assertFalse(m.locked)
        return took

    def test_a_new_connection_to_a_stopped_broker(self):
        self.stop_broker()
        took = self.assert_unavailable_soon(
            Mutex('py-stuck', timeout=0, socket=self.broker.socket), 10)
        self.assertGreaterEqual(took, _conn.DEADLINE_GRACE * 0.9)

    def test_a_pooled_connection_to_a_stopped_broker(self):
        # hello done on a pooled connection: the acquire alone must time out.
        m = Mutex('py-stuck-pool', timeout=0.2, socket=self.broker.socket)
        with m:
            pass
        self.stop_broker()
        self.assert_unavailable_soon(m, 10)
        self.broker.proc.send_signal(signal.SIGCONT)
        with m:                      # a fresh connection works again
            self.assertTrue(m.locked)

    def test_a_callback_and_a_timeout_to_a_stopped_broker(self):
        calls = []
        m = Mutex('py-stuck-cb', timeout=0, callback=lambda: calls.append(1),
                  socket=self.broker.socket)
        self.stop_broker()
        self.assert_unavailable_soon(m, 10)
        self.assertEqual(calls, [])

    def test_no_timeout_after_the_blocking_event(self):
        # With a callback the wait after it is forever: no deadline then.
        holder = Mutex('py-stuck-wait', socket=self.broker.socket)
        holder.lock()
        called = threading.Event()
        m = Mutex('py-stuck-wait', timeout=0, callback=called.set,
                  socket=self.broker.socket)
        t = threading.Thread(target=m.lock)
        t.start()
        self.assertTrue(called.wait(5))
        time.sleep(_conn.DEADLINE_GRACE + 0.5)
        self.assertTrue(t.is_alive())
        holder.release()
        t.join(10)
        self.assertTrue(m.locked)
        m.release()


def grant_then(second):
    """A FakeBroker script: connection 0 grants its first acquire and
    answers the release, then does what second(conn_no, request) says;
    every later connection grants at once."""
    def respond(n, req):
        rid = req['id']
        if req['op'] == 'release':
            return [{'id': rid, 'ok': True}]
        if n == 0 and rid > 1:
            return second(n, req)
        return [{'id': rid, 'ok': True, 'name': req['name'],
                 'token': 10 + n}]
    return respond


class TestRetry(unittest.TestCase):
    """An acquire on a pooled connection that the broker drops."""

    def fake(self, second):
        fake = FakeBroker(grant_then(second))
        self.addCleanup(fake.stop)
        return fake

    def test_dropped_unheard_is_retried_on_a_new_connection(self):
        fake = self.fake(lambda n, req: None)      # hang up, not a word
        m = Mutex('py-retry', socket=fake.socket)
        with m:
            pass
        self.assertEqual(m.lock(), 11)           # granted on connection 1
        self.assertEqual(fake.conns, 2)
        m.release()

    def test_dropped_after_the_blocking_event_is_lost_and_calls_once(self):
        def event_then_hang_up(n, req):
            fake.blocked.append(req['id'])
            return [{'id': req['id'], 'event': 'blocking', 'name':
                     req['name'], 'holders': [], 'position': 1}]

        calls = []
        fake = self.fake(event_then_hang_up)
        fake.blocked = []
        m = Mutex('py-retry-cb', callback=lambda: calls.append(1),
                  socket=fake.socket)
        with m:
            pass
        # The broker sent the event and then (below) went away: the wait
        # was the broker's, so it is Lost, not retried, and one callback.
        t = threading.Thread(target=lambda: self.wait_and_drop(fake))
        t.start()
        with self.assertRaises(locks.Lost):
            m.lock()
        t.join(10)
        self.assertEqual(calls, [1])
        self.assertEqual(fake.conns, 1)
        self.assertFalse(m.locked)

    def wait_and_drop(self, fake):
        """Once the event is sent, drop connection 0."""
        deadline = time.monotonic() + 5
        while not fake.blocked and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        fake.open[0].shutdown(socket.SHUT_RDWR)


if __name__ == '__main__':
    unittest.main()
