"""locks: FIFO locks from the locksd broker, with the seed library's API.

The seed library ``locks`` (``pip install locks``) gave Python one class::

    from locks import Mutex
    with Mutex('/tmp/file.lock'):                 # wait forever
        ...
    with Mutex('/tmp/file.lock', timeout=0.5):    # BlockingIOError after 0.5 s
        ...
    with Mutex('/tmp/file.lock', callback=cb):    # try once; if taken, cb()
        ...                                       # once, then wait forever

This package keeps every promise of that API, and takes its locks through
the ``locksd`` broker instead of polling ``flock(LOCK_NB)``: waiters are
served first come, first served, ``locks.list()`` says who holds what,
every grant carries a fencing token, and the lock file is never unlinked.

- A target holding a ``/`` (or bytes, or an ``os.PathLike``) is a path:
  the client opens it as ``flock(1)`` does and hands the descriptor to the
  broker, which holds the real ``flock(2)`` on it and queues it FIFO with
  every other client of that file (the ``locks`` CLI, liblocks).
- A bare word is a broker name, the file ``<lock-dir>/NAME``.

The broker is found as liblocks finds it: ``socket=``, else
``$LOCKS_SOCKET``, else the system broker (for a user other than root,
when one answers there), else the per-user one.  See the README's "Which
socket" for the checks made before talking to a default socket.

Each held (or awaited) lock uses one connection of its own; a connection
is kept in a per-process pool once its lock is released, so locking over
and over costs no new connection.  A forked child never uses or keeps
its parent's connections.
"""

import dataclasses
import json
import os
import threading
import typing

from . import _conn
from ._errors import (AlreadyHeld, BadRequest, Cancelled,
                      ClusterUnavailable, Deadlock, Error, Internal,
                      InvalidName, LimitReached, Lost, NotHeld,
                      PermissionDenied, ProtocolError, Timeout, Unavailable,
                      Unsupported, Untrusted, from_reply)
from ._target import (Target, acquire_line, check_seconds, convert_line,
                      init_args)

# Not 'list': a star-import would shadow the builtin (locks.list works).
__all__ = [
    'Mutex', 'status', 'default_socket', 'Holder', 'Waiter', 'Contended',
    'LockInfo', 'Status', 'Error', 'InvalidName', 'BadRequest', 'Timeout',
    'Cancelled', 'AlreadyHeld', 'NotHeld', 'LimitReached',
    'PermissionDenied', 'Unsupported', 'Internal', 'ProtocolError',
    'Unavailable', 'Untrusted', 'Lost', 'ClusterUnavailable', 'Deadlock',
]
__title__ = 'locks'
__version__ = '0.2.0'
__url__ = 'https://github.com/rossmacarthur/locks'
__license__ = 'MIT'
__description__ = 'FIFO locks with fencing tokens from the locksd broker'


def default_socket():
    """The socket path a default connection names first, as
    ``locks_default_socket()`` does: ``$LOCKS_SOCKET``, else the system
    socket for root, else the per-user one."""
    return _conn.default_socket()


