"""The transport of the locks package: which socket, its trust checks, the
connection and its request lines, a per-process pool of idle
connections, fork handling, and the thread that notices a lost broker.

The socket is found by the same rule as liblocks (``client/locks.c``,
``client/transport.c`` and ``protocol/protocol.c``):

- a socket passed in, or ``$LOCKS_SOCKET``, is used as is, unchecked;
- root uses the system socket (``/run/locksd/locksd.sock``, or
  ``$LOCKS_SYSTEM_SOCKET`` when that is an absolute path), unchecked;
- any other user tries the system socket, checked, and only when there
  is no system socket at all the per-user one
  (``$XDG_RUNTIME_DIR/locksd/locksd.sock``, else
  ``/tmp/locksd-$UID/locksd.sock``), checked.  A system socket that is
  there but does not answer is an error, not passed over.

Nothing here is public: use :mod:`locks`.
"""

import array
import atexit
import codecs
import errno
import json
import os
import select
import socket
import stat
import struct
import sys
import threading
import time
import weakref

from ._errors import (Lost, ProtocolError, Unavailable, Untrusted,
                      from_reply)

PROTOCOL_VERSION = 1
SYSTEM_SOCKET = '/run/locksd/locksd.sock'
MAX_LABEL = 256
MAX_REPLY = 16 << 20

# How much longer than its timeout a lock() waits for a broker that does
# not answer (one stopped, or wedged) before it gives up with Unavailable.
DEADLINE_GRACE = 2.0

_TRUST_CALLER, _TRUST_SYSTEM, _TRUST_USER = 'caller', 'system', 'user'
_CONN_FAILED = 'cannot connect to '


def _secure_env(name):
    """``secure_getenv``: the variable, unless this process runs set-id."""
    if os.getuid() != os.geteuid() or os.getgid() != os.getegid():
        return None
    return os.environ.get(name)


def socket_env():
    """``$LOCKS_SOCKET`` if set and not empty: the user's choice."""
    env = _secure_env('LOCKS_SOCKET')
    return env if env else None


def system_socket():
    """The system broker's socket, moved by an absolute
    ``$LOCKS_SYSTEM_SOCKET``."""
    env = _secure_env('LOCKS_SYSTEM_SOCKET')
    return env if env and env.startswith('/') else SYSTEM_SOCKET


def user_socket():
    """The per-user socket: under ``$XDG_RUNTIME_DIR``, else ``/tmp``."""
    env = _secure_env('XDG_RUNTIME_DIR')
    if env and env.startswith('/'):
        return env + '/locksd/locksd.sock'
    return '/tmp/locksd-%d/locksd.sock' % os.geteuid()


def default_socket():
    """The socket a daemon listens on by default, as liblocks names it."""
    env = socket_env()
    if env is not None:
        return env
    if os.geteuid() == 0:
        return system_socket()
    return user_socket()


class Deadline:
    """The client's own bound on a lock() with a timeout: connect, hello
    and the acquire's reply must come within the timeout plus
    DEADLINE_GRACE, or the broker is taken for one that does not answer."""

    def __init__(self, seconds):
        """A deadline seconds from now."""
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    @classmethod
    def for_timeout(cls, timeout):
        """The deadline of a lock() with this timeout (None: none)."""
        if timeout is None or timeout >= 1e9:    # inf, or as good as
            return None
        return cls(timeout + DEADLINE_GRACE)

    def remaining(self):
        """Seconds left (at most 0 once passed)."""
        return max(self.at - time.monotonic(), 0.0)

    def expired(self, path):
        """The Unavailable to raise once it has passed."""
        return Unavailable('locksd at %s did not answer within %g s' %
                           (path, self.seconds))


