#!/usr/bin/env python3
"""Stand in for systemd's notify socket in tests.

usage: sd_notify_recv.py SOCKET OUT [SECS]

Binds a Unix datagram socket at SOCKET and appends one line per received
assignment to OUT: "<monotonic ms> <NAME=VALUE>".  Exits after SECS
(default 60) seconds, on SIGTERM, or 0.2 s after STOPPING=1 arrived.
"""

import os
import signal
import socket
import sys
import time


def main():
    if len(sys.argv) not in (3, 4):
        sys.stderr.write(__doc__)
        return 2
    path, out = sys.argv[1], sys.argv[2]
    deadline = time.monotonic() + (float(sys.argv[3]) if len(sys.argv) == 4
                                   else 60.0)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path + ".tmp")
    # Appear under the final name only once bound: the test waits for it.
    os.rename(path + ".tmp", path)
    stopping = None
    with open(out, "a", buffering=1) as f:
        while True:
            now = time.monotonic()
            end = deadline if stopping is None else min(deadline,
                                                        stopping + 0.2)
            if now >= end:
                return 0
            sock.settimeout(end - now)
            try:
                data = sock.recv(4096)
            except socket.timeout:
                continue
            ms = int(time.monotonic() * 1000)
            for field in data.decode("utf-8", "replace").split("\n"):
                if field:
                    f.write("%d %s\n" % (ms, field))
                if field == "STOPPING=1" and stopping is None:
                    stopping = time.monotonic()


if __name__ == "__main__":
    sys.exit(main())
