"""Deadlock detection through the protocol, against a real locksd: a
wait that closes a cycle of connections waiting for each other fails at
once with ``deadlock`` when it asked with detect_deadlock, naming the
cycle's pids and locks; the youngest wait of the cycle that asked fails,
also when a wait that did not ask closes it; names and path locks alike;
bad uses are refused by name.  Then the Python client's side:
Mutex(detect_deadlock=True) and locks.aio's, raising locks.Deadlock."""

import array
import asyncio
import json
import os
import socket
import threading
import unittest

import locks
import locks.aio
from support import BrokerCase, FakeBroker, Raw


class TestDeadlockOnTheWire(BrokerCase):
    """The error on the wire."""

    def raw(self, label):
        """A connection closed at the test's end."""
        c = Raw(self.broker.socket, label)
        self.addCleanup(c.close)
        return c

    def hold(self, conn, rid, name, **fields):
        """Acquire name on conn and assert it is granted at once."""
        conn.send(dict({'id': rid, 'op': 'acquire', 'name': name,
                        'notify_after': 1e9}, **fields))
        reply = conn.read()
        self.assertTrue(reply['ok'], reply)
        return reply

    def wait(self, conn, rid, name, **fields):
        """Acquire name on conn and assert it waits."""
        conn.send(dict({'id': rid, 'op': 'acquire', 'name': name,
                        'notify_after': 1e9}, **fields))
        conn.quiet(0.3)

    def test_two_connections_the_closing_wait_fails(self):
        x, y = self.name() + '-x', self.name() + '-y'
        a, b = self.raw('a'), self.raw('b')
        self.hold(a, 1, x)
        self.hold(b, 1, y)
        self.wait(a, 2, y, detect_deadlock=True)
        b.send({'id': 2, 'op': 'acquire', 'name': x,
                'detect_deadlock': True})
        reply = b.read(5)
        self.assertFalse(reply['ok'])
        self.assertEqual(reply['id'], 2)
        self.assertEqual(reply['error']['code'], 'deadlock')
        msg = reply['error']['message']
        self.assertIn('pid %d waits for %s' % (os.getpid(), x), msg)
        self.assertIn('pid %d waits for %s' % (os.getpid(), y), msg)
        self.assertIn('2 connections', msg)
        # b keeps y; a still waits, and gets y once b lets it go.
        a.quiet(0.3)
        b.send({'id': 3, 'op': 'release', 'name': y})
        self.assertTrue(b.read()['ok'])
        grant = a.read(5)
        self.assertTrue(grant['ok'])
        self.assertEqual(grant['id'], 2)

    def test_connections_of_one_deadlock_group_are_one_node(self):
        x, y = self.name() + '-x', self.name() + '-y'
        a1, a2, b1, b2 = (self.raw(n) for n in ('a1', 'a2', 'b1', 'b2'))
        self.hold(a1, 1, x, deadlock_group='a')
        self.hold(b1, 1, y, deadlock_group='b')
        self.wait(a2, 1, y, deadlock_group='a', detect_deadlock=True)
        b2.send({'id': 1, 'op': 'acquire', 'name': x, 'notify_after': 1e9,
                 'deadlock_group': 'b', 'detect_deadlock': True})
        reply = b2.read(5)
        self.assertEqual(reply['error']['code'], 'deadlock', reply)
        self.assertIn('2 connections', reply['error']['message'])

    def test_without_a_group_each_connection_is_its_own_node(self):
        x, y = self.name() + '-x', self.name() + '-y'
        a1, a2, b1, b2 = (self.raw(n) for n in ('a1', 'a2', 'b1', 'b2'))
        self.hold(a1, 1, x)
        self.hold(b1, 1, y)
        self.wait(a2, 1, y, detect_deadlock=True)
        self.wait(b2, 1, x, detect_deadlock=True)     # no cycle seen
        self.assertEqual(self.waiters(x), 1)
        self.assertEqual(self.waiters(y), 1)

    def test_a_bad_deadlock_group_is_refused(self):
        a = self.raw('a')
        a.send({'id': 1, 'op': 'acquire', 'name': self.name(),
                'deadlock_group': 7})
        reply = a.read()
        self.assertEqual(reply['error']['code'], 'bad_request')
        self.assertIn('deadlock_group', reply['error']['message'])

    def test_a_wait_that_did_not_ask_fails_the_one_that_did(self):
        x, y = self.name() + '-x', self.name() + '-y'
        a, b = self.raw('a'), self.raw('b')
        self.hold(a, 1, x)
        self.hold(b, 1, y)
        self.wait(a, 2, y, detect_deadlock=True)
        self.wait(b, 2, x)
        reply = a.read(5)
        self.assertEqual(reply['id'], 2)
        self.assertEqual(reply['error']['code'], 'deadlock')
        # a's hold of x stays, so b waits on until a lets x go.
        b.quiet(0.3)
        a.send({'id': 3, 'op': 'release', 'name': x})
        self.assertTrue(a.read()['ok'])
        grant = b.read(5)
        self.assertTrue(grant['ok'])
        self.assertEqual(grant['id'], 2)

    def test_three_connections_youngest_that_asked_fails(self):
        x, y, z = (self.name() + s for s in ('-x', '-y', '-z'))
        a, b, c = self.raw('a'), self.raw('b'), self.raw('c')
        self.hold(a, 1, x)
        self.hold(b, 1, y)
        self.hold(c, 1, z)
        self.wait(a, 2, y, detect_deadlock=True)
        self.wait(b, 2, z, detect_deadlock=True)
        self.wait(c, 2, x)
        reply = b.read(5)
        self.assertEqual(reply['error']['code'], 'deadlock')
        self.assertIn('3 connections', reply['error']['message'])
        a.quiet(0.3)
        c.quiet(0.1)

    def test_no_detection_unless_asked(self):
        x, y = self.name() + '-x', self.name() + '-y'
        a, b = self.raw('a'), self.raw('b')
        self.hold(a, 1, x)
        self.hold(b, 1, y)
        self.wait(a, 2, y)
        self.wait(b, 2, x)
        a.quiet(0.3)
        # Both wait on: the cycle is theirs to break, by a timeout here.
        self.assertEqual(self.waiters(x) + self.waiters(y), 2)

    def test_path_lock_and_name_in_one_cycle(self):
        x = self.name() + '-x'
        path = self.tmpfile()
        a, b = self.raw('a'), self.raw('b')

        def send_path(conn, rid, **fields):
            fd = os.open(path, os.O_RDONLY)
            try:
                line = json.dumps(dict({'id': rid, 'op': 'acquire',
                                        'name': path, 'notify_after': 1e9},
                                       **fields)).encode() + b'\n'
                conn.sock.sendmsg([line], [(socket.SOL_SOCKET,
                                            socket.SCM_RIGHTS,
                                            array.array('i', [fd]))])
            finally:
                os.close(fd)

        self.hold(a, 1, x)
        send_path(b, 1)
        self.assertTrue(b.read()['ok'])
        send_path(a, 2, detect_deadlock=True)
        a.quiet(0.3)
        b.send({'id': 2, 'op': 'acquire', 'name': x,
                'detect_deadlock': True})
        reply = b.read(5)
        self.assertEqual(reply['error']['code'], 'deadlock')
        self.assertIn(x, reply['error']['message'])

    def test_cluster_scope_is_unsupported(self):
        a = self.raw('a')
        a.send({'id': 1, 'op': 'acquire', 'name': self.name(),
                'scope': 'cluster', 'detect_deadlock': True})
        reply = a.read()
        self.assertEqual(reply['error']['code'], 'unsupported')

    def test_handoff_is_refused(self):
        a = self.raw('a')
        a.send({'id': 1, 'op': 'acquire', 'name': self.tmpfile(),
                'handoff': True, 'detect_deadlock': True})
        reply = a.read()
        self.assertEqual(reply['error']['code'], 'bad_request')
        self.assertIn('detect_deadlock cannot go with handoff',
                      reply['error']['message'])

    def test_not_a_boolean_is_refused(self):
        a = self.raw('a')
        a.send({'id': 1, 'op': 'acquire', 'name': self.name(),
                'detect_deadlock': 'yes'})
        reply = a.read()
        self.assertEqual(reply['error']['code'], 'bad_request')
        self.assertIn('detect_deadlock must be a boolean',
                      reply['error']['message'])