def _set_sndtimeo(sock, seconds):
    """SO_SNDTIMEO, which also bounds a blocking connect(2) on a Unix
    socket whose backlog is full (0: no bound)."""
    usec = int(seconds * 1e6)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                    struct.pack('ll', usec // 1000000, usec % 1000000))


class _ConnectFailed(Unavailable):
    """Connecting failed (as opposed to a check refusing the socket)."""


def _check_socket_dir(path, trust):
    """Check the directory of a socket we must trust, as liblocks does.

    It must be a directory (not a link to one), writable by its owner
    alone, and for a per-user socket the caller's own.  Returns the
    directory's owner, whom check_peer also accepts for a system socket.
    """
    me = os.geteuid()
    slash = path.rfind('/')
    if slash < 0:
        raise Untrusted('cannot check the directory of %s' % path)
    d = path[:slash] or '/'
    try:
        sb = os.lstat(d)
    except OSError as e:
        raise _ConnectFailed('%s%s: %s' % (_CONN_FAILED, path,
                                           os.strerror(e.errno)))
    mode = sb.st_mode
    if stat.S_ISLNK(mode):
        why = ('%s is a symbolic link, not a directory; refusing to use '
               'its socket' % d)
    elif not stat.S_ISDIR(mode):
        why = '%s is not a directory; refusing to use its socket' % d
    elif trust == _TRUST_USER and sb.st_uid != me:
        why = ('%s is owned by uid %d, not you (%d); refusing to use its '
               'socket' % (d, sb.st_uid, me))
    elif mode & (stat.S_IWGRP | stat.S_IWOTH):
        why = ('%s is writable by %s (mode %04o); refusing to use its '
               'socket' % (d, 'others' if mode & stat.S_IWOTH else
                           'its group', stat.S_IMODE(mode)))
    else:
        return sb.st_uid
    raise Untrusted(why)


def _check_peer(sock, path, trust, dir_owner):
    """Check who serves the socket (``SO_PEERCRED``), as liblocks does."""
    me = os.geteuid()
    try:
        cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                               struct.calcsize('iII'))
    except OSError as e:
        raise Untrusted('cannot learn who serves %s: %s' %
                        (path, os.strerror(e.errno)))
    pid, uid, _gid = struct.unpack('iII', cred)
    if uid == 0:
        return
    if trust == _TRUST_USER and uid != me:
        raise Untrusted('%s is served by uid %d (pid %d), not by you (%d) '
                        'or root; refusing to talk to it' %
                        (path, uid, pid, me))
    if trust == _TRUST_SYSTEM and uid != dir_owner:
        raise Untrusted('%s is served by uid %d (pid %d), not by root or '
                        'the owner of its directory (uid %d); refusing to '
                        'talk to it' % (path, uid, pid, dir_owner))


def connect_failed(path, e):
    """The _ConnectFailed for an OSError from connect(2)."""
    return _ConnectFailed('%s%s: %s' % (_CONN_FAILED, path,
                                        os.strerror(e.errno)
                                        if e.errno else e))


def open_socket(path, trust=_TRUST_CALLER, blocking=True, deadline=None):
    """Connect to the socket at path, checking it as trust says, within
    deadline if there is one.

    Raises Untrusted when a check refuses it, _ConnectFailed (an
    Unavailable) when nothing answers.
    """
    dir_owner = 0
    if trust != _TRUST_CALLER:
        dir_owner = _check_socket_dir(path, trust)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if deadline is not None:
            left = deadline.remaining()
            if left <= 0:
                raise deadline.expired(path)
            _set_sndtimeo(sock, left)
        try:
            sock.connect(path)
        except OSError as e:
            if deadline is not None and e.errno == errno.EAGAIN:
                raise deadline.expired(path) from None
            raise connect_failed(path, e) from None
        if deadline is not None:
            _set_sndtimeo(sock, 0)
    except BaseException:
        sock.close()
        raise
    # Before hello: a stranger learns nothing, not even our label.
    if trust != _TRUST_CALLER:
        try:
            _check_peer(sock, path, trust, dir_owner)
        except BaseException:
            sock.close()
            raise
    sock.setblocking(blocking)
    return sock


def system_failed(e):
    """Why the system socket failed, for the message that follows."""
    sys_why = str(e)
    if sys_why.startswith(_CONN_FAILED):
        sys_why = sys_why[len(_CONN_FAILED):]
    return sys_why


def check_system_absent(sys_path, sys_why):
    """Raise Unavailable if the system socket is there (but did not
    answer): only a system socket that is missing falls back to the
    per-user one."""
    try:
        os.stat(sys_path)
        present = True
    except OSError as e:
        present = e.errno not in (errno.ENOENT, errno.ENOTDIR)
    if present:
        raise Unavailable(
            'cannot connect to the system broker at %s; it is there but '
            'does not answer: start it with `systemctl start '
            'locksd.socket`, or remove the stale socket (a per-user broker '
            'would hold other locks)' % sys_why)


def user_failed(e, sys_why):
    """The Unavailable when neither the system nor the user socket
    answers."""
    return Unavailable(
        '%s, nor to the system broker at %s; start it with `systemctl '
        'start locksd.socket`, or start your own with `locksd`' %
        (e, sys_why))


