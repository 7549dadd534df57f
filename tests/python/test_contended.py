"""The contended event through the protocol, against a real locksd: a
holder that asked with notify_contended hears when a request queues
behind it (with the waiter count and the first waiter, in list's waiter
shape), again as the queue changes (at most once a second), and never
when it did not ask; bad uses are refused by name.  Then the Python
client's side: Mutex(on_contended=) and locks.aio's contended()."""

import asyncio
import queue
import os
import time
import unittest

import locks
import locks.aio
from support import BrokerCase, Raw


class TestContendedEvent(BrokerCase):
    """The event on the wire."""

    def raw(self, label):
        """A connection closed at the test's end."""
        c = Raw(self.broker.socket, label)
        self.addCleanup(c.close)
        return c

    def test_holder_is_told_when_the_first_waiter_queues(self):
        name = self.name()
        holder, waiter = self.raw('holder'), self.raw('waiter')
        holder.send({'id': 'h1', 'op': 'acquire', 'name': name,
                     'notify_contended': True})
        grant = holder.read()
        self.assertTrue(grant['ok'])
        holder.quiet(0.3)
        waiter.send({'id': 7, 'op': 'acquire', 'name': name,
                     'owner': 'nightly', 'notify_after': 1e9})
        event = holder.read(5)
        self.assertEqual(event['id'], 'h1')
        self.assertEqual(event['event'], 'contended')
        self.assertEqual(event['name'], name)
        self.assertEqual(event['waiters'], 1)
        first = event['first']
        self.assertEqual(first['pid'], os.getpid())
        self.assertEqual(first['client'], 'waiter')
        self.assertEqual(first['owner'], 'nightly')
        self.assertEqual(first['mode'], 'exclusive')
        # Exactly list's waiter shape.
        holder.send({'id': 'l', 'op': 'list', 'name': name})
        listed = holder.read()
        self.assertEqual(listed['locks'][0]['waiters'], [first])
        holder.send({'id': 'r', 'op': 'release', 'name': name})
        self.assertTrue(holder.read()['ok'])
        self.assertTrue(waiter.read()['ok'])

    def test_queue_changes_come_at_most_once_a_second(self):
        name = self.name()
        holder = self.raw('holder')
        holder.send({'id': 1, 'op': 'acquire', 'name': name,
                     'notify_contended': True})
        self.assertTrue(holder.read()['ok'])
        w1, w2, w3 = self.raw('w1'), self.raw('w2'), self.raw('w3')
        w1.send({'id': 1, 'op': 'acquire', 'name': name})
        first = holder.read(5)
        told = time.monotonic()
        self.assertEqual((first['event'], first['waiters']),
                         ('contended', 1))
        w2.send({'id': 1, 'op': 'acquire', 'name': name, 'mode': 'shared'})
        w3.send({'id': 1, 'op': 'acquire', 'name': name, 'mode': 'shared'})
        second = holder.read(5)
        self.assertGreaterEqual(time.monotonic() - told, 0.95)
        self.assertEqual(second['event'], 'contended')
        self.assertEqual(second['waiters'], 3)
        self.assertEqual(second['first']['client'], 'w1')
        holder.quiet(1.5)

    def test_shared_holders_that_asked_are_each_told(self):
        name = self.name()
        a, b, c = self.raw('a'), self.raw('b'), self.raw('c')
        for conn, ask in ((a, True), (b, True), (c, False)):
            conn.send({'id': 1, 'op': 'acquire', 'name': name,
                       'mode': 'shared', 'notify_contended': ask})
            self.assertTrue(conn.read()['ok'])
        writer = self.raw('writer')
        writer.send({'id': 9, 'op': 'acquire', 'name': name})
        for conn in (a, b):
            event = conn.read(5)
            self.assertEqual(event['event'], 'contended')
            self.assertEqual(event['first']['client'], 'writer')
        c.quiet(1.0)

    def test_holder_that_did_not_ask_hears_nothing(self):
        name = self.name()
        holder, waiter = self.raw('holder'), self.raw('waiter')
        holder.send({'id': 1, 'op': 'acquire', 'name': name,
                     'notify_contended': False})
        self.assertTrue(holder.read()['ok'])
        waiter.send({'id': 1, 'op': 'acquire', 'name': name})
        holder.quiet(1.5)

    def test_a_waiter_that_asked_is_told_once_it_holds(self):
        name = self.name()
        a, b, c = self.raw('a'), self.raw('b'), self.raw('c')
        a.send({'id': 1, 'op': 'acquire', 'name': name})
        self.assertTrue(a.read()['ok'])
        b.send({'id': 2, 'op': 'acquire', 'name': name,
                'notify_contended': True, 'notify_after': 1e9})
        c.send({'id': 3, 'op': 'acquire', 'name': name})
        b.quiet(0.3)
        a.send({'id': 4, 'op': 'release', 'name': name})
        self.assertTrue(a.read()['ok'])
        grant = b.read(5)
        self.assertTrue(grant['ok'])
        event = b.read(5)
        self.assertEqual(event['event'], 'contended')
        self.assertEqual(event['id'], 2)
        self.assertEqual(event['first']['client'], 'c')

    def test_bad_uses_are_refused_by_name(self):
        conn = self.raw('bad')
        conn.send({'id': 1, 'op': 'acquire', 'name': self.name(),
                   'notify_contended': 'yes'})
        reply = conn.read()
        self.assertEqual(reply['error']['code'], 'bad_request')
        self.assertIn('notify_contended', reply['error']['message'])
        path = self.tmpfile()
        conn.send({'id': 2, 'op': 'acquire', 'name': path,
                   'handoff': True, 'notify_contended': True})
        reply = conn.read()
        self.assertEqual(reply['error']['code'], 'bad_request')
        self.assertIn('notify_contended', reply['error']['message'])
        conn.send({'id': 3, 'op': 'acquire', 'name': self.name(),
                   'scope': 'cluster', 'notify_contended': True})
        reply = conn.read()
        self.assertEqual(reply['error']['code'], 'unsupported')


