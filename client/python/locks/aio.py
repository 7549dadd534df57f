"""locks.aio: the same Mutex for asyncio.

::

    import locks.aio

    async def main():
        async with locks.aio.Mutex('backup', timeout=5):
            ...
        m = locks.aio.Mutex('/var/lock/foo', callback=notify)
        await m.lock()
        ...
        await m.release()

``lock()`` never blocks the event loop: the connection is a non-blocking
socket read by a reader callback on the loop, and replies are matched to
requests by id.  Cancelling a waiting ``lock()`` (the task cancelled,
``asyncio.wait_for`` timing out) closes that Mutex's connection at once,
which makes the broker cancel the wait, or release the lock if it was
granted in the meantime: the lock is never left granted to nobody.  The
callback may be a plain function or a coroutine function.
"""

import array
import asyncio
import inspect
import os
import socket

from . import _conn
from . import _contended_info
from ._errors import Lost, NotHeld, ProtocolError, from_reply
from ._target import acquire_line, init_args

__all__ = ['Mutex']


async def _within(aw, deadline, path):
    """Await aw, within deadline if there is one: past it, aw is
    cancelled and the broker at path is Unavailable."""
    if deadline is None:
        return await aw
    try:
        return await asyncio.wait_for(aw, deadline.remaining())
    except asyncio.TimeoutError:
        raise deadline.expired(path) from None


async def _open_socket(loop, path, trust, deadline):
    """_conn.open_socket on the loop: the checks, then loop.sock_connect
    (within deadline), then the peer's check."""
    dir_owner = 0
    if trust != _conn._TRUST_CALLER:
        dir_owner = _conn._check_socket_dir(path, trust)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        try:
            await _within(loop.sock_connect(sock, path), deadline, path)
        except OSError as e:
            if isinstance(e, _conn.Unavailable):
                raise
            raise _conn.connect_failed(path, e) from None
        if trust != _conn._TRUST_CALLER:
            _conn._check_peer(sock, path, trust, dir_owner)
    except BaseException:
        sock.close()
        raise
    return sock


async def _connect_socket(loop, path, deadline):
    """_conn.connect_socket without blocking the loop: (socket, path)."""
    if path is not None:
        path = os.fspath(path)
        return (await _open_socket(loop, path, _conn._TRUST_CALLER,
                                   deadline), path)
    if _conn.socket_env() is not None or os.geteuid() == 0:
        path = _conn.default_socket()
        return (await _open_socket(loop, path, _conn._TRUST_CALLER,
                                   deadline), path)
    sys_path = _conn.system_socket()
    try:
        return (await _open_socket(loop, sys_path, _conn._TRUST_SYSTEM,
                                   deadline), sys_path)
    except _conn._ConnectFailed as e:
        sys_why = _conn.system_failed(e)
    _conn.check_system_absent(sys_path, sys_why)
    user_path = _conn.user_socket()
    try:
        return (await _open_socket(loop, user_path, _conn._TRUST_USER,
                                   deadline), user_path)
    except _conn._ConnectFailed as e:
        raise _conn.user_failed(e, sys_why)