def _discover(blocking, deadline):
    """A non-root user's socket: the system broker's if one answers there,
    else (only when there is no system socket at all) the per-user one."""
    sys_path = system_socket()
    try:
        return (open_socket(sys_path, _TRUST_SYSTEM, blocking, deadline),
                sys_path)
    except _ConnectFailed as e:
        sys_why = system_failed(e)
    # A system socket that is there but does not answer is a system
    # broker that is down: the per-user one's locks are other locks.
    check_system_absent(sys_path, sys_why)
    user_path = user_socket()
    try:
        return (open_socket(user_path, _TRUST_USER, blocking, deadline),
                user_path)
    except _ConnectFailed as e:
        raise user_failed(e, sys_why)


def connect_socket(path=None, blocking=True, deadline=None):
    """Open the socket path (None: the default, found and checked as
    liblocks does), within deadline if given.  Returns (socket, path);
    says nothing yet."""
    if path is not None:
        return (open_socket(os.fspath(path), _TRUST_CALLER, blocking,
                            deadline), path)
    if socket_env() is None and os.geteuid() != 0:
        return _discover(blocking, deadline)
    path = default_socket()
    return open_socket(path, _TRUST_CALLER, blocking, deadline), path


def send_all(sock, line, fd=None):
    """Send all of line, fd in SCM_RIGHTS with its first bytes, with
    MSG_NOSIGNAL as liblocks sends: a daemon gone is an error, never a
    SIGPIPE (which a program may leave at its default, fatal)."""
    ancillary = [] if fd is None else [
        (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [fd]))]
    while line:
        n = sock.sendmsg([line], ancillary, socket.MSG_NOSIGNAL)
        ancillary = []
        line = line[n:]


def client_label():
    """The label hello sends: the program's name, as liblocks uses."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ''
    if not name or name in ('-c', '-'):
        name = 'python'
    return name.encode('utf-8', 'replace')[:MAX_LABEL].decode(
        'utf-8', 'ignore')


def hello_line(label):
    """The hello request, id 0."""
    return ('{"id":0,"op":"hello","client":%s}\n' %
            json.dumps(label)).encode()


def check_hello(reply, path):
    """Check the hello reply's protocol number; raise Unavailable if it is
    another one (it would misread us, or we it)."""
    if not reply.get('ok'):
        raise from_reply(reply)
    version = reply.get('protocol')
    if not isinstance(version, int):
        raise Unavailable('locksd at %s did not say which protocol it '
                          'speaks' % path)
    if version != PROTOCOL_VERSION:
        raise Unavailable('locksd at %s speaks protocol %d, and this client '
                          'speaks protocol %d' %
                          (path, version, PROTOCOL_VERSION))


def _qmark(err):
    """A codec error handler: each byte that is not UTF-8 becomes '?'."""
    return '?' * (err.end - err.start), err.end


codecs.register_error('locks-qmark', _qmark)


def parse_line(line, path):
    """Parse one reply line into a dict; nonsense is a ProtocolError.

    Bytes that are not UTF-8 read as '?', the protocol's own spelling of
    them: the daemon's list can echo a path's raw bytes (reported)."""
    try:
        obj = json.loads(line.decode('utf-8', 'locks-qmark'))
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise ProtocolError('locksd at %s sent a line that is not a JSON '
                            'object' % path)
    return obj


# Why a connection is done with when its cluster lock was lost.
LEASE_LOST_WHY = 'locksd lost its etcd lease, and with it the cluster lock'


def is_lost_event(line, path):
    """Whether one line is the daemon's ``lost`` event."""
    return parse_line(line, path).get('event') == 'lost'


def peek_lost(sock, path):
    """Whether a whole ``lost`` line waits unread on sock, looked at
    without taking it (the owner of the connection reads it later)."""
    try:
        data = sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return False
    for line in data.split(b'\n')[:-1]:
        try:
            if line.strip() and is_lost_event(line, path):
                return True
        except ProtocolError:
            return False
    return False


def forget_socket(conn):
    """Mark conn broken and close its descriptor without closing the
    socket object's idea of it twice (detach, then close the number)."""
    conn.broken = True
    sock, conn.sock = conn.sock, None
    if sock is not None:
        try:
            os.close(sock.detach())
        except OSError:
            pass


# Every connection this process made, so a forked child can let go of
# its copies (see _after_fork_in_child).
_all_conns = weakref.WeakSet()


