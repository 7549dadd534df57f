"""The Python client across a reload (SIGHUP: locksd executes itself
again in place, keeping every connection and lock) and across a restart
through systemd's descriptor store (its test double, tests/fdstore.c,
driven by fdstore_run): a holder keeps its lock and token, a waiter keeps
waiting and gets it, an asyncio holder keeps its lock, a holder that asked for contended
events still gets them, and none of them sees an error or an
on_lost call."""

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import locks.aio
from locks import Mutex
from support import Broker, TREE
from test_contended import Raw

FDSTORE_RUN = os.environ.get('FDSTORE_RUN') or os.path.join(
    TREE, 'build', 'tests', 'fdstore_run')


def restored_count(log):
    """How many times the daemon's log says it restored a state."""
    with open(log) as f:
        return f.read().count('locksd: restored ')


class StoreBroker:
    """A locksd under the descriptor store's double (fdstore_run)."""

    def __init__(self):
        """Start it; fdstore_run says "ready" once locksd accepts."""
        self.dir = tempfile.mkdtemp(prefix='locks-py-store.')
        self.socket = os.path.join(self.dir, 'locksd.sock')
        self.log = os.path.join(self.dir, 'locksd.log')
        self.proc = subprocess.Popen([FDSTORE_RUN, self.dir],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line != 'ready\n':
            raise RuntimeError('fdstore_run did not start: %r' % line)

    def restart(self):
        """systemctl restart, as the double plays it; its answer."""
        self.proc.stdin.write('restart\n')
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stop(self):
        """End of input stops the daemon and the double."""
        self.proc.stdin.close()
        self.proc.wait(30)
        self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Handover:
    """The tests, for either way of handing the daemon over."""

    def setUp(self):
        """Start this test's broker."""
        self.broker = self.start_broker()
        self.addCleanup(self.broker.stop)
        self.lost = []

    def on_lost(self, *args):
        """No test here may see a lock lost."""
        self.lost.append(args)

    def mutex(self, name, **kwargs):
        """A Mutex on this test's broker that records any loss."""
        return Mutex(name, socket=self.broker.socket, on_lost=self.on_lost,
                     **kwargs)

    def test_waiter_that_asked_for_detection_keeps_asking(self):
        a = Raw(self.broker.socket, 'a')
        b = Raw(self.broker.socket, 'b')
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        for conn, name in ((a, 'py-dl-x'), (b, 'py-dl-y')):
            conn.send({'id': 1, 'op': 'acquire', 'name': name})
            self.assertTrue(conn.read()['ok'])
        a.send({'id': 2, 'op': 'acquire', 'name': 'py-dl-y',
                'notify_after': 1e9, 'detect_deadlock': True})
        a.quiet(0.3)
        self.hand_over()
        # A wait that did not ask closes the cycle: a's (which did) fails.
        b.send({'id': 2, 'op': 'acquire', 'name': 'py-dl-x',
                'notify_after': 1e9})
        reply = a.read(10)
        self.assertEqual(reply['id'], 2)
        self.assertEqual(reply['error']['code'], 'deadlock')
        b.quiet(0.3)

    def test_holder_keeps_its_lock_and_token(self):
        m = self.mutex('py-handover')
        m.lock()
        token = m.token
        self.hand_over()
        self.assertTrue(m.check())
        self.assertEqual(m.token, token)
        other = self.mutex('py-handover', timeout=0)
        with self.assertRaises(BlockingIOError):
            other.lock()
        m.release()
        other.lock()
        self.assertGreater(other.token, token)
        other.release()
        self.assertEqual(self.lost, [])

    def test_waiter_keeps_waiting_and_gets_it(self):
        holder = self.mutex('py-wait')
        holder.lock()
        held = holder.token
        got = []
        waiter = self.mutex('py-wait', timeout=60)

        def wait():
            waiter.lock()
            got.append(waiter.token)

        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.3)
        self.hand_over()
        self.assertEqual(got, [])
        holder.release()
        t.join(30)
        self.assertEqual(len(got), 1)
        self.assertGreater(got[0], held)
        self.assertTrue(waiter.check())
        waiter.release()
        self.assertEqual(self.lost, [])

    def raw(self, label, request):
        """A bare connection that sent request, closed at the end."""
        conn = Raw(self.broker.socket, label)
        self.addCleanup(conn.close)
        conn.send(request)
        return conn

    def test_contended_holder_still_told_after_the_handover(self):
        holder = self.raw('holder', {'id': 'h', 'op': 'acquire',
                                     'name': 'py-contended',
                                     'notify_contended': True})
        self.assertTrue(holder.read()['ok'])
        self.hand_over()
        self.raw('waiter', {'id': 1, 'op': 'acquire', 'name': 'py-contended',
                            'notify_after': 1e9})
        event = holder.read(5)
        self.assertEqual(event['event'], 'contended')
        self.assertEqual(event['id'], 'h')
        self.assertEqual(event['waiters'], 1)
        self.assertEqual(event['first']['client'], 'waiter')
        # And again across a second handover, for the queue's change.
        self.hand_over()
        self.raw('other', {'id': 1, 'op': 'acquire', 'name': 'py-contended',
                           'notify_after': 1e9})
        event = holder.read(5)
        self.assertEqual(event['waiters'], 2)
        self.assertEqual(event['first']['client'], 'waiter')

    def test_asyncio_holder_keeps_its_lock(self):
        async def scenario():
            m = locks.aio.Mutex('py-aio-handover',
                                socket=self.broker.socket)
            await m.lock()
            token = m.token
            await asyncio.get_running_loop().run_in_executor(
                None, self.hand_over)
            other = self.mutex('py-aio-handover', timeout=0)
            with self.assertRaises(BlockingIOError):
                other.lock()
            await m.release()
            other.lock()
            self.assertGreater(other.token, token)
            other.release()

        asyncio.run(scenario())


class ReloadTest(Handover, unittest.TestCase):
    """SIGHUP: exec in place."""

    def start_broker(self):
        """A plain locksd."""
        return Broker()

    def hand_over(self):
        """SIGHUP, then wait until the new image says it restored."""
        want = restored_count(self.broker.log) + 1
        os.kill(self.broker.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while restored_count(self.broker.log) < want:
            self.assertLess(time.monotonic(), deadline, 'no restore')
            time.sleep(0.01)


class RestartTest(Handover, unittest.TestCase):
    """SIGTERM under the descriptor store, and the next instance."""

    def start_broker(self):
        """A locksd under the store's double."""
        return StoreBroker()

    def hand_over(self):
        """Restart through the store; the double waits for the restore."""
        self.assertEqual(self.broker.restart(), 'restarted')


if __name__ == '__main__':
    unittest.main()