def deadlock_on_acquire(n, req):
    """A FakeBroker script: every acquire fails as a deadlock."""
    if req.get('op') != 'acquire':
        return [{'id': req.get('id'), 'ok': True}]
    return [{'id': req['id'], 'ok': False,
             'error': {'code': 'deadlock', 'message': 'a cycle'}}]


class TestMutexDetectDeadlock(BrokerCase):
    """locks.Mutex(detect_deadlock=True) and locks.aio's."""

    def fake(self):
        fake = FakeBroker(deadlock_on_acquire)
        self.addCleanup(fake.stop)
        return fake

    def test_mutex_asks_and_raises_deadlock(self):
        fake = self.fake()
        m = locks.Mutex('db', socket=fake.socket, detect_deadlock=True)
        with self.assertRaises(locks.Deadlock) as cm:
            m.lock()
        self.assertIsInstance(cm.exception, locks.Error)
        self.assertEqual(cm.exception.code, 'deadlock')
        self.assertFalse(m.locked)
        self.assertIs(fake.requests[-1][1].get('detect_deadlock'), True)

    def test_mutex_does_not_ask_by_default(self):
        fake = self.fake()
        m = locks.Mutex('db', socket=fake.socket)
        with self.assertRaises(locks.Deadlock):
            m.lock()
        self.assertNotIn('detect_deadlock', fake.requests[-1][1])

    def test_aio_mutex_asks_and_raises_deadlock(self):
        fake = self.fake()

        async def go():
            m = locks.aio.Mutex('db', socket=fake.socket,
                                detect_deadlock=True)
            with self.assertRaises(locks.Deadlock):
                await m.lock()

        asyncio.run(go())
        self.assertIs(fake.requests[-1][1].get('detect_deadlock'), True)

    def test_two_threads_in_opposite_order_one_gets_deadlock(self):
        x, y = self.name() + '-x', self.name() + '-y'
        got = {}
        a_has_x, b_has_y = threading.Event(), threading.Event()

        def take_both(first, second, mine, theirs, key, before_second):
            with locks.Mutex(first, detect_deadlock=True):
                mine.set()
                theirs.wait(10)
                before_second()
                try:
                    with locks.Mutex(second, detect_deadlock=True):
                        got[key] = 'held'
                except locks.Deadlock as e:
                    got[key] = e

        a = threading.Thread(daemon=True, target=take_both, args=(
            x, y, a_has_x, b_has_y, 'a', lambda: None))
        b = threading.Thread(daemon=True, target=take_both, args=(
            y, x, b_has_y, a_has_x, 'b', lambda: self.wait_until(
                lambda: self.waiters(y) == 1, 'thread a waits for y')))
        a.start()
        b.start()
        a.join(20)
        b.join(20)
        self.assertEqual(got.get('a'), 'held')
        self.assertIsInstance(got.get('b'), locks.Deadlock)
        self.assertIn('waits for %s' % x, str(got['b']))

    def test_real_broker_grants_as_usual(self):
        m = locks.Mutex(self.name(), socket=self.broker.socket,
                        detect_deadlock=True)
        with m:
            self.assertTrue(m.locked)
        self.assertFalse(m.locked)

    def test_cluster_is_refused(self):
        with self.assertRaises(ValueError):
            locks.Mutex('db', scope='cluster', detect_deadlock=True)

    def test_pickles_with_the_flag(self):
        import pickle
        m = pickle.loads(pickle.dumps(locks.Mutex('db',
                                                  detect_deadlock=True)))
        self.assertTrue(m.detect_deadlock)


if __name__ == '__main__':
    unittest.main()
