#!/usr/bin/env python3
"""Cluster locks against a real etcd: two locksd on one member, as two nodes.

usage: test_cluster.py LOCKSD LOCKS_CLI

Each test starts what it needs: an etcd member on loopback ports with its
data in a temporary directory, and locksd instances with their own sockets,
lock dirs and --node names.  Exits 77 (skip) only if etcd is not installed.
"""

import base64
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

LOCKSD = LOCKS_CLI = None
ETCD = os.environ.get("ETCD", "/usr/bin/etcd")
SLOW = 30.0     # generous: no test asserts a tight time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, predicate, seconds=SLOW):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class Etcd:
    """One etcd member on loopback, data in a temporary directory; with
    peers, one of a cluster whose members all start before any is
    healthy."""

    def __init__(self, tmp, name="m", port=None, peer=None, cluster=None,
                 wait=True):
        self.port, peer = port or free_port(), peer or free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.dir = tempfile.mkdtemp(dir=tmp)
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(
            [ETCD, "--name", name, "--data-dir", self.dir + "/data",
             "--listen-client-urls", self.url,
             "--advertise-client-urls", self.url,
             "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
             "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer,
             "--initial-cluster",
             cluster or "%s=http://127.0.0.1:%d" % (name, peer)],
            stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            wait_for("etcd", self.healthy)

    def healthy(self):
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                return b"true" in r.read()
        except OSError:
            return False

    def keys(self, prefix):
        """The keys under prefix, through the gateway."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        body = json.dumps({
            "key": base64.b64encode(prefix.encode()).decode(),
            "range_end": base64.b64encode(end.encode()).decode(),
            "keys_only": True}).encode()
        with urllib.request.urlopen(self.url + "/v3/kv/range", body,
                                    timeout=5) as r:
            reply = json.load(r)
        return [base64.b64decode(kv["key"]).decode()
                for kv in reply.get("kvs", [])]

    def delete_created_at(self, prefix, revision):
        """Delete, as an operator's etcdctl del would, the key under
        prefix that was created at revision (a cluster grant's token)."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        body = json.dumps({
            "key": base64.b64encode(prefix.encode()).decode(),
            "range_end": base64.b64encode(end.encode()).decode()}).encode()
        with urllib.request.urlopen(self.url + "/v3/kv/range", body,
                                    timeout=5) as r:
            kvs = json.load(r).get("kvs", [])
        key, = [kv["key"] for kv in kvs
                if int(kv["create_revision"]) == revision]
        body = json.dumps({"key": key}).encode()
        with urllib.request.urlopen(self.url + "/v3/kv/deleterange", body,
                                    timeout=5) as r:
            self.assertDeleted(json.load(r))

    @staticmethod
    def assertDeleted(reply):
        if int(reply.get("deleted", 0)) != 1:
            raise AssertionError("etcd deleted nothing: %r" % reply)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Daemon:
    """One locksd standing in for one machine."""

    def __init__(self, tmp, node, etcd_urls=None, *extra):
        self.dir = tempfile.mkdtemp(dir=tmp)
        self.socket = os.path.join(self.dir, "locksd.sock")
        # CI's valgrind run wraps every locksd, as ctest's harness does.
        wrapper = shlex.split(os.environ.get("LOCKSD_WRAPPER", ""))
        args = wrapper + [LOCKSD, "--socket", self.socket,
                "--lock-dir", os.path.join(self.dir, "locks")]
        if etcd_urls is not None:
            args += ["--etcd", etcd_urls, "--etcd-prefix", "/test/",
                     "--node", node]
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(args + list(extra), stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.clients = []
        wait_for("locksd", lambda: os.path.exists(self.socket))

    def client(self):
        self.clients.append(Client(self.socket))
        return self.clients[-1]

    def stop(self):
        for c in self.clients:
            c.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()
        self.log.close()
        # Under -DLOCKS_SANITIZE a report in the log fails the test.
        with open(self.log.name) as f:
            log = f.read()
        if ("Sanitizer" in log or "runtime error" in log or
                re.search(r"^==\d+== ", log, re.M)):
            raise AssertionError("locksd %s reported:\n%s" % (self.socket,
                                                                log))


class Client:
    """One connection, speaking the wire protocol."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.buf = b""
        self.next_id = 0

    def send(self, op, **fields):
        self.next_id += 1
        fields.update(id=self.next_id, op=op)
        self.sock.sendall((json.dumps(fields) + "\n").encode())
        return self.next_id

    def recv(self, seconds=SLOW):
        deadline = time.monotonic() + seconds
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no line within %.1f s" % seconds)
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("locksd closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def reply(self, seconds=SLOW):
        """The next line that is not an event."""
        while True:
            msg = self.recv(seconds)
            if "event" not in msg:
                return msg

    def acquire(self, name, **fields):
        self.send("acquire", name=name, scope="cluster", **fields)
        return self.reply()

    def release(self, name):
        self.send("release", name=name, scope="cluster")
        return self.reply()

    def quiet(self, seconds=0.5):
        """Whether no line comes for a while."""
        try:
            line = self.recv(seconds)
        except socket.timeout:
            return True
        self.buf = (json.dumps(line) + "\n").encode() + self.buf
        return False

    def close(self):
        self.sock.close()


class ClusterTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="locks-cluster-")
        self.stops = []
        self.etcd = self.start(Etcd(self.tmp))

    def tearDown(self):
        for thing in reversed(self.stops):
            thing.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, thing):
        self.stops.append(thing)
        return thing

    def two_nodes(self, *extra):
        return (self.start(Daemon(self.tmp, "alpha", self.etcd.url, *extra)),
                self.start(Daemon(self.tmp, "beta", self.etcd.url, *extra)))

    def start_cli_holder(self, daemon, name):
        """Wait until locks run holds name on daemon."""
        c = daemon.client()

        def held():
            c.send("list", scope="cluster", name=name)
            return c.reply()["locks"] != []
        wait_for("locks run to hold " + name, held)

    def assertGranted(self, reply):
        self.assertTrue(reply.get("ok"), reply)
        self.assertGreater(reply["token"], 0)
        return reply["token"]

    def assertError(self, reply, code):
        self.assertFalse(reply.get("ok"), reply)
        self.assertEqual(reply["error"]["code"], code, reply)

    def test_exclusive_fifo_across_two_daemons_with_rising_tokens(self):
        alpha, beta = self.two_nodes()
        a, b, c = alpha.client(), beta.client(), alpha.client()
        first = self.assertGranted(a.acquire("job"))
        b.send("acquire", name="job", scope="cluster", notify_after=1e9)
        time.sleep(0.3)
        c.send("acquire", name="job", scope="cluster", notify_after=1e9)
        time.sleep(0.3)
        self.assertTrue(a.release("job")["ok"])
        second = self.assertGranted(b.reply())
        self.assertTrue(c.quiet(), "the later waiter on alpha went first")
        self.assertTrue(b.release("job")["ok"])
        third = self.assertGranted(c.reply())
        self.assertLess(first, second)
        self.assertLess(second, third)

    def test_tokens_rise_in_grant_order_with_shared_joiners(self):
        alpha, beta = self.two_nodes()
        a, b, c = alpha.client(), beta.client(), alpha.client()
        first = self.assertGranted(a.acquire("sj", mode="shared"))
        second = self.assertGranted(b.acquire("sj", mode="shared"))
        third = self.assertGranted(c.acquire("sj", mode="shared"))
        self.assertLess(first, second)
        self.assertLess(second, third)
        # An exclusive take behind them all comes after every token, and
        # the joiner's key goes with its daemon's take.
        x = beta.client()
        x.send("acquire", name="sj", scope="cluster", notify_after=1e9)
        self.assertTrue(x.quiet())
        for holder in (a, b, c):
            self.assertTrue(holder.release("sj")["ok"])
        self.assertLess(third, self.assertGranted(x.reply(5)))
        self.assertTrue(x.release("sj")["ok"])
        wait_for("no keys left", lambda: self.etcd.keys("/test/") == [], 5)

    def test_local_shared_waits_behind_earlier_remote_exclusive(self):
        alpha, beta = self.two_nodes()
        a, x, c = alpha.client(), beta.client(), alpha.client()
        self.assertGranted(a.acquire("sx", mode="shared"))
        x.send("acquire", name="sx", scope="cluster", notify_after=1e9)
        self.assertTrue(x.quiet())
        self.assertError(c.acquire("sx", mode="shared", timeout=0),
                         "timeout")
        # Without a timeout it waits behind the exclusive take, and after.
        c.send("acquire", name="sx", scope="cluster", mode="shared",
               notify_after=1e9)
        self.assertTrue(c.quiet())
        self.assertTrue(a.release("sx")["ok"])
        token = self.assertGranted(x.reply(5))
        self.assertTrue(c.quiet())
        self.assertTrue(x.release("sx")["ok"])
        self.assertLess(token, self.assertGranted(c.reply(5)))

    # A local waiter behind a local holder holds its place in etcd's
    # queue from when it queued, ahead of a later remote waiter.
    def test_local_waiter_before_later_remote_waiter_goes_first(self):
        alpha, beta = self.two_nodes()
        a, c, b = alpha.client(), alpha.client(), beta.client()
        self.assertGranted(a.acquire("fo"))
        c.send("acquire", name="fo", scope="cluster", notify_after=1e9)
        time.sleep(0.3)
        b.send("acquire", name="fo", scope="cluster", notify_after=1e9)
        time.sleep(0.3)
        self.assertTrue(a.release("fo")["ok"])
        self.assertGranted(c.reply(5))
        self.assertTrue(b.quiet())

    def test_local_shared_waiter_before_later_remote_exclusive_goes_first(self):
        alpha, beta = self.two_nodes()
        a, c, x = alpha.client(), alpha.client(), beta.client()
        self.assertGranted(a.acquire("se"))
        c.send("acquire", name="se", scope="cluster", mode="shared",
               notify_after=1e9)
        time.sleep(0.3)
        x.send("acquire", name="se", scope="cluster", notify_after=1e9)
        time.sleep(0.3)
        self.assertTrue(a.release("se")["ok"])
        shared = self.assertGranted(c.reply(5))
        self.assertTrue(x.quiet())
        self.assertTrue(c.release("se")["ok"])
        self.assertLess(shared, self.assertGranted(x.reply(5)))

    def test_waiter_behind_local_holder_is_listed_and_its_key_goes_with_it(self):
        alpha, beta = self.two_nodes()
        a, c, d = alpha.client(), alpha.client(), alpha.client()
        self.assertGranted(a.acquire("wk"))
        self.assertEqual(len(self.etcd.keys("/test/wk/")), 1)
        c.send("hello", client="waiter-behind")
        c.reply()
        c.send("acquire", name="wk", scope="cluster", timeout=1.5)
        d.send("acquire", name="wk", scope="cluster", notify_after=1e9)
        wait_for("a key for each waiter",
                 lambda: len(self.etcd.keys("/test/wk/")) == 3, 5)
        # Another machine sees them in queue order, named as they are.
        b = beta.client()
        b.send("list", scope="cluster", name="wk")
        lock, = b.reply()["locks"]
        self.assertEqual([w["client"] for w in lock["waiters"]][:1],
                         ["waiter-behind"])
        self.assertEqual([w["node"] for w in lock["waiters"]],
                         ["alpha", "alpha"])
        # A timeout and a closed connection each take their key along.
        self.assertError(c.reply(5), "timeout")
        wait_for("the timed-out waiter's key gone",
                 lambda: len(self.etcd.keys("/test/wk/")) == 2, 5)
        d.close()
        wait_for("the closed waiter's key gone",
                 lambda: len(self.etcd.keys("/test/wk/")) == 1, 5)
        # Nothing of theirs is left in the way of a later remote waiter.
        x = beta.client()
        x.send("acquire", name="wk", scope="cluster", notify_after=1e9)
        self.assertTrue(x.quiet())
        self.assertTrue(a.release("wk")["ok"])
        self.assertGranted(x.reply(5))
        self.assertTrue(x.release("wk")["ok"])
        wait_for("no keys left", lambda: self.etcd.keys("/test/") == [], 5)

    def test_shared_across_daemons_and_exclusive_waits(self):
        alpha, beta = self.two_nodes()
        a, b, x = alpha.client(), beta.client(), beta.client()
        self.assertGranted(a.acquire("db", mode="shared"))
        self.assertGranted(b.acquire("db", mode="shared"))
        self.assertError(x.acquire("db", timeout=0), "timeout")
        x.send("acquire", name="db", scope="cluster", notify_after=1e9)
        self.assertTrue(x.quiet())
        self.assertTrue(a.release("db")["ok"])
        self.assertTrue(x.quiet())
        self.assertTrue(b.release("db")["ok"])
        self.assertEqual(self.assertGranted(x.reply()) > 0, True)

    def test_timeout_zero_and_timeout_across_daemons(self):
        alpha, beta = self.two_nodes()
        a, b = alpha.client(), beta.client()
        self.assertGranted(a.acquire("t", timeout=0))
        self.assertError(b.acquire("t", timeout=0), "timeout")
        start = time.monotonic()
        self.assertError(b.acquire("t", timeout=0.5), "timeout")
        self.assertGreaterEqual(time.monotonic() - start, 0.4)
        self.assertTrue(a.release("t")["ok"])
        # The timed-out waits left nothing behind in etcd.
        self.assertGranted(b.acquire("t", timeout=5))

    def test_blocking_event_names_the_other_nodes_holder(self):
        alpha, beta = self.two_nodes()
        a, b = alpha.client(), beta.client()
        a.send("hello", client="holder-on-alpha")
        a.reply()
        token = self.assertGranted(a.acquire("n", owner="backup"))
        b.send("acquire", name="n", scope="cluster", notify_after=0.2)
        event = b.recv()
        self.assertEqual(event["event"], "blocking", event)
        holder, = event["holders"]
        self.assertEqual(holder["node"], "alpha")
        self.assertEqual(holder["client"], "holder-on-alpha")
        self.assertEqual(holder["owner"], "backup")
        self.assertEqual(holder["token"], token)
        self.assertEqual(holder["pid"], os.getpid())

    def test_connection_close_releases_in_etcd(self):
        alpha, beta = self.two_nodes()
        a, b = alpha.client(), beta.client()
        self.assertGranted(a.acquire("c"))
        self.assertEqual(len(self.etcd.keys("/test/c/")), 1)
        b.send("acquire", name="c", scope="cluster", notify_after=1e9)
        a.close()
        self.assertGranted(b.reply())
        self.assertTrue(b.release("c")["ok"])
        wait_for("the keys to go", lambda: self.etcd.keys("/test/c/") == [])

    def deleted_key_is_lost(self, name, held_for):
        """A holder whose key is deleted in etcd after held_for seconds
        gets lost, and the waiter on the other node is granted."""
        alpha, beta = self.two_nodes()
        a, b = alpha.client(), beta.client()
        token = self.assertGranted(a.acquire(name))
        b.send("acquire", name=name, scope="cluster", notify_after=1e9)
        time.sleep(held_for)
        self.etcd.delete_created_at("/test/%s/" % name, token)
        event = a.recv(10)
        self.assertEqual((event["event"], event["name"], event["token"]),
                         ("lost", name, token), event)
        self.assertGreater(self.assertGranted(b.reply()), token)
        # The lost lock is not held here: a new acquire waits behind b.
        self.assertError(a.acquire(name, timeout=0), "timeout")

    def test_a_held_key_deleted_at_once_is_lost(self):
        # Before the holder's watch starts: etcd replays the delete.
        self.deleted_key_is_lost("del-early", 0)

    def test_a_held_key_deleted_later_is_lost(self):
        # Well after the holder's watch is in place.
        self.deleted_key_is_lost("del-late", 2.5)

    def test_a_release_after_a_long_hold_is_not_lost(self):
        alpha = self.start(Daemon(self.tmp, "alpha", self.etcd.url))
        a = alpha.client()
        self.assertGranted(a.acquire("long"))
        self.assertTrue(a.quiet(2.5))       # the key's watch is in place
        self.assertTrue(a.release("long")["ok"])
        self.assertTrue(a.quiet(1.5))
        self.assertGranted(a.acquire("long"))

    def test_list_cluster_shows_both_nodes(self):
        alpha, beta = self.two_nodes()
        a, b = alpha.client(), beta.client()
        self.assertGranted(a.acquire("l"))
        b.send("acquire", name="l", scope="cluster", notify_after=1e9)
        time.sleep(0.3)
        b.send("list", scope="cluster")
        reply = b.reply()
        self.assertTrue(reply["ok"], reply)
        lock, = [x for x in reply["locks"] if x["name"] == "l"]
        self.assertEqual([h["node"] for h in lock["holders"]], ["alpha"])
        self.assertEqual([w["node"] for w in lock["waiters"]], ["beta"])
        # The local list is another scope: no cluster lock there.
        b.send("list")
        self.assertEqual(b.reply()["locks"], [])
        b.send("status")
        cluster = b.reply()["cluster"]
        self.assertEqual((cluster["node"], cluster["waiters"]), ("beta", 1))

    def test_cli_run_and_list_cluster(self):
        alpha, beta = self.two_nodes()
        env = dict(os.environ, LOCKS_SOCKET=alpha.socket)
        out = subprocess.run([LOCKS_CLI, "run", "--cluster", "cli", "--",
                              "true"], env=env, timeout=SLOW)
        self.assertEqual(out.returncode, 0)
        b = beta.client()
        self.assertGranted(b.acquire("cli"))
        out = subprocess.run([LOCKS_CLI, "run", "--cluster", "-n", "cli",
                              "--", "true"], env=env, timeout=SLOW,
                             capture_output=True)
        self.assertNotEqual(out.returncode, 0)
        # The drop-in form: locks as flock takes --cluster NAME too.
        flock = os.path.join(self.tmp, "flock")
        os.symlink(os.path.abspath(LOCKS_CLI), flock)
        out = subprocess.run([flock, "--cluster", "-n", "cli", "true"],
                             env=env, timeout=SLOW)
        self.assertEqual(out.returncode, 1)
        out = subprocess.run([flock, "--cluster", "free-one", "-c",
                              "test -n \"$LOCKS_TOKEN\""], env=env,
                             timeout=SLOW)
        self.assertEqual(out.returncode, 0)
        out = subprocess.run([LOCKS_CLI, "list", "--cluster"], env=env,
                             timeout=SLOW, capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("cli", out.stdout)
        self.assertIn("beta", out.stdout)

    def test_python_mutex_with_cluster_scope(self):
        sys.path.insert(0, os.path.join(os.path.dirname(
            os.path.abspath(__file__)), "..", "client", "python"))
        import locks
        alpha, beta = self.two_nodes()
        with locks.Mutex("py", scope="cluster", socket=alpha.socket) as m:
            self.assertGreater(m.token, 0)
            other = locks.Mutex("py", 0, scope="cluster",
                                socket=beta.socket)
            with self.assertRaises(BlockingIOError):
                other.lock()
        # The release reaches etcd a round trip after its reply.
        other = locks.Mutex("py", 5, scope="cluster", socket=beta.socket)
        self.assertGreater(other.lock(), m.token or 0)
        other.release()
        with self.assertRaises(ValueError):
            locks.Mutex("/tmp/x", scope="cluster")
        down = self.start(Daemon(self.tmp, "lonely",
                                 "http://127.0.0.1:%d" % free_port()))
        with self.assertRaises(locks.ClusterUnavailable):
            locks.Mutex("py", scope="cluster", socket=down.socket).lock()

    def test_python_on_lost_called_when_etcd_stops(self):
        sys.path.insert(0, os.path.join(os.path.dirname(
            os.path.abspath(__file__)), "..", "client", "python"))
        import asyncio
        import threading
        import locks
        import locks.aio
        alpha = self.start(Daemon(self.tmp, "alpha", self.etcd.url,
                                  "--etcd-ttl", "3"))
        lost = threading.Event()
        m = locks.Mutex("pylost", scope="cluster", socket=alpha.socket,
                        on_lost=lost.set)
        m.lock()

        async def aio_holder():
            fired = asyncio.Event()
            am = locks.aio.Mutex("aiolost", scope="cluster",
                                 socket=alpha.socket, on_lost=fired.set)
            await am.lock()
            self.etcd.proc.send_signal(signal.SIGSTOP)
            start = time.monotonic()
            await asyncio.wait_for(fired.wait(), 3 + 5)
            with self.assertRaises(locks.Lost):
                am.check()
            return time.monotonic() - start

        try:
            self.assertLess(asyncio.run(aio_holder()), 3 + 5)
            self.assertTrue(lost.wait(2))
            with self.assertRaises(locks.Lost):
                m.check()
        finally:
            self.etcd.proc.send_signal(signal.SIGCONT)

    def test_unsupported_without_etcd(self):
        plain = self.start(Daemon(self.tmp, "plain"))
        c = plain.client()
        self.assertError(c.acquire("x"), "unsupported")
        c.send("list", scope="cluster")
        self.assertError(c.reply(), "unsupported")

    def test_unavailable_when_etcd_is_down(self):
        down = self.start(Daemon(self.tmp, "lonely",
                                 "http://127.0.0.1:%d" % free_port()))
        c = down.client()
        self.assertError(c.acquire("x"), "unavailable")
        c.send("list", scope="cluster")
        self.assertError(c.reply(), "unavailable")

    def holder_and_waiter(self, name, ttl):
        """A daemon (TTL ttl) holding name, and a waiter on another."""
        holding = self.start(Daemon(self.tmp, "holding", self.etcd.url,
                                    "--etcd-ttl", str(ttl)))
        beta = self.start(Daemon(self.tmp, "beta", self.etcd.url))
        self.assertGranted(holding.client().acquire(name))
        b = beta.client()
        b.send("acquire", name=name, scope="cluster", notify_after=1e9)
        self.assertTrue(b.quiet())
        return holding, b

    def test_kill9_holder_daemon_frees_the_lock_after_its_ttl(self):
        doomed, b = self.holder_and_waiter("k", 3)
        doomed.proc.kill()
        start = time.monotonic()
        self.assertGranted(b.reply())
        self.assertLess(time.monotonic() - start, 3 + 10)

    def test_sigterm_revokes_the_lease_at_once(self):
        leaving, b = self.holder_and_waiter("s", 60)
        leaving.proc.terminate()
        # Well before the 60 s TTL: the stop revoked the lease.
        self.assertGranted(b.reply(20))

    def test_reload_ends_cluster_locks_cleanly_and_revokes(self):
        alpha = self.start(Daemon(self.tmp, "alpha", self.etcd.url,
                                  "--etcd-ttl", "60"))
        a, w = alpha.client(), alpha.client()
        token = self.assertGranted(a.acquire("h"))
        w.send("acquire", name="h", scope="cluster", notify_after=1e9)
        self.assertTrue(w.quiet())
        alpha.proc.send_signal(signal.SIGHUP)
        event = a.recv()
        self.assertEqual((event["event"], event["token"]), ("lost", token))
        self.assertError(w.reply(), "unavailable")
        # The old lease went with the reload, not 60 s later.
        self.assertGreater(self.assertGranted(alpha.client().acquire(
            "h", timeout=10)), token)

    def three_members(self):
        ports = [(free_port(), free_port()) for _ in range(3)]
        cluster = ",".join("m%d=http://127.0.0.1:%d" % (i, peer)
                           for i, (_, peer) in enumerate(ports))
        members = [self.start(Etcd(self.tmp, "m%d" % i, port, peer, cluster,
                                   wait=False))
                   for i, (port, peer) in enumerate(ports)]
        for m in members:
            wait_for("etcd member", m.healthy)
        return members

    def test_one_member_of_three_killed_held_locks_survive(self):
        m = self.three_members()
        urls = [x.url for x in m]
        alpha = self.start(Daemon(self.tmp, "alpha", ",".join(urls),
                                  "--etcd-ttl", "5"))
        beta = self.start(Daemon(self.tmp, "beta", ",".join(urls[1:] +
                                                           urls[:1])))
        a, b = alpha.client(), beta.client()
        token = self.assertGranted(a.acquire("m"))
        b.send("acquire", name="m", scope="cluster", notify_after=1e9)
        self.assertTrue(b.quiet())
        # alpha's member goes: its keepalives move on, the lock stays.
        m[0].proc.kill()
        self.assertTrue(a.quiet(5 + 3), "the holder heard something")
        self.assertTrue(b.quiet())
        self.assertTrue(a.release("m")["ok"])
        self.assertGreater(self.assertGranted(b.reply()), token)
        # And new grants go on, on both daemons.
        self.assertTrue(b.release("m")["ok"])
        self.assertGranted(a.acquire("m2", timeout=SLOW))
        self.assertGranted(b.acquire("m3", timeout=SLOW))

    def test_waiter_whose_member_dies_is_still_granted(self):
        m = self.three_members()
        urls = [x.url for x in m]
        alpha = self.start(Daemon(self.tmp, "alpha", ",".join(urls)))
        beta = self.start(Daemon(self.tmp, "beta", ",".join(urls[1:] +
                                                           urls[:1])))
        a, b = alpha.client(), beta.client()
        self.assertGranted(a.acquire("w"))
        b.send("acquire", name="w", scope="cluster", notify_after=1e9)
        self.assertTrue(b.quiet())
        m[1].proc.kill()        # beta's member, where its watch is
        time.sleep(1)
        self.assertTrue(a.release("w")["ok"])
        self.assertGranted(b.reply())

    def test_quorum_lost_holders_get_lost_within_the_ttl(self):
        m = self.three_members()
        alpha = self.start(Daemon(self.tmp, "alpha",
                                  ",".join(x.url for x in m),
                                  "--etcd-ttl", "4"))
        a = alpha.client()
        token = self.assertGranted(a.acquire("quorum"))
        m[1].proc.kill()
        m[2].proc.kill()
        start = time.monotonic()
        event = a.recv(4 + 10)
        self.assertEqual((event["event"], event["token"]), ("lost", token))
        self.assertLess(time.monotonic() - start, 4 + 5)

    def test_lost_when_etcd_stops_answering_then_a_new_lease(self):
        alpha = self.start(Daemon(self.tmp, "alpha", self.etcd.url,
                                  "--etcd-ttl", "3"))
        a, w = alpha.client(), alpha.client()
        token = self.assertGranted(a.acquire("q"))
        w.send("acquire", name="q", scope="cluster", notify_after=1e9)
        env = dict(os.environ, LOCKS_SOCKET=alpha.socket)
        run = subprocess.Popen([LOCKS_CLI, "run", "--cluster",
                                "--on-lost=term", "r", "--", "sleep", "600"],
                               env=env, stderr=subprocess.PIPE)
        self.start_cli_holder(alpha, "r")
        self.etcd.proc.send_signal(signal.SIGSTOP)
        start = time.monotonic()
        event = a.recv(3 + 10)
        self.assertEqual(event["event"], "lost", event)
        self.assertEqual(event["name"], "q")
        self.assertEqual(event["token"], token)
        self.assertLess(time.monotonic() - start, 3 + 5)
        # The waiter is not left hanging either.
        self.assertError(w.reply(), "unavailable")
        # locks run --on-lost=term stops its command and exits 75.
        self.assertEqual(run.wait(SLOW), 75)
        self.assertIn(b"lost", run.stderr.read())
        run.stderr.close()
        self.etcd.proc.send_signal(signal.SIGCONT)
        # Back: a new lease; the old one's key goes when it is revoked.
        self.assertGranted(a.acquire("q", timeout=SLOW))


def main():
    global LOCKSD, LOCKS_CLI
    if not os.access(ETCD, os.X_OK):
        print("skipped: no etcd at %s (Debian: apt-get install etcd-server)"
              % ETCD)
        sys.exit(77)
    LOCKSD, LOCKS_CLI = sys.argv[1], sys.argv[2]
    unittest.main(argv=sys.argv[:1] + sys.argv[3:], verbosity=2)


if __name__ == "__main__":
    main()