class _AConn:
    """One non-blocking connection driven by the event loop."""

    def __init__(self, loop, sock, path):
        """Wrap a connected socket; start reading."""
        self.loop = loop
        self.sock = sock
        self.path = path
        self.pid = os.getpid()
        self.broken = False
        self.lost_why = None
        self.buf = b''
        self.next_id = 1
        self.pending = {}
        self.on_lost = None
        self.on_contended = None
        _conn._all_conns.add(self)
        loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    async def open(cls, path, deadline=None):
        """Connect (path None: the default socket, checked) and say hello,
        within deadline (a Deadline) if given."""
        loop = asyncio.get_running_loop()
        sock, path = await _connect_socket(loop, path, deadline)
        self = cls(loop, sock, path)
        try:
            reply = await _within(
                self.request(_conn.hello_line(_conn.client_label()), 0),
                deadline, path)
            _conn.check_hello(reply, path)
        except BaseException:
            self.close()
            raise
        return self

    def usable(self):
        """Whether this loop, in this process, may use the connection."""
        return (not self.broken and self.pid == os.getpid() and
                self.loop is asyncio.get_running_loop())

    def close(self, why=None):
        """Close the socket (the broker drops all it held or awaited) and
        cancel every request still waiting."""
        if self.sock is None:
            return
        self.broken = True
        if why is not None:
            self.lost_why = why
        try:
            self.loop.remove_reader(self.sock.fileno())
        except Exception:
            pass
        self.sock.close()
        self.sock = None
        pending, self.pending = self.pending, {}
        for fut, _on_event in pending.values():
            if not fut.done():
                if why is None:
                    fut.cancel()
                else:
                    fut.set_exception(Lost(
                        'lost the connection to locksd at %s: %s' %
                        (self.path, why)))

    def forget(self):
        """In a forked child: drop our copy of the descriptor silently."""
        _conn.forget_socket(self)

    def _readable(self):
        """The reader callback: take whole lines and hand them out."""
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._hangup(os.strerror(e.errno) if e.errno else str(e))
            return
        if not data:
            self._hangup('the daemon closed the connection')
            return
        self.buf += data
        if len(self.buf) > _conn.MAX_REPLY:
            self._hangup('reply longer than %d bytes' % _conn.MAX_REPLY)
            return
        while self.sock is not None:
            nl = self.buf.find(b'\n')
            if nl < 0:
                break
            line, self.buf = self.buf[:nl], self.buf[nl + 1:]
            if line.strip():
                self._line(line)

    def _line(self, line):
        """One reply or event line."""
        try:
            obj = _conn.parse_line(line, self.path)
        except ProtocolError as e:
            self._hangup(str(e))
            return
        rid = obj.get('id')
        if obj.get('event') == 'contended' and rid not in self.pending:
            if self.on_contended is not None:
                self.on_contended(obj)
            return
        if obj.get('event') == 'lost' and rid not in self.pending:
            # A held cluster lock is gone: as if the broker went away.
            self._hangup(_conn.LEASE_LOST_WHY)
            return
        if 'ok' not in obj:
            entry = self.pending.get(rid)
            if entry is not None and entry[1] is not None:
                entry[1](obj)
            return
        if rid is None and not obj.get('ok'):
            # The daemon refusing us before it closes: fail everyone.
            err = from_reply(obj)
            pending, self.pending = self.pending, {}
            for fut, _on_event in pending.values():
                if not fut.done():
                    fut.set_exception(err)
            self.close()
            return
        entry = self.pending.pop(rid, None)
        if entry is not None and not entry[0].done():
            entry[0].set_result(obj)

    def _hangup(self, why):
        """The broker went away: fail what waits and tell the holder."""
        on_lost, self.on_lost = self.on_lost, None
        on_contended, self.on_contended = self.on_contended, None
        self.close(why)
        if on_contended is not None:
            on_contended(None)
        if on_lost is not None:
            result = on_lost()
            if inspect.isawaitable(result):
                asyncio.ensure_future(result)

    async def _send(self, line, fd):
        """Send a whole line (fd in SCM_RIGHTS with its first bytes)."""
        ancillary = [] if fd is None else [
            (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [fd]))]
        while line:
            try:
                n = self.sock.sendmsg([line], ancillary,
                                      socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                writable = self.loop.create_future()
                fileno = self.sock.fileno()
                self.loop.add_writer(fileno, lambda: writable.done() or
                                     writable.set_result(None))
                try:
                    await writable
                finally:
                    self.loop.remove_writer(fileno)
                continue
            except OSError as e:
                self._hangup(os.strerror(e.errno) if e.errno else str(e))
                raise Lost('lost the connection to locksd at %s: %s' %
                           (self.path, self.lost_why))
            ancillary = []
            line = line[n:]

    async def request(self, line, rid, on_event=None, fd=None):
        """Send a request line with id rid and return its final reply."""
        if self.broken or self.sock is None:
            raise Lost('the connection to locksd at %s is unusable after '
                       'an earlier error' % self.path)
        fut = self.loop.create_future()
        self.pending[rid] = (fut, on_event)
        try:
            await self._send(line, fd)
        except BaseException:
            self.close()
            raise
        return await fut

    def new_id(self):
        """A fresh request id."""
        rid = self.next_id
        self.next_id = rid + 1
        return rid


class Mutex:
    """:class:`locks.Mutex` for asyncio: the same arguments, with
    ``await m.lock()``, ``await m.release()`` and ``async with``.

    Each aio Mutex keeps its own connection, on the loop that first used
    it, across lock and release.  ``callback``, ``on_lost`` and
    ``on_contended`` may be plain functions or coroutine functions, called
    from the event loop.  ``on_contended=True`` asks for contended events
    with no callback, for :meth:`contended` alone.  Calls of one Mutex are
    serialised by an asyncio lock.
    """

    def __init__(self, target, timeout=None, callback=None, *, shared=False,
                 owner=None, socket=None, on_lost=None, scope='local',
                 on_contended=None, detect_deadlock=False):
        """Make a Mutex; nothing is locked, or connected, until lock()."""
        init_args(self, target, timeout, callback, shared, owner, socket,
                  on_lost, scope, on_contended, detect_deadlock)
        self._contended = []        # events not yet awaited
        self._contended_waits = []  # futures of contended() calls
        self._alock = None
        self._aconn = None
        self._held = False
        self._token = None

    def __del__(self):
        """A dropped aio Mutex closes its connection (a held lock goes)."""
        conn = getattr(self, '_aconn', None)
        if conn is not None and conn.pid == os.getpid():
            try:
                conn.close()
            except Exception:
                pass

    def __repr__(self):
        """The target and whether it is held."""
        return '<locks.aio.Mutex %r%s>' % (
            self.path, ' locked token=%d' % self._token if self.locked
            else '')

    @property
    def locked(self):
        """Whether this Mutex, in this process, holds the lock now."""
        c = self._aconn
        return (self._held and c is not None and not c.broken and
                c.pid == os.getpid())

    @property
    def token(self):
        """The fencing token of the grant while held, else None."""
        return self._token if self.locked else None

    def _serial(self):
        """The asyncio lock serialising this Mutex's calls (made on first
        use, inside a running loop, as Python 3.9 needs)."""
        if self._alock is None:
            self._alock = asyncio.Lock()
        return self._alock

    def _drop(self):
        """Forget the held state; contended() waits end in NotHeld."""
        self._held = False
        self._token = None
        if self._aconn is not None:
            self._aconn.on_lost = None
            self._aconn.on_contended = None
        self._contended = []
        waits, self._contended_waits = self._contended_waits, []
        for fut in waits:
            if not fut.done():
                fut.set_exception(NotHeld('%s is no longer held' %
                                          self._target.wire))

    def _on_contended(self, event):
        """A contended event of the held lock (None: the lock is lost):
        to the callback, and to contended() or for the next one."""
        if event is None:
            waits, self._contended_waits = self._contended_waits, []
            for fut in waits:
                if not fut.done():
                    fut.set_exception(Lost('lost the lock on %s' %
                                           self._target.wire))
            return
        info = _contended_info(event)
        waits, self._contended_waits = self._contended_waits, []
        waits = [fut for fut in waits if not fut.done()]
        for fut in waits:
            fut.set_result(info)
        if not waits:
            self._contended = [info]    # only the latest is kept
        if callable(self.on_contended):
            result = self.on_contended(info)
            if inspect.isawaitable(result):
                asyncio.ensure_future(result)

    async def contended(self):
        """Wait until someone waits behind the held lock; return the
        :class:`locks.Contended` of the broker's event (one that came
        since the last call, at once).

        The Mutex must have asked, with ``on_contended``.  Raises
        ``RuntimeError`` if it did not, :class:`locks.NotHeld` if the
        lock is not held (or is released meanwhile), and :class:`Lost`
        if the broker goes away.
        """
        if self.on_contended is None:
            raise RuntimeError('contended() needs a Mutex made with '
                               'on_contended (True, or a callback)')
        if not self.locked:
            raise NotHeld('%s is not held' % self._target.wire)
        if self._contended:
            return self._contended.pop()
        fut = asyncio.get_running_loop().create_future()
        self._contended_waits.append(fut)
        return await fut

    def _lost(self):
        """The connection was lost while held: forget it, raise Lost."""
        c = self._aconn
        self._drop()
        self._aconn = None
        c.close()
        raise Lost('lost the lock on %s: the connection to locksd at %s '
                   'is gone%s' % (self._target.wire, c.path,
                                  ' (%s)' % c.lost_why if c.lost_why
                                  else ''))

    def _reset_if_forked(self):
        """A forked copy holds nothing, and may not use the parent's
        connection."""
        if self._aconn is not None and self._aconn.pid != os.getpid():
            self._aconn = None
            self._held = False
            self._token = None

    async def lock(self):
        """Take the lock, as :meth:`locks.Mutex.lock` does, without
        blocking the event loop.  Returns the fencing token."""
        self._reset_if_forked()
        async with self._serial():
            if self._held:
                if self._aconn.broken:
                    self._lost()
                return self._token
            conn = self._aconn
            deadline = _conn.Deadline.for_timeout(self.timeout)
            if conn is None or not conn.usable():
                if conn is not None:
                    conn.close()
                self._aconn = None
                conn = self._aconn = await _AConn.open(self.socket,
                                                       deadline)
            target = self._target
            fd = target.open() if target.is_path else None
            # Before the grant: an event may come in the same read.
            self._contended = []
            if self.on_contended is not None:
                conn.on_contended = self._on_contended
            try:
                reply = await self._request(conn, fd, deadline)
            except BaseException:
                # Cancelled or failed mid-wait: closing the connection
                # cancels the wait, or frees a grant that came meanwhile.
                conn.close()
                self._aconn = None
                raise
            finally:
                if fd is not None:
                    os.close(fd)
            if not reply.get('ok'):
                conn.on_contended = None
                raise from_reply(reply, '%s (locksd at %s)' %
                                 (target.wire, conn.path))
            token = reply.get('token')
            if not isinstance(token, int) or token <= 0:
                conn.close()
                self._aconn = None
                raise ProtocolError('the grant of %s from locksd at %s has '
                                    'no token' % (target.wire, conn.path))
            self._held = True
            self._token = token
            conn.on_lost = self.on_lost
            return token

    async def _request(self, conn, fd, deadline):
        """One acquire; the blocking event calls the callback, once.
        Until the reply (or, with a callback, the blocking event) the
        wait is bounded by deadline, if given."""
        rid = conn.new_id()
        callback = self.callback
        blocking = None
        on_event = None
        if callback is not None:
            blocking = conn.loop.create_future()

            def on_event(event):
                if event.get('event') == 'blocking' and not blocking.done():
                    blocking.set_result(None)

        # The task is the node: its Mutexes hold on connections apart.
        group = ('task:%d' % id(asyncio.current_task())
                 if self.detect_deadlock else None)
        line = acquire_line(self._target, rid, self.timeout, callback,
                            self.shared, self.owner,
                            self.on_contended is not None, group)
        reply = asyncio.ensure_future(conn.request(line, rid, on_event, fd))
        try:
            if blocking is not None:
                await asyncio.wait({reply, blocking},
                                   timeout=None if deadline is None
                                   else deadline.remaining(),
                                   return_when=asyncio.FIRST_COMPLETED)
                if not reply.done() and not blocking.done():
                    raise deadline.expired(conn.path)
                if blocking.done():
                    result = callback()
                    if inspect.isawaitable(result):
                        await result
                return await reply
            return await _within(reply, deadline, conn.path)
        finally:
            if not reply.done():
                reply.cancel()
            if blocking is not None and not blocking.done():
                blocking.cancel()

    async def release(self):
        """Let the lock go; a no-op if this Mutex does not hold it.
        Raises :class:`Lost` if the broker went away while it was held."""
        self._reset_if_forked()
        async with self._serial():
            if not self._held:
                return
            conn = self._aconn
            if conn.broken:
                self._lost()
            conn.on_lost = None
            conn.on_contended = None
            rid = conn.new_id()
            try:
                reply = await conn.request(self._target.release_line(rid),
                                           rid)
            except Lost:
                self._lost()
            except BaseException:
                # Cancelled mid-release: closing releases for certain.
                self._drop()
                self._aconn = None
                conn.close()
                raise
            self._drop()
            if not reply.get('ok'):
                raise from_reply(reply, '%s (locksd at %s)' %
                                 (self._target.wire, conn.path))

    def check(self):
        """True while held, False if this Mutex holds nothing; raises
        :class:`Lost` (once) if the broker went away while held."""
        self._reset_if_forked()
        if not self._held:
            return False
        if self._aconn.broken:
            self._lost()
        return True

    async def close(self):
        """Release the lock if held and close the connection."""
        try:
            await self.release()
        finally:
            if self._aconn is not None:
                self._aconn.close()
                self._aconn = None

    async def __aenter__(self):
        """``async with`` takes the lock."""
        await self.lock()
        return self

    async def __aexit__(self, exc_type, exc, tb):
        """Leaving the block releases it."""
        await self.release()