class Mutex:
    """One lock on a broker name or a file, held through locksd.

    Args:
        target: a path (a str holding ``/``, bytes, or ``os.PathLike``) or
            a broker name (a bare word of ``[A-Za-z0-9._:@+-]``).
        timeout (float or None): how long ``lock()`` waits.  ``None``
            waits forever; ``0`` tries once.  Once it passes, ``lock()``
            raises ``BlockingIOError`` (``errno.EAGAIN``; the class is
            :class:`locks.Timeout`), unless there is a callback.
        callback (callable or None): called once, with no arguments, when
            the lock is still taken after ``timeout`` (at once if there is
            no timeout); ``lock()`` then waits forever.
        shared (bool): a shared lock instead of an exclusive one.
        owner (str or None): free text shown in ``locks list``.
        socket (str or None): the broker's socket; by default it is found
            as liblocks finds it.
        on_lost (callable or None): called once, with no arguments, from a
            background thread if the broker goes away while this Mutex
            holds the lock.
        on_contended (callable or None): while this Mutex holds the
            lock, called with a :class:`Contended` when a request queues
            behind it, and again as that queue changes, at most once a
            second; from a background thread (or from ``lock()`` or
            ``check()``, whichever read the broker's event).  Local locks
            only (``ValueError`` for a cluster one).
        detect_deadlock (bool): if waiting for the lock would close a
            cycle of connections to the broker waiting for each other
            (this one holds a lock another waits for, which holds or
            awaits the one this waits for, and so on), ``lock()`` raises
            :class:`Deadlock` at once instead of waiting forever, naming
            the cycle's pids and locks; of the waits in the cycle that
            asked, the youngest fails.  The calling thread is the graph's
            node (``locks.aio``: the task): its Mutexes that ask are one,
            though each has a connection of its own; a Mutex that does not
            ask is a node of its own.  Local locks only (``ValueError``
            for a cluster one).
        scope (str): ``'local'`` (this machine's broker) or ``'cluster'``
            (the etcd cluster of a locksd started with ``--etcd``, across
            machines; names only).  A cluster lock whose lease lapses is
            lost as if the broker went away: ``on_lost`` is called, and
            ``check()`` and ``release()`` raise :class:`Lost`.

    Attributes:
        path: the target as given (the seed's name for it).
        timeout, callback, shared, owner, socket, on_lost, on_contended,
            detect_deadlock, scope: as given.
        token (int or None): the fencing token while held, else ``None``.
        locked (bool): whether this Mutex, in this process, holds the lock.

    One Mutex serialises its own calls; any number of them may be used
    from any threads, and two on one target exclude each other even in
    one thread.  ``lock()`` while held and ``release()`` while not are
    no-ops.  A forked child's copy holds nothing: its ``release()`` leaves
    the parent's lock alone and its ``lock()`` takes one of its own.  A
    Mutex pickles (for multiprocessing's spawn) as an unheld copy.
    """

    def __init__(self, target, timeout=None, callback=None, *, shared=False,
                 owner=None, socket=None, on_lost=None, scope='local',
                 on_contended=None, detect_deadlock=False):
        """Make a Mutex; nothing is locked, or connected, until lock()."""
        if on_contended is not None and not callable(on_contended):
            raise TypeError('on_contended must be callable')
        init_args(self, target, timeout, callback, shared, owner, socket,
                  on_lost, scope, on_contended, detect_deadlock)
        self._mu = threading.RLock()
        self._mu_pid = os.getpid()
        self._busy = False
        self._conn = None
        self._token = None
        self._pid = None

    def __del__(self):
        """A held Mutex that is dropped closes its connection, which
        releases the lock (as closing the seed's descriptor did)."""
        conn = getattr(self, '_conn', None)
        if conn is not None and self._pid == os.getpid():
            try:
                _conn.watcher.unwatch(conn)
                conn.close()
            except Exception:
                pass

    def __repr__(self):
        """The target and whether it is held."""
        return '<locks.Mutex %r %s%s>' % (
            self.path, 'shared' if self.shared else 'exclusive',
            ' locked token=%d' % self._token if self.locked else '')

    def __getstate__(self):
        """Pickle the arguments only: a copy never holds the lock."""
        return {'target': self.path, 'timeout': self.timeout,
                'callback': self.callback, 'shared': self.shared,
                'owner': self.owner, 'socket': self.socket,
                'on_lost': self.on_lost, 'scope': self.scope,
                'on_contended': self.on_contended,
                'detect_deadlock': self.detect_deadlock}

    def __setstate__(self, state):
        """Make an unheld Mutex from pickled arguments."""
        target = state.pop('target')
        timeout = state.pop('timeout')
        callback = state.pop('callback')
        self.__init__(target, timeout, callback, **state)

    @property
    def locked(self):
        """Whether this Mutex, in this process, holds the lock now (as far
        as is known without a system call: ``check()`` asks)."""
        conn = self._conn
        return (conn is not None and self._pid == os.getpid() and
                not conn.broken)

    @property
    def token(self):
        """The fencing token of the grant while held, else None."""
        return self._token if self.locked else None

    def _forget(self):
        """Drop the held state (the connection is someone else's now)."""
        self._conn = None
        self._token = None
        self._pid = None

    def _enter(self):
        """Take the Mutex's own lock for one call."""
        if self._mu_pid != os.getpid():
            # Forked while another thread was inside a call, the child's
            # copy of the lock may be held by a thread it does not have.
            self._mu = threading.RLock()
            self._mu_pid = os.getpid()
            self._busy = False
        self._mu.acquire()
        if self._busy:
            self._mu.release()
            raise RuntimeError('a Mutex was used from inside its own '
                               'callback')
        if self._conn is not None and self._pid != os.getpid():
            # A forked copy: the parent's connection is not ours.
            self._forget()

    def _lost(self):
        """The connection was lost while held: forget it, raise Lost."""
        conn = self._conn
        self._forget()
        _conn.watcher.unwatch(conn)
        conn.close()
        raise Lost('lost the lock on %s: the connection to locksd at %s '
                   'is gone%s' % (self._target.wire, conn.path,
                                  ' (%s)' % conn.lost_why
                                  if conn.lost_why else ''))

    def _still_held(self):
        """Read what the broker sent the held connection without blocking;
        raise Lost if it is gone."""
        if self._conn.broken:
            self._lost()
        try:
            self._conn.drain()
        except Lost:
            self._lost()

    def lock(self):
        """Take the lock, waiting as ``timeout`` and ``callback`` say.

        A no-op if this Mutex holds it already (but :class:`Lost` if the
        broker went away meanwhile).  Raises ``BlockingIOError``
        (``errno.EAGAIN``) when the timeout passes with no callback,
        :class:`Unavailable` when no broker answers, an ``OSError`` naming
        the file when a path cannot be opened, and :class:`Error` for
        what the broker refuses.  Returns the fencing token.
        """
        self._enter()
        try:
            if self._conn is not None:
                self._still_held()
                return self._token
            return self._acquire()
        finally:
            self._mu.release()

    def _acquire(self):
        """Send the acquire on a pooled connection and wait for the grant;
        an idle connection found dead before the broker said a word about
        this acquire is replaced once.  With a timeout, a broker that does
        not answer within it plus ``_conn.DEADLINE_GRACE`` is Unavailable.
        """
        target = self._target
        deadline = _conn.Deadline.for_timeout(self.timeout)
        called = []     # across both attempts: the callback runs once
        fd = target.open() if target.is_path else None
        try:
            for attempt in (0, 1):
                conn = _conn.pool.take(self.socket, deadline)
                reused = conn.next_id > 1
                try:
                    reply = self._request(conn, fd, deadline, called)
                    break
                except Lost:
                    # Only a connection that died unheard is retried: once
                    # an event came, the broker had the request (and the
                    # callback may have run).
                    if attempt or not reused or conn.heard or called:
                        raise
        finally:
            if fd is not None:
                os.close(fd)
        if not reply.get('ok'):
            _conn.pool.give(conn)
            raise from_reply(reply, '%s (locksd at %s)' % (target.wire,
                                                           conn.path))
        token = reply.get('token')
        if not isinstance(token, int) or token <= 0:
            conn.close()
            raise ProtocolError('the grant of %s from locksd at %s has no '
                                'token' % (target.wire, conn.path))
        self._conn = conn
        self._token = token
        self._pid = os.getpid()
        if self.on_contended is not None:
            on_contended = self.on_contended
            conn.on_push = lambda event: on_contended(_contended_info(event))
        if self.on_lost is not None or self.on_contended is not None:
            _conn.watcher.watch(conn, self.on_lost)
        if conn.on_push is not None and b'\n' in conn.buf:
            # Read along with the grant: no wake-up will come for it.
            conn.drain()
        return token

    def _request(self, conn, fd, deadline, called):
        """One acquire on conn; the blocking event calls the callback,
        unless called (a list shared by the attempts) says it ran, and
        lifts the deadline: the wait after it is forever."""
        rid = conn.new_id()
        callback = self.callback

        def on_event(event):
            if event.get('event') == 'blocking' and callback is not None:
                conn.deadline = None
                if called:
                    return
                called.append(True)
                self._busy = True
                try:
                    callback()
                finally:
                    self._busy = False

        # The thread is the node: its Mutexes hold on connections apart.
        group = ('thread:%d' % threading.get_ident()
                 if self.detect_deadlock else None)
        line = acquire_line(self._target, rid, self.timeout, callback,
                            self.shared, self.owner,
                            self.on_contended is not None, group)
        return conn.request(line, rid, on_event, fd, deadline)

    def release(self):
        """Let the lock go; a no-op if this Mutex does not hold it.

        Raises :class:`Lost` if the broker went away while it was held
        (the lock was gone before this call).
        """
        self._enter()
        try:
            conn = self._conn
            if conn is None:
                return
            if conn.broken:
                self._lost()
            _conn.watcher.unwatch(conn)
            conn.on_push = None
            rid = conn.new_id()
            try:
                reply = conn.request(self._target.release_line(rid), rid)
            except Lost:
                self._lost()
            except BaseException:
                # Interrupted, the connection was closed, which let the
                # lock go: hold nothing, so the next lock() starts anew.
                self._forget()
                raise
            self._forget()
            _conn.pool.give(conn)
            if not reply.get('ok'):
                raise from_reply(reply, '%s (locksd at %s)' % (
                    self._target.wire, conn.path))
        finally:
            self._mu.release()

    def convert(self, shared, timeout=None):
        """Convert the held lock to shared (True) or exclusive (False),
        atomically: it stays held all along, and no process outside the
        broker gets in on the way.

        A downgrade is at once and keeps the token, and lets in the shared
        requests at the head of the queue.  An upgrade holds shared while
        it waits for the other holders to let go, ahead of every waiter,
        at most timeout seconds (None: forever; 0: not at all), then holds
        exclusive with a new, higher token.  Returns the token held now;
        ``shared`` says the mode held from then on (and asked by a later
        ``lock()``).

        Raises :class:`NotHeld` if this Mutex holds nothing;
        ``BlockingIOError`` (:class:`Timeout`) when the timeout passes
        and :class:`Deadlock` at once when another holder's upgrade waits
        already, the lock still held shared either way;
        :class:`Unsupported` for a cluster lock; and :class:`Lost` if the
        broker went away, or the upgrade lost the lock to an outside
        flock (this Mutex then holds nothing).
        """
        timeout = check_seconds('timeout', timeout)
        self._enter()
        try:
            if self._conn is None:
                raise NotHeld('convert %s: this Mutex does not hold it' %
                              self._target.wire)
            self._still_held()
            conn = self._conn
            rid = conn.new_id()
            line = convert_line(self._target, rid, bool(shared), timeout)
            try:
                reply = conn.request(line, rid, deadline=(
                    _conn.Deadline.for_timeout(timeout)))
            except Lost:
                self._lost()
            except BaseException:
                # Interrupted, the connection was closed, which let the
                # lock go.
                self._forget()
                raise
            about = '%s (locksd at %s)' % (self._target.wire, conn.path)
            if reply.get('ok'):
                self._token = reply.get('token', self._token)
                self.shared = bool(shared)
                return self._token
            err = from_reply(reply, about)
            if err.code == 'cancelled':
                self._forget()
                _conn.watcher.unwatch(conn)
                conn.close()
                raise Lost('lost the lock on %s: %s' % (about, err))
            raise err
        finally:
            self._mu.release()

    def check(self):
        """Whether the lock is held, checked without blocking.

        Returns True while held, False if this Mutex holds nothing, and
        raises :class:`Lost` (once) if the broker went away while held.
        """
        self._enter()
        try:
            if self._conn is None:
                return False
            self._still_held()
            return True
        finally:
            self._mu.release()

    def __enter__(self):
        """``with Mutex(...):`` takes the lock."""
        self.lock()
        return self

    def __exit__(self, exc_type, exc, tb):
        """Leaving the ``with`` block releases it."""
        self.release()


