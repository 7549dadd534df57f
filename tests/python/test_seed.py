"""The seed library's own tests (rossmacarthur/locks, test_locks.py),
ported to unittest against a real locksd, unchanged in spirit.

One point is inverted on purpose: the seed unlinked the lock file on
release; here the file must still be there afterwards, and free.  Each
multiprocess test runs with fork and with spawn.
"""

import errno
import fcntl
import multiprocessing
import os
import time
import unittest
from unittest import mock

from locks import Mutex
from support import BrokerCase


def assert_free(test, path):
    """The file exists and a plain fcntl.flock on it succeeds at once."""
    test.assertTrue(os.path.exists(path), path + ' was unlinked')
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def child_holds(path, held, secs):
    """Hold path for secs, saying when it is held."""
    with Mutex(path):
        held.set()
        time.sleep(secs)


def child_1(mutex, go, result):
    """The seed's child_1: the parent holds, so lock() must fail."""
    go.wait(10)
    try:
        mutex.lock()
        result.put('locked')
    except BlockingIOError as e:
        result.put('EAGAIN' if e.errno == errno.EAGAIN else repr(e))


def child_2(mutex, result):
    """The seed's child_2: release a copy of the parent's held Mutex."""
    result.put(mutex.locked)
    mutex.release()
    result.put('released')


class TestMutex(BrokerCase):
    """The seed's TestMutex."""

    def test___init__(self):
        mutex = Mutex('/tmp/test.lock')
        self.assertEqual(mutex.path, '/tmp/test.lock')
        self.assertIsNone(mutex.timeout)
        self.assertIsNone(mutex.callback)
        self.assertIsNone(mutex.token)
        self.assertFalse(mutex.locked)

        mutex = Mutex('/tmp/test.lock', timeout=3.14)
        self.assertEqual(mutex.path, '/tmp/test.lock')
        self.assertEqual(mutex.timeout, 3.14)
        self.assertIsNone(mutex.callback)
        self.assertFalse(mutex.locked)

        callback = object()
        mutex = Mutex('/tmp/test.lock', timeout=3.14, callback=callback)
        self.assertEqual(mutex.path, '/tmp/test.lock')
        self.assertEqual(mutex.timeout, 3.14)
        self.assertIs(mutex.callback, callback)
        self.assertFalse(mutex.locked)

    def check_lock(self, first_timeout):
        path = self.tmpfile()
        mutex = Mutex(path, timeout=first_timeout)
        token = mutex.lock()
        self.assertTrue(os.path.exists(path))
        self.assertTrue(mutex.locked)
        self.assertEqual(mutex.token, token)

        # check that you can call it again, should basically be a noop
        self.assertEqual(mutex.lock(), token)
        self.assertTrue(mutex.locked)

        # check that another `Mutex` cannot acquire this one
        other = Mutex(path, timeout=0.5)
        start = time.monotonic()
        with self.assertRaises(BlockingIOError) as e:
            other.lock()
        self.assertGreaterEqual(time.monotonic() - start, 0.45)
        self.assertFalse(other.locked)
        self.assertIsNone(other.token)
        self.assertEqual(e.exception.errno, errno.EAGAIN)
        mutex.release()

    def test_lock(self):
        self.check_lock(None)

    def test_lock_timeout(self):
        self.check_lock(1)

    def test_lock_callback(self):
        for method in ('fork', 'spawn'):
            with self.subTest(method=method):
                ctx = multiprocessing.get_context(method)
                path = self.tmpfile()
                held = ctx.Event()
                p = ctx.Process(target=child_holds, args=(path, held, 1))
                callback = mock.Mock()
                p.start()
                self.assertTrue(held.wait(10))
                start = time.monotonic()
                with Mutex(path, callback=callback) as m:
                    self.assertTrue(m.locked)
                    # Granted only once the child let go, a second on.
                    self.assertGreaterEqual(time.monotonic() - start, 0.8)
                p.join()
                self.assertEqual(p.exitcode, 0)
                callback.assert_called_once_with()

    def test_release(self):
        path = self.tmpfile()
        mutex = Mutex(path)

        mutex.lock()
        self.assertTrue(os.path.exists(path))
        mutex.release()
        self.assertFalse(mutex.locked)
        assert_free(self, path)   # the seed: assert not os.path.exists(path)

    def test_with(self):
        path = self.tmpfile()

        with Mutex(path) as m:
            self.assertTrue(os.path.exists(path))
            self.assertTrue(m.locked)
        assert_free(self, path)

        with Mutex(path, timeout=0.5) as m:
            self.assertTrue(os.path.exists(path))
            self.assertTrue(m.locked)
        assert_free(self, path)


class TestMultiprocess(BrokerCase):
    """The seed's module-level multiprocess tests, with fork and spawn."""

    def test_multiprocess_double_lock(self):
        for method in ('fork', 'spawn'):
            with self.subTest(method=method):
                ctx = multiprocessing.get_context(method)
                path = self.tmpfile()
                mutex = Mutex(path, timeout=0.5)
                go, result = ctx.Event(), ctx.Queue()
                p = ctx.Process(target=child_1, args=(mutex, go, result))
                p.start()
                mutex.lock()
                go.set()
                self.assertEqual(result.get(timeout=10), 'EAGAIN')
                mutex.release()
                p.join()
                self.assertEqual(p.exitcode, 0)

    def test_multiprocess_double_release(self):
        for method in ('fork', 'spawn'):
            with self.subTest(method=method):
                ctx = multiprocessing.get_context(method)
                path = self.tmpfile()
                mutex = Mutex(path, timeout=0.5)
                mutex.lock()
                result = ctx.Queue()
                p = ctx.Process(target=child_2, args=(mutex, result))
                p.start()
                self.assertIs(result.get(timeout=10), False)
                self.assertEqual(result.get(timeout=10), 'released')
                p.join()
                self.assertEqual(p.exitcode, 0)
                # The child's release left the parent's lock alone.
                self.assertTrue(mutex.locked)
                with self.assertRaises(BlockingIOError):
                    Mutex(path, timeout=0).lock()
                fd = os.open(path, os.O_RDONLY)
                with self.assertRaises(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.close(fd)
                mutex.release()
                assert_free(self, path)

    def test_different_file_descriptors(self):
        path = self.tmpfile()
        a = Mutex(path, timeout=0.5)
        b = Mutex(path, timeout=0.5)

        a.lock()
        with self.assertRaises(BlockingIOError):
            b.lock()
        a.release()
        a.lock()
        with self.assertRaises(BlockingIOError):
            b.lock()
        a.release()
        b.lock()
        with self.assertRaises(BlockingIOError):
            a.lock()
        b.release()


if __name__ == '__main__':
    unittest.main()
