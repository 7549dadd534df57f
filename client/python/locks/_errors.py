"""The exceptions of the locks package.

Every failure the broker reports is a :class:`Error` whose ``code`` is
the protocol's error code (``protocol/PROTOCOL.md``, *Errors*).  Each code
has its own subclass, which also derives from the built-in exception a
Python caller would expect: an ``invalid_name`` is a :class:`ValueError`,
a ``timeout`` is a :class:`BlockingIOError` with ``errno.EAGAIN`` (as the
seed library raised), a ``permission_denied`` is a
:class:`PermissionError`.

Failing to reach a broker is :class:`Unavailable` (a
:class:`ConnectionError`), and losing it while a lock is held is
:class:`Lost` (a :class:`ConnectionError` too).
"""

import errno

__all__ = [
    'Error', 'InvalidName', 'BadRequest', 'Timeout', 'Cancelled',
    'AlreadyHeld', 'NotHeld', 'LimitReached', 'PermissionDenied',
    'Unsupported', 'Internal', 'ProtocolError', 'Unavailable', 'Untrusted',
    'Lost', 'ClusterUnavailable',
]


class Error(Exception):
    """An error the broker reported.

    Attributes:
        code (str): the protocol's error code, such as ``"invalid_name"``.
        message (str): the broker's explanation, for people.
    """

    code = 'error'

    def __init__(self, message, code=None):
        """Make the error from the broker's message (and code)."""
        Exception.__init__(self, message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self):
        """The message, prefixed with the code."""
        return '%s: %s' % (self.code, self.message)


class InvalidName(Error, ValueError):
    """``invalid_name``: the name breaks the protocol's rules."""

    code = 'invalid_name'


class BadRequest(Error, ValueError):
    """``bad_request``: a field of the request is missing or out of range."""

    code = 'bad_request'


class Timeout(Error, BlockingIOError):
    """``timeout``: the lock stayed taken for the whole timeout.

    It is a :class:`BlockingIOError` with ``errno`` set to
    ``errno.EAGAIN``, as the seed library's ``Mutex.lock()`` raised.
    """

    code = 'timeout'

    def __init__(self, message, code=None):
        """Make the error; ``errno`` is ``EAGAIN``."""
        BlockingIOError.__init__(self, errno.EAGAIN, message)
        self.message = message

    def __str__(self):
        """The message, prefixed with the code."""
        return '%s: %s' % (self.code, self.message)


class Cancelled(Error):
    """``cancelled``: the wait was cancelled by a release of the same name."""

    code = 'cancelled'


class AlreadyHeld(Error, RuntimeError):
    """``already_held``: this connection holds or awaits that name already."""

    code = 'already_held'


class NotHeld(Error, RuntimeError):
    """``not_held``: a release of a name the connection does not hold."""

    code = 'not_held'


class LimitReached(Error, OSError):
    """``limit``: one of the broker's resource bounds was hit."""

    code = 'limit'


class PermissionDenied(Error, PermissionError):
    """``permission_denied``: this user may not use the broker."""

    code = 'permission_denied'


class Unsupported(Error, OSError):
    """``unsupported``: a file the broker cannot lock correctly (NFS, a FIFO)."""

    code = 'unsupported'


class Internal(Error, OSError):
    """``internal``: the broker could not open or lock a lock file."""

    code = 'internal'


class Deadlock(Error):
    """``deadlock``: the request would wait forever, as when another
    holder's upgrade already waits (the lock is still held as before)."""

    code = 'deadlock'


class ProtocolError(Error):
    """The broker said something this client does not understand."""

    code = 'protocol'


_BY_CODE = {cls.code: cls for cls in (
    InvalidName, BadRequest, Timeout, Cancelled, AlreadyHeld, NotHeld,
    LimitReached, PermissionDenied, Unsupported, Internal, Deadlock)}


def from_reply(reply, about=None):
    """Turn a failed final reply (a dict) into the matching :class:`Error`;
    about (say, the lock and socket) goes before the broker's message."""
    err = reply.get('error')
    if not isinstance(err, dict):
        return ProtocolError('the broker failed a request without saying why')
    code = str(err.get('code', 'error'))
    message = str(err.get('message', ''))
    if about:
        message = '%s: %s' % (about, message)
    return _BY_CODE.get(code, Error)(message, code)


class Unavailable(ConnectionError):
    """No broker answers; the message names every socket path tried."""


class ClusterUnavailable(Error, Unavailable):
    """``unavailable``: the broker cannot reach etcd for a cluster lock,
    or lost its etcd lease while the request waited."""

    code = 'unavailable'


_BY_CODE[ClusterUnavailable.code] = ClusterUnavailable


class Untrusted(Unavailable):
    """A broker's socket failed the checks made before talking to it.

    The message names the directory or socket and why: a directory that
    others may write to, a symbolic link, or a daemon run by a user who
    could not have been given that socket.
    """


class Lost(ConnectionError):
    """The broker went away while this client held a lock.

    Whatever the connection held is gone: other processes may hold it now.
    """