@dataclasses.dataclass
class Waiter:
    """A queued request for a lock; ``since`` is when it began waiting."""

    pid: typing.Optional[int] = None
    uid: typing.Optional[int] = None
    gid: typing.Optional[int] = None
    client: typing.Optional[str] = None
    owner: typing.Optional[str] = None
    mode: typing.Optional[str] = None
    since: typing.Optional[float] = None


@dataclasses.dataclass
class Holder(Waiter):
    """A holder of a lock, as ``list`` shows it (PROTOCOL.md, *list*).

    A broker client has pid, uid, gid (from ``SO_PEERCRED``), client,
    owner, mode, since (unix time, when granted) and token.  A process
    outside the broker that flocks the file has ``external`` True, pid,
    mode and command.
    """

    token: typing.Optional[int] = None
    external: bool = False
    command: typing.Optional[str] = None


@dataclasses.dataclass
class Contended:
    """A ``contended`` event (PROTOCOL.md, *acquire*): someone waits
    behind a held lock.  ``name`` is the lock as acquired, ``waiters`` how
    many wait, ``first`` the first of them as ``list`` shows it."""

    name: str
    waiters: int
    first: Waiter


def _contended_info(event):
    """The Contended of one event."""
    first = event.get('first')
    return Contended(name=event.get('name'), waiters=event.get('waiters'),
                     first=_pick(Waiter, first if isinstance(first, dict)
                                 else {}))


