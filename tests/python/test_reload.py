"""The Python client across a reload (SIGHUP: locksd executes itself
again in place, keeping every connection and lock): a holder keeps its
lock and token, a waiter keeps waiting and gets it, and neither sees an
error."""

import os
import signal
import threading
import time
import unittest

from locks import Mutex
from support import Broker


class ReloadTest(unittest.TestCase):
    """Each test has a broker of its own, reloaded under it."""

    def setUp(self):
        """Start this test's broker."""
        self.broker = Broker()
        self.addCleanup(self.broker.stop)
        self.reloads = 0

    def reload(self):
        """SIGHUP, then wait until the new image says it restored."""
        self.reloads += 1
        os.kill(self.broker.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while True:
            with open(self.broker.log) as f:
                if f.read().count('locksd: restored ') >= self.reloads:
                    return
            self.assertLess(time.monotonic(), deadline, 'no restore')
            time.sleep(0.01)

    def test_holder_keeps_its_lock_and_token(self):
        m = Mutex('py-reload', socket=self.broker.socket)
        m.lock()
        token = m.token
        self.reload()
        self.assertTrue(m.check())
        self.assertEqual(m.token, token)
        other = Mutex('py-reload', timeout=0, socket=self.broker.socket)
        with self.assertRaises(BlockingIOError):
            other.lock()
        m.release()
        other.lock()
        self.assertGreater(other.token, token)
        other.release()

    def test_waiter_keeps_waiting_and_gets_it(self):
        holder = Mutex('py-wait', socket=self.broker.socket)
        holder.lock()
        got = []
        waiter = Mutex('py-wait', timeout=60, socket=self.broker.socket)

        def wait():
            waiter.lock()
            got.append(waiter.token)

        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.3)
        self.reload()
        self.assertEqual(got, [])
        holder.release()
        t.join(30)
        self.assertEqual(len(got), 1)
        self.assertTrue(waiter.check())
        waiter.release()


if __name__ == '__main__':
    unittest.main()
