"""What a Mutex locks: a broker name, or a path opened as flock(1) opens
it, and the request lines for it.  Shared by :mod:`locks` and
:mod:`locks.aio`; nothing here is public.
"""

import json
import math
import os
import re

from ._errors import InvalidName

MAX_NAME = 200
MAX_PATH = 4096
MAX_LABEL = 256
MAX_SECONDS = 1e9
NEVER = 'never'

_NAME_RE = re.compile(r'[A-Za-z0-9._:@+-]{1,200}\Z')


def path_spelling(raw):
    """A path (bytes) as it goes on the wire, where strings are UTF-8:
    bytes that are not become '?', the same way every time, as liblocks
    spells it, so a release names what the acquire did."""
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError:
        return bytes(c if c < 0x80 else 0x3f for c in raw).decode('ascii')


def name_valid(name):
    """Whether name follows the protocol's name rules."""
    return (isinstance(name, str) and not name.startswith('.') and
            _NAME_RE.match(name) is not None)


class Target:
    """A lock target, checked here so a bad one costs no round trip.

    Attributes:
        given: the target as the caller gave it.
        is_path (bool): whether it is a path (a str holding '/', bytes, or
            an os.PathLike; a relative one without '/' gets './').
        raw (bytes): the path to open, for a path.
        wire (str): the name or path spelling the requests carry.
    """

    def __init__(self, target, scope='local'):
        """Check target (and scope) and work out how it goes on the
        wire."""
        if scope not in ('local', 'cluster'):
            raise ValueError("scope must be 'local' or 'cluster', not %r" %
                             (scope,))
        self.scope = scope
        self.given = target
        if isinstance(target, str) and '/' not in target:
            self.is_path = False
            if not name_valid(target):
                raise InvalidName(
                    'name must be 1 to %d bytes of [A-Za-z0-9._:@+-], not '
                    'starting with \'.\', or a path (with a \'/\'): %r' %
                    (MAX_NAME, target))
            self.raw = None
            self.wire = target
        elif isinstance(target, (str, bytes)) or hasattr(target,
                                                         '__fspath__'):
            self.is_path = True
            raw = os.fsencode(target)
            if b'/' not in raw:
                raw = b'./' + raw
            if len(raw) > MAX_PATH or b'\0' in raw or not raw:
                raise InvalidName('path must be 1 to %d bytes with no NUL: '
                                  '%r' % (MAX_PATH, target))
            self.raw = raw
            self.wire = path_spelling(raw)
        else:
            raise TypeError('a lock target is a name (str) or a path (str '
                            'with a /, bytes or os.PathLike), not %s' %
                            type(target).__name__)
        if scope == 'cluster' and self.is_path:
            raise InvalidName('a cluster lock takes a name, not a path: %r'
                              % (target,))
        self.wire_json = json.dumps(self.wire, ensure_ascii=False)
        # Only a cluster request says its scope: local is the default.
        if scope == 'cluster':
            self.wire_json += ',"scope":"cluster"'


    def open(self, create=True):
        """Open the path as flock(1) does: read-only, created 0666 (less
        umask) if missing, a directory read-only.  Returns the fd; an
        OSError names the file."""
        flags = os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC
        try:
            return os.open(self.raw, flags | (os.O_CREAT if create else 0),
                           0o666)
        except IsADirectoryError:
            return os.open(self.raw, flags)

    def release_line(self, rid):
        """The release request for this target."""
        return ('{"id":%d,"op":"release","name":%s}\n' %
                (rid, self.wire_json)).encode()


def check_seconds(what, value):
    """Check a timeout (None: forever; inf, which the seed took, as
    given: wire_seconds makes it the longest the broker takes; a negative
    one is 0, as the seed's was: try once) and return it, or None."""
    if value is None:
        return None
    if value == math.inf:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError('%s must be a number of seconds or None, not %s' %
                        (what, type(value).__name__))
    if math.isnan(value) or value > MAX_SECONDS:
        raise ValueError('%s must be at most %g seconds, not %r' %
                         (what, MAX_SECONDS, value))
    return max(value, 0)