@dataclasses.dataclass
class LockInfo:
    """One lock with holders or waiters: its name (a path lock's is the
    path the broker sees), holders in grant order, waiters in queue
    order."""

    name: str
    holders: typing.List[Holder]
    waiters: typing.List[Waiter]


@dataclasses.dataclass
class Status:
    """The broker's counters (PROTOCOL.md, *status*)."""

    version: str
    pid: int
    uptime: float
    connections: int
    locks_held: int
    waiters: int
    acquired_total: int
    metrics: typing.Optional[dict] = None
    """The metrics object, with ``status(metrics=True)`` only."""


def _pick(cls, obj):
    """Build a dataclass from the fields of obj it knows (others are
    ignored, as the protocol asks of clients)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in obj.items() if k in names})


def _decode_lock(obj):
    """One entry of a list reply."""
    return LockInfo(name=obj.get('name'),
                    holders=[_pick(Holder, h) for h in obj.get('holders',
                                                               ())],
                    waiters=[_pick(Waiter, w) for w in obj.get('waiters',
                                                               ())])


def _transact(conn, body, fd=None):
    """Send a request body (JSON without id) and return its final reply;
    a failure gives the connection back to the pool first."""
    rid = conn.new_id()
    line = ('{"id":%d,%s}\n' % (rid, json.dumps(body)[1:-1])).encode()
    reply = conn.request(line, rid, fd=fd)
    if not reply.get('ok'):
        _conn.pool.give(conn)
        raise from_reply(reply)
    return reply


def list(target=None, all=False, *, socket=None):  # noqa: A001
    """The locks with holders or waiters, as a list of :class:`LockInfo`.

    Args:
        target: only this name or path (a path is opened, never created;
            a file that does not exist is a lock nobody holds).
        all (bool): also files held only outside the broker.
        socket: the broker's socket, found as usual by default.

    Every page of the broker's reply is fetched and joined.
    """
    t = Target(target) if target is not None else None
    fd = None
    if t is not None and t.is_path:
        try:
            fd = t.open(create=False)
        except FileNotFoundError:
            return []
    try:
        conn = _conn.pool.take(socket)
        locks, after = [], None
        while True:
            body = {'op': 'list'}
            if t is not None:
                body['name'] = t.wire
            if all:
                body['all'] = True
            if after is not None:
                body['after'] = after
            reply = _transact(conn, body, fd)
            page = reply.get('locks')
            if not isinstance(page, type([])):
                conn.close()
                raise ProtocolError('malformed list reply from locksd at %s'
                                    % conn.path)
            locks.extend(_decode_lock(e) for e in page)
            if not reply.get('more') or not page:
                break
            after = page[-1].get('name')
        _conn.pool.give(conn)
        return locks
    finally:
        if fd is not None:
            os.close(fd)


def status(*, socket=None, metrics=False):
    """The broker's counters, as a :class:`Status`.

    With *metrics* true, its ``metrics`` is the daemon's metrics object
    (PROTOCOL.md, *status*), a dict; a daemon too old to have one raises
    :class:`Unsupported`.
    """
    request = {'op': 'status'}
    if metrics:
        request['metrics'] = True
    conn = _conn.pool.take(socket)
    reply = _transact(conn, request)
    if metrics and not isinstance(reply.get('metrics'), dict):
        _conn.pool.give(conn)
        raise Unsupported('this locksd reports no metrics: it is older '
                          'than the status request\'s "metrics" field')
    _conn.pool.give(conn)
    return _pick(Status, reply)