class Conn:
    """One blocking connection to the broker, used by one caller at a time.

    Requests are sent whole (with descriptors in the same sendmsg when a
    path lock carries one) and each waits for its own final reply; events
    for it go to a hook, and lines for nobody are dropped.
    """

    def __init__(self, path=None, deadline=None):
        """Connect (path None: the default socket) and say hello, within
        deadline (a Deadline) if given."""
        self.sock, self.path = connect_socket(path, deadline=deadline)
        self.pid = os.getpid()
        self.broken = False
        self.lost_why = None
        self.buf = b''
        self.next_id = 1
        self.deadline = deadline
        self.heard = False
        self._poll = None
        # Contended events of the held lock: on_push(event) is called
        # for each, by whoever read it, outside io; io serialises the
        # reads of the owner and of the watcher thread.
        self.on_push = None
        self.pushed = []
        self.io = threading.Lock()
        _all_conns.add(self)
        try:
            send_all(self.sock, hello_line(client_label()))
            check_hello(self._read_final(0, None), self.path)
        except BaseException:
            self.close()
            raise
        finally:
            self.deadline = None

    def usable(self):
        """Whether this process may use the connection for a new request."""
        return not self.broken and self.pid == os.getpid()

    def close(self):
        """Close the socket: the broker drops all it held or awaited."""
        self.broken = True
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def forget(self):
        """In a forked child: close our copy of the descriptor without a
        word to the broker, so the parent's connection (and the locks it
        holds) stays the parent's, and only the parent's."""
        forget_socket(self)

    def _lost(self, why):
        """Mark the connection lost, and return the Lost to raise."""
        self.lost_why = why
        self.close()
        return Lost('lost the connection to locksd at %s: %s' %
                    (self.path, why))

    def send(self, line, fd=None):
        """Send one request line (bytes), with fd in SCM_RIGHTS if given."""
        if not self.usable():
            raise Lost('the connection to locksd at %s is unusable after '
                       'an earlier error' % self.path)
        try:
            send_all(self.sock, line, fd)
        except OSError as e:
            # The daemon may have said why it hung up (limit, permission).
            raise self._refusal(e)

    def _refusal(self, err):
        """A send failed: read the error line the daemon may have sent
        first, else say lost."""
        try:
            self.sock.settimeout(1)
            reply = self._read_final(None, None)
            if not reply.get('ok', True):
                self.close()
                return from_reply(reply)
        except Exception:
            pass
        return self._lost(os.strerror(err.errno) if err.errno else str(err))

    def _wait_readable(self):
        """Wait until the socket is readable or self.deadline passes;
        then close, and raise Unavailable."""
        deadline = self.deadline
        p = self._poll
        if p is None:
            p = self._poll = select.poll()
            p.register(self.sock.fileno(), select.POLLIN | select.POLLHUP |
                       select.POLLERR)
        while True:
            left = deadline.remaining()
            if left <= 0:
                break
            if p.poll(min(max(int(left * 1000 + 0.999), 1), 1 << 30)):
                return
        err = deadline.expired(self.path)
        self.close()
        raise err

    def _fill(self):
        """Read once more from the socket, waiting (until self.deadline
        if there is one)."""
        if len(self.buf) > MAX_REPLY:
            raise self._lost('reply longer than %d bytes' % MAX_REPLY)
        if self.deadline is not None:
            self._wait_readable()
        try:
            data = self.sock.recv(65536)
        except InterruptedError:
            return
        except OSError as e:
            raise self._lost(os.strerror(e.errno) if e.errno else str(e))
        if not data:
            raise self._lost('the daemon closed the connection')
        self.buf += data

    def _read_final(self, rid, on_event):
        """Read lines up to the final reply to request rid (None: any
        final reply) and return it; events for rid go to on_event."""
        while True:
            nl = self.buf.find(b'\n')
            while nl < 0:
                self._fill()
                nl = self.buf.find(b'\n')
            line, self.buf = self.buf[:nl], self.buf[nl + 1:]
            if not line.strip():
                continue
            obj = parse_line(line, self.path)
            oid = obj.get('id')
            if oid == rid:
                self.heard = True
            if 'ok' in obj:
                if rid is None or oid == rid:
                    return obj
                if oid is None:
                    # The daemon refusing us before it closes.
                    err = from_reply(obj)
                    self.close()
                    raise err
                continue
            if oid == rid and on_event is not None:
                on_event(obj)
            elif obj.get('event') == 'contended':
                self.pushed.append(obj)

    def deliver(self):
        """Hand the contended events read so far to on_push (called
        outside io, so the callback may use the connection's Mutex)."""
        pushed, self.pushed = self.pushed, []
        on_push = self.on_push
        for event in pushed:
            if on_push is not None:
                try:
                    on_push(event)
                except Exception:  # a callback's error is its own
                    sys.excepthook(*sys.exc_info())

    def request(self, line, rid, on_event=None, fd=None, deadline=None):
        """request_locked under io, then the contended events it read."""
        with self.io:
            reply = self.request_locked(line, rid, on_event, fd, deadline)
        self.deliver()
        return reply

    def request_locked(self, line, rid, on_event=None, fd=None, deadline=None):
        """Send a request line with id rid and return its final reply,
        waiting no later than deadline (a Deadline) if given; on_event
        may set self.deadline to None to wait on without one.
        self.heard says afterwards whether any line for rid came."""
        self.heard = False
        self.send(line, fd)
        self.deadline = deadline
        try:
            return self._read_final(rid, on_event)
        except BaseException as e:
            if not isinstance(e, (Lost, Unavailable)):
                # Interrupted or failed mid-wait: closing is the one sure
                # way to leave nothing granted to nobody.
                self.close()
            raise
        finally:
            self.deadline = None

    def new_id(self):
        """A fresh request id."""
        rid = self.next_id
        self.next_id = rid + 1
        return rid

    def drain(self):
        """drain_locked under io, then the contended events it read."""
        try:
            with self.io:
                self.drain_locked()
        finally:
            self.deliver()

    def drain_locked(self):
        """Read without waiting what came between requests (events are
        dropped, but contended ones kept for deliver); raise Lost if the
        daemon has gone."""
        if not self.usable():
            raise Lost('lost the connection to locksd at %s%s' %
                       (self.path, ': ' + self.lost_why
                        if self.lost_why else ''))
        while True:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                raise self._lost(os.strerror(e.errno) if e.errno else str(e))
            if not data:
                raise self._lost('the daemon closed the connection')
            self.buf += data
            if len(self.buf) > MAX_REPLY:
                raise self._lost('reply longer than %d bytes' % MAX_REPLY)
        # Keep a partial line; drop whole ones (pushed events), but for
        # "lost": the cluster lock this connection held is gone.
        nl = self.buf.rfind(b'\n')
        if nl >= 0:
            lines, self.buf = self.buf[:nl].split(b'\n'), self.buf[nl + 1:]
            for line in lines:
                if not line.strip():
                    continue
                event = parse_line(line, self.path).get('event')
                if event == 'lost':
                    raise self._lost(LEASE_LOST_WHY)
                if event == 'contended':
                    self.pushed.append(parse_line(line, self.path))