def wire_seconds(value):
    """A checked timeout as the broker takes it: inf is MAX_SECONDS, as
    good as forever."""
    return MAX_SECONDS if value == math.inf else value


def convert_line(target, rid, shared, timeout):
    """The convert request: to shared or exclusive, waiting at most
    timeout seconds (None: forever)."""
    parts = ['{"id":%d,"op":"convert","name":%s,"mode":"%s"' % (
        rid, target.wire_json, 'shared' if shared else 'exclusive')]
    if timeout is not None:
        parts.append(',"timeout":%s' % json.dumps(wire_seconds(timeout)))
    parts.append('}\n')
    return ''.join(parts).encode('utf-8')


def check_label(what, value):
    """Check an owner label: None, or at most 256 bytes of UTF-8, no NUL."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError('%s must be a str, not %s' %
                        (what, type(value).__name__))
    try:
        size = len(value.encode('utf-8'))
    except UnicodeEncodeError:
        raise ValueError('%s must be valid Unicode (no lone surrogate)' %
                         what) from None
    if size > MAX_LABEL or '\0' in value:
        raise ValueError('%s must be at most %d bytes with no NUL' %
                         (what, MAX_LABEL))
    return value


def acquire_line(target, rid, timeout, callback, shared, owner,
                 notify_contended=False, detect_deadlock=False):
    """The acquire request for the seed's four cases.

    - neither timeout nor callback: wait forever, no blocking event;
    - timeout T: ``timeout: T``, no blocking event (the reply is then
      ``timeout``, which is BlockingIOError/EAGAIN);
    - callback: no timeout, ``notify_after: 0``: the broker sends one
      ``blocking`` event at once if it cannot grant at once;
    - both: no timeout, ``notify_after: T``.

    With notify_contended, the holder asks for ``contended`` events;
    with detect_deadlock, a group name (the calling thread's or task's),
    the wait fails with ``deadlock`` if it closes a cycle of waits, the
    acquires of one group in this process being one node of the graph
    whatever their connections.
    """
    parts = ['{"id":%d,"op":"acquire","name":%s' % (rid, target.wire_json)]
    if shared:
        parts.append(',"mode":"shared"')
    if callback is None:
        if timeout is not None:
            parts.append(',"timeout":%s' % json.dumps(wire_seconds(timeout)))
        parts.append(',"notify_after":1e9')
    else:
        parts.append(',"notify_after":%s' %
                     json.dumps(wire_seconds(timeout or 0)))
    if owner is not None:
        parts.append(',"owner":%s' % json.dumps(owner, ensure_ascii=False))
    if notify_contended:
        parts.append(',"notify_contended":true')
    if detect_deadlock:
        parts.append(',"detect_deadlock":true,"deadlock_group":%s' %
                     json.dumps(detect_deadlock, ensure_ascii=False))
    parts.append('}\n')
    return ''.join(parts).encode('utf-8')


def init_args(mutex, target, timeout, callback, shared, owner, socket,
              on_lost, scope='local', on_contended=None,
              detect_deadlock=False):
    """Check and set a Mutex's arguments (locks.Mutex and locks.aio's)."""
    if on_contended is not None and scope == 'cluster':
        raise ValueError('on_contended is for local locks: a cluster '
                         "lock's waiters on other machines queue in etcd")
    if detect_deadlock and scope == 'cluster':
        raise ValueError("detect_deadlock covers one broker's local locks: "
                         'who waits for a cluster lock on other machines is '
                         'not known there')
    mutex.on_contended = on_contended
    mutex.detect_deadlock = bool(detect_deadlock)
    mutex._target = Target(target, scope)
    mutex.scope = scope
    mutex.path = target
    mutex.timeout = check_seconds('timeout', timeout)
    mutex.callback = callback
    mutex.shared = bool(shared)
    mutex.owner = check_label('owner', owner)
    mutex.socket = socket
    mutex.on_lost = on_lost
