"""What the Python tests share: a real locksd on a private socket.

ctest passes the daemon as $LOCKSD and the CLI as $LOCKS_CLI; run by
hand, they default to build/locksd and build/locks of the tree.
"""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

TREE = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
LOCKSD = os.environ.get('LOCKSD') or os.path.join(TREE, 'build', 'locksd')
LOCKS_CLI = os.environ.get('LOCKS_CLI') or os.path.join(TREE, 'build',
                                                        'locks')


def wait_for_socket(path, proc, log, secs=30):
    """Wait until something accepts on path (or the daemon died)."""
    deadline = time.monotonic() + secs
    while True:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(log) as f:
                    raise RuntimeError('locksd did not start on %s: %s' %
                                       (path, f.read()))
            time.sleep(0.02)
        finally:
            s.close()


class Broker:
    """A locksd of the test's own: socket and lock dir in a temp dir."""

    def __init__(self, base=None, sock=None, user=None, group=None):
        """Start it, and wait until it accepts connections."""
        self.dir = base or tempfile.mkdtemp(prefix='locks-py.')
        self.socket = sock or os.path.join(self.dir, 'locksd.sock')
        self.lock_dir = os.path.join(os.path.dirname(self.socket), 'locks')
        self.log = os.path.join(self.dir, 'locksd-%d.log' % id(self))
        # CI's valgrind run wraps every locksd, as ctest's harness does.
        wrapper = shlex.split(os.environ.get('LOCKSD_WRAPPER', ''))
        with open(self.log, 'w') as log:
            self.proc = subprocess.Popen(
                wrapper + [LOCKSD, '--socket', self.socket, '--lock-dir',
                           self.lock_dir], stdout=log, stderr=log,
                user=user, group=group)
        wait_for_socket(self.socket, self.proc, self.log)
        self.own_dir = base is None

    def kill(self, sig=signal.SIGKILL):
        """Kill the daemon and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait()

    def stop(self):
        """Stop it (SIGTERM) and remove its directory if it made it;
        AssertionError if valgrind or a sanitizer reported on it."""
        self.kill(signal.SIGTERM)
        with open(self.log) as f:
            log = f.read()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        if (re.search(r'^==\d+== ', log, re.M) or 'Sanitizer' in log or
                'runtime error' in log):
            raise AssertionError('locksd reported:\n' + log)


class BrokerCase(unittest.TestCase):
    """A test case with one broker for the class, named by $LOCKS_SOCKET
    so that every Mutex (and every child process) finds it."""

    @classmethod
    def setUpClass(cls):
        """Start the class's broker."""
        cls.broker = Broker()
        cls._saved_env = os.environ.get('LOCKS_SOCKET')
        os.environ['LOCKS_SOCKET'] = cls.broker.socket

    @classmethod
    def tearDownClass(cls):
        """Stop it."""
        if cls._saved_env is None:
            os.environ.pop('LOCKS_SOCKET', None)
        else:
            os.environ['LOCKS_SOCKET'] = cls._saved_env
        cls.broker.stop()

    def tmpfile(self):
        """A fresh temporary file, as the seed's tests made with mkstemp."""
        fd, path = tempfile.mkstemp(prefix='locks-py-test.')
        os.close(fd)
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))
        return path

    def name(self):
        """A broker name of this test's own."""
        return self.id().rsplit('.', 1)[-1].strip('_') or 'test'

    def wait_until(self, pred, what, secs=5):
        """Wait (up to secs) until pred() is true, for test sequencing."""
        deadline = time.monotonic() + secs
        while not pred():
            if time.monotonic() > deadline:
                self.fail('timed out waiting until ' + what)
            time.sleep(0.01)

    def waiters(self, target):
        """How many requests wait for target in the broker."""
        import locks
        return sum(len(lk.waiters) for lk in locks.list(target))


class FakeBroker:
    """A scripted stand-in for locksd on a socket of its own, for what a
    real one will not do on cue (hang up mid-wait, say, after an event).

    respond(conn_no, request) returns the lines (dicts) to send back, or
    None to hang up without a word; conn_no counts connections from 0.
    hello is answered here.  self.requests lists (conn_no, request).
    """

    def __init__(self, respond):
        """Listen, and serve each connection in a thread of its own."""
        import json
        import threading
        self.json = json
        self.respond = respond
        self.dir = tempfile.mkdtemp(prefix='locks-py-fake.')
        self.socket = os.path.join(self.dir, 'fake.sock')
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.socket)
        self.listener.listen(16)
        self.requests = []
        self.conns = 0
        self.open = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading
        while True:
            try:
                s, _ = self.listener.accept()
            except OSError:
                return
            n, self.conns = self.conns, self.conns + 1
            self.open.append(s)
            threading.Thread(target=self._serve, args=(s, n),
                             daemon=True).start()

    def _serve(self, s, n):
        f = s.makefile('rb')
        try:
            for line in f:
                req = self.json.loads(line)
                if req.get('op') == 'hello':
                    out = [{'id': req['id'], 'ok': True, 'protocol': 1}]
                else:
                    self.requests.append((n, req))
                    out = self.respond(n, req)
                if out is None:
                    break
                s.sendall(b''.join(self.json.dumps(o).encode() + b'\n'
                                   for o in out))
        except OSError:
            pass
        finally:
            f.close()
            s.close()

    def stop(self):
        """Close the listener and every connection; remove the socket."""
        self.listener.close()
        for s in self.open:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Raw:
    """A bare protocol connection: lines out, lines in, nothing hidden."""

    def __init__(self, path, label):
        """Connect and say hello as label."""
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.sock.settimeout(10)
        self.buf = b''
        self.send({'id': 0, 'op': 'hello', 'client': label})
        assert self.read()['ok']

    def send(self, obj):
        """Send one request."""
        self.sock.sendall(json.dumps(obj).encode() + b'\n')

    def read(self, timeout=10):
        """The next line, as a dict; socket.timeout if none comes."""
        self.sock.settimeout(timeout)
        while b'\n' not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError('locksd closed the connection')
            self.buf += data
        line, self.buf = self.buf.split(b'\n', 1)
        return json.loads(line)

    def quiet(self, secs):
        """Assert that nothing comes within secs."""
        try:
            line = self.read(secs)
        except socket.timeout:
            return
        raise AssertionError('unexpected line: %r' % line)

    def close(self):
        """Hang up: the broker drops what this connection had."""
        self.sock.close()