class Pool:
    """Idle connections of this process, by socket, so that a Mutex locked
    and released over and over (or a new Mutex per ``with``) pays no new
    connection each time.  A connection is taken for one lock and given
    back once that lock is released; a held lock keeps its own."""

    MAX_IDLE = 8

    def __init__(self):
        """An empty pool for this process."""
        self.lock = threading.Lock()
        self.idle = {}
        self.pid = os.getpid()

    def take(self, path, deadline=None):
        """An idle connection to path (None: the default), or a new one
        (made within deadline, a Deadline, if given)."""
        key = path if path is not None else ('default', socket_env(),
                                             system_socket(),
                                             os.geteuid())
        with self.lock:
            if self.pid != os.getpid():
                self._reset()
            conns = self.idle.get(key)
            while conns:
                conn = conns.pop()
                try:
                    conn.drain()
                except Exception:
                    conn.close()  # lost, or it spoke nonsense
                    continue
                conn.key = key
                return conn
        conn = Conn(path, deadline)
        conn.key = key
        return conn

    def give(self, conn):
        """Give back a connection that holds and awaits nothing."""
        if not conn.usable() or conn.buf:
            conn.close()
            return
        with self.lock:
            if self.pid != os.getpid():
                self._reset()
            conns = self.idle.setdefault(conn.key, [])
            if len(conns) < self.MAX_IDLE:
                conns.append(conn)
                return
        conn.close()

    def close_idle(self):
        """Close every idle connection (at exit, so none is left to the
        garbage collector with a ResourceWarning); a forked child's
        copies are only forgotten."""
        with self.lock:
            if self.pid != os.getpid():
                self._reset()
                return
            idle, self.idle = self.idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def _reset(self):
        """Forget the parent's idle connections (in a forked child)."""
        for conns in self.idle.values():
            for conn in conns:
                conn.forget()
        self.idle = {}
        self.pid = os.getpid()