class TestPythonClient(BrokerCase):
    """Mutex(on_contended=) and locks.aio.Mutex.contended()."""

    def queue_waiter(self, name, label='waiter'):
        """A raw waiter queued behind name, closed at the test's end."""
        w = Raw(self.broker.socket, label)
        self.addCleanup(w.close)
        w.send({'id': 1, 'op': 'acquire', 'name': name, 'owner': 'late',
                'notify_after': 1e9})
        return w

    def test_on_contended_is_called_from_the_background(self):
        name = self.name()
        seen = queue.Queue()
        m = locks.Mutex(name, on_contended=seen.put)
        m.lock()
        self.addCleanup(m.release)
        self.assertTrue(seen.empty())
        w = self.queue_waiter(name)
        info = seen.get(timeout=5)
        self.assertIsInstance(info, locks.Contended)
        self.assertEqual(info.name, name)
        self.assertEqual(info.waiters, 1)
        self.assertIsInstance(info.first, locks.Waiter)
        self.assertEqual(info.first.pid, os.getpid())
        self.assertEqual(info.first.client, 'waiter')
        self.assertEqual(info.first.owner, 'late')
        self.assertTrue(m.check())
        m.release()
        self.assertTrue(w.read(5)['ok'])
        w.send({'id': 2, 'op': 'release', 'name': name})
        self.assertTrue(w.read(5)['ok'])
        # Released, then taken again without asking anew: no more calls.
        other = locks.Mutex(name)
        other.lock()
        other.release()
        self.assertTrue(seen.empty())

    def test_on_contended_may_release_the_lock(self):
        name = self.name()
        done = queue.Queue()
        m = None

        def yield_lock(info):
            m.release()
            done.put(info.waiters)

        m = locks.Mutex(name, on_contended=yield_lock)
        m.lock()
        w = self.queue_waiter(name)
        self.assertEqual(done.get(timeout=5), 1)
        self.assertTrue(w.read(5)['ok'])
        self.assertFalse(m.locked)

    def test_on_contended_refuses_what_cannot_work(self):
        with self.assertRaises(ValueError):
            locks.Mutex('x', on_contended=print, scope='cluster')
        with self.assertRaises(TypeError):
            locks.Mutex('x', on_contended=True)
        with self.assertRaises(ValueError):
            locks.aio.Mutex('x', on_contended=True, scope='cluster')

    def test_aio_contended_returns_the_event(self):
        name = self.name()
        called = []

        async def scenario():
            async def note(info):
                called.append(info.waiters)

            m = locks.aio.Mutex(name, on_contended=note)
            with self.assertRaises(locks.NotHeld):
                await m.contended()
            await m.lock()
            waiter = asyncio.ensure_future(
                asyncio.get_running_loop().run_in_executor(
                    None, self.queue_waiter, name))
            info = await asyncio.wait_for(m.contended(), 5)
            await waiter
            self.assertEqual(info.waiters, 1)
            self.assertEqual(info.first.client, 'waiter')
            # A wait for the next one ends with the release.
            pending = asyncio.ensure_future(m.contended())
            await asyncio.sleep(0.1)
            await m.release()
            with self.assertRaises(locks.NotHeld):
                await pending
            plain = locks.aio.Mutex(name + 'x')
            await plain.lock()
            with self.assertRaises(RuntimeError):
                await plain.contended()
            await plain.release()

        asyncio.run(scenario())
        self.assertEqual(called, [1])


if __name__ == '__main__':
    unittest.main()
