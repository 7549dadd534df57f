"""locks.aio.Mutex: async with, timeouts, callbacks, a cancelled wait,
an event loop that keeps running while it waits, and Lost."""

import asyncio
import os
import signal
import time
import unittest

import locks
import locks.aio
from support import Broker, BrokerCase


def run(coro):
    """Run a coroutine on a fresh loop, with a bound on the whole test."""
    return asyncio.run(asyncio.wait_for(coro, 60))


class TestAio(BrokerCase):
    """The asyncio Mutex against a real broker."""

    def test_async_with_and_timeout(self):
        async def main():
            async with locks.aio.Mutex('aio-with') as m:
                self.assertTrue(m.locked)
                self.assertIsInstance(m.token, int)
                with self.assertRaises(BlockingIOError):
                    await locks.aio.Mutex('aio-with', timeout=0.2).lock()
                # A sync Mutex on the same name is excluded too.
                with self.assertRaises(BlockingIOError):
                    locks.Mutex('aio-with', timeout=0).lock()
            self.assertFalse(m.locked)
            await m.lock()
            await m.lock()          # a no-op
            await m.release()
            await m.release()       # a no-op
            await m.close()
        run(main())

    def test_the_loop_runs_while_lock_waits(self):
        async def main():
            holder = locks.aio.Mutex('aio-loop')
            await holder.lock()
            ticks = []

            async def ticker():
                while True:
                    ticks.append(1)
                    await asyncio.sleep(0.01)

            t = asyncio.ensure_future(ticker())
            waiter = asyncio.ensure_future(locks.aio.Mutex('aio-loop').lock())
            await asyncio.sleep(0.3)
            self.assertFalse(waiter.done())
            self.assertGreater(len(ticks), 5)
            await holder.release()
            self.assertGreater(await waiter, holder.token or 0)
            t.cancel()
        run(main())

    def test_callbacks_plain_and_async(self):
        async def main():
            holder = locks.aio.Mutex('aio-cb')
            await holder.lock()
            calls = []

            async def acb():
                calls.append('async')
                await holder.release()

            m = locks.aio.Mutex('aio-cb', callback=acb)
            await m.lock()          # the callback lets the holder go
            self.assertEqual(calls, ['async'])
            m2 = locks.aio.Mutex('aio-cb', timeout=0.2,
                                 callback=lambda: calls.append('plain'))
            task = asyncio.ensure_future(m2.lock())
            await asyncio.sleep(0.1)
            self.assertEqual(calls, ['async'])       # not before 0.2 s
            await asyncio.sleep(0.5)
            self.assertEqual(calls, ['async', 'plain'])
            await m.release()
            await task
            self.assertTrue(m2.locked)
            await m2.release()
        run(main())

    def test_a_cancelled_wait_leaves_nothing_behind(self):
        async def main():
            holder = locks.aio.Mutex('aio-cancel')
            await holder.lock()
            m = locks.aio.Mutex('aio-cancel')
            with self.assertRaises(asyncio.TimeoutError):
                await asyncio.wait_for(m.lock(), 0.3)
            self.assertFalse(m.locked)
            await asyncio.sleep(0.1)
            self.assertEqual(self.waiters('aio-cancel'), 0)
            await holder.release()
            # Nobody was left holding it: it is free at once.
            free = locks.aio.Mutex('aio-cancel', timeout=0)
            await free.lock()
            await free.close()
            # A task cancelled while its grant may be on the way.
            await holder.lock()
            task = asyncio.ensure_future(m.lock())
            await asyncio.sleep(0.1)
            await holder.release()
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                self.assertFalse(m.locked)
                await asyncio.sleep(0.1)
                self.assertEqual(locks.list('aio-cancel'), [])
            else:
                self.assertTrue(m.locked)
                await m.release()
        run(main())

    def test_paths(self):
        path = self.tmpfile()

        async def main():
            async with locks.aio.Mutex(path):
                [lk] = locks.list(path)
                self.assertEqual(lk.holders[0].pid, os.getpid())
                with self.assertRaises(BlockingIOError):
                    locks.Mutex(path, timeout=0).lock()
            locks.Mutex(path, timeout=0).lock()
        run(main())


class TestAioLost(unittest.TestCase):
    """A broker that dies under an aio Mutex."""

    def test_lost_calls_on_lost_on_the_loop(self):
        broker = Broker()
        self.addCleanup(broker.stop)

        async def main():
            lost = asyncio.Event()
            m = locks.aio.Mutex('aio-lost', socket=broker.socket,
                                on_lost=lost.set)
            await m.lock()
            broker.kill()
            await asyncio.wait_for(lost.wait(), 5)
            with self.assertRaises(locks.Lost):
                m.check()
            self.assertFalse(m.check())
            with self.assertRaises(locks.Unavailable):
                await m.lock()
        run(main())


    def test_release_after_the_broker_died_is_lost(self):
        broker = Broker()
        self.addCleanup(broker.stop)

        async def main():
            m = locks.aio.Mutex('aio-lost-release', socket=broker.socket)
            await m.lock()
            broker.kill()
            await asyncio.sleep(0.2)
            with self.assertRaises(locks.Lost):
                await m.release()
            self.assertFalse(m.locked)
            await m.release()           # holds nothing now: a no-op
        run(main())


class TestAioStuckBroker(unittest.TestCase):
    """A stopped broker does not hang an aio lock() with a timeout."""

    def test_a_stopped_broker_is_unavailable(self):
        broker = Broker()
        self.addCleanup(broker.stop)

        async def main():
            m = locks.aio.Mutex('aio-stuck', timeout=0.2,
                                socket=broker.socket)
            await m.lock()          # the pooled case: hello is done
            await m.release()
            broker.proc.send_signal(signal.SIGSTOP)
            try:
                for mutex in (m, locks.aio.Mutex('aio-stuck', timeout=0,
                                                 socket=broker.socket)):
                    start = time.monotonic()
                    with self.assertRaises(locks.Unavailable) as e:
                        await mutex.lock()
                    self.assertLess(time.monotonic() - start, 10)
                    self.assertIn(broker.socket, str(e.exception))
                    self.assertIn('did not answer within',
                                  str(e.exception))
                    self.assertFalse(mutex.locked)
            finally:
                broker.proc.send_signal(signal.SIGCONT)
            await m.lock()          # answered again, on a new connection
            self.assertTrue(m.locked)
            await m.close()
        run(main())

    def test_open_does_not_block_the_loop(self):
        # The loop runs on while lock() waits on a stopped broker.
        broker = Broker()
        self.addCleanup(broker.stop)

        async def main():
            broker.proc.send_signal(signal.SIGSTOP)
            ticks = []

            async def ticker():
                while True:
                    ticks.append(1)
                    await asyncio.sleep(0.01)

            t = asyncio.ensure_future(ticker())
            try:
                with self.assertRaises(locks.Unavailable):
                    await locks.aio.Mutex('aio-stuck-loop', timeout=0,
                                          socket=broker.socket).lock()
            finally:
                broker.proc.send_signal(signal.SIGCONT)
                t.cancel()
            self.assertGreater(len(ticks), 20)
        run(main())


if __name__ == '__main__':
    unittest.main()