pool = Pool()
atexit.register(pool.close_idle)


class Watcher:
    """One background thread per process that notices a broker going away
    under held locks with an ``on_lost`` callback, through epoll's
    EPOLLRDHUP, and a ``lost`` event for a cluster lock, through an
    edge-triggered EPOLLIN and a peek (so other pushed lines cost one
    wake-up each, and are left to the connection's owner)."""

    def __init__(self):
        """No thread until the first registration."""
        self.lock = threading.Lock()
        self.ep = None
        self.watched = {}
        self.pid = os.getpid()

    def watch(self, conn, fire):
        """Call fire() once, from the watcher thread, if conn is lost
        (fire may be None: conn.on_push alone is wanted).  With
        conn.on_push set, the thread also reads what comes and hands
        contended events to it."""
        with self.lock:
            if self.ep is None or self.pid != os.getpid():
                self.ep = select.epoll()
                self.watched = {}
                self.pid = os.getpid()
                threading.Thread(target=self._run, args=(self.ep,),
                                 name='locks-watcher', daemon=True).start()
            fd = conn.sock.fileno()
            self.watched[fd] = (conn, fire)
            self.ep.register(fd, select.EPOLLRDHUP | select.EPOLLHUP |
                             select.EPOLLERR | select.EPOLLIN |
                             select.EPOLLET)

    def unwatch(self, conn):
        """Stop watching conn (its lock was released)."""
        with self.lock:
            if self.ep is None or self.pid != os.getpid():
                return
            for fd, (c, _fire) in list(self.watched.items()):
                if c is conn:
                    del self.watched[fd]
                    try:
                        self.ep.unregister(fd)
                    except OSError:
                        pass

    def _run(self, ep):
        """The thread: wait for hang-ups and fire their callbacks."""
        while True:
            try:
                events = ep.poll()
            except InterruptedError:
                continue
            except (OSError, ValueError):
                return
            for fd, mask in events:
                why = self._why_lost(fd, mask)
                if why is not None:
                    self._fire(ep, fd, why)

    def _why_lost(self, fd, mask):
        """Why the watched connection on fd is lost, or None if the
        lines that woke us say nothing of it."""
        if mask & (select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR):
            return 'the daemon closed the connection'
        with self.lock:
            item = self.watched.get(fd)
        conn = item[0] if item is not None else None
        sock = conn.sock if conn is not None else None
        if sock is not None and conn.on_push is not None:
            return self._pump(conn)
        if sock is not None and peek_lost(sock, conn.path):
            return LEASE_LOST_WHY
        return None

    @staticmethod
    def _pump(conn):
        """Read what came on a held connection whose contended events
        are wanted, and hand them on; why it is lost, or None."""
        try:
            with conn.io:
                if conn.sock is None:
                    return None
                conn.drain_locked()
        except Lost:
            return conn.lost_why or 'the daemon closed the connection'
        except ProtocolError as e:
            return str(e)
        finally:
            conn.deliver()
        return None

    def _fire(self, ep, fd, why):
        """Stop watching fd, mark its connection lost, call back once."""
        with self.lock:
            item = self.watched.pop(fd, None)
            try:
                ep.unregister(fd)
            except (OSError, ValueError):
                pass
        if item is None:
            return
        conn, fire = item
        conn.broken = True
        conn.lost_why = why
        if fire is None:
            return
        try:
            fire()
        except Exception:  # a callback's error is its own
            sys.excepthook(*sys.exc_info())


watcher = Watcher()


def _before_fork():
    """Hold the pool's and watcher's locks across fork, so that a child
    never inherits them taken by a thread that does not exist there."""
    pool.lock.acquire()
    watcher.lock.acquire()


def _after_fork_in_parent():
    """Let go of the locks taken for the fork."""
    watcher.lock.release()
    pool.lock.release()


def _after_fork_in_child():
    """In the child: new locks, and every inherited connection closed
    without a word, so the child holds none of the parent's locks and a
    parent that dies lets them go at once."""
    pool.lock = threading.Lock()
    watcher.lock = threading.Lock()
    for conn in list(_all_conns):
        if conn.pid != os.getpid():
            conn.forget()
    pool.idle = {}
    pool.pid = os.getpid()
    if watcher.ep is not None:
        try:
            watcher.ep.close()
        except OSError:
            pass
    watcher.ep = None
    watcher.watched = {}
    watcher.pid = os.getpid()


os.register_at_fork(before=_before_fork,
                    after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
