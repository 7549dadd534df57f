#!/usr/bin/env python3
"""Stand in for locksd in the CLI's tests of what it prints and returns.

usage: fake_locksd.py SOCKET LIST_REPLY

Listens on the Unix socket SOCKET and answers hello as locksd would, and
every list request with the JSON object in the file LIST_REPLY, read anew
each time (so a test can change it between calls), plus the request's id.
That gives a test replies a real daemon seldom sends: holders granted an
hour ago, uids with no user name, odd labels, errors such as timeout.
Exits on SIGTERM.
"""

import json
import os
import signal
import socketserver
import sys

PROTOCOL = 1


class Handler(socketserver.StreamRequestHandler):
    """Answer one client's requests, line by line."""

    def handle(self):
        for line in self.rfile:
            request = json.loads(line)
            reply = self.answer(request)
            reply["id"] = request.get("id")
            self.wfile.write(json.dumps(reply).encode() + b"\n")

    def answer(self, request):
        op = request.get("op")
        if op == "hello":
            return {"ok": True, "server": "locksd", "version": "0.1.0",
                    "protocol": PROTOCOL, "pid": os.getpid()}
        if op == "list":
            with open(self.server.list_reply) as f:
                return json.load(f)
        return {"ok": False, "error": {"code": "bad_request",
                                       "message": "fake_locksd: " + str(op)}}


class Server(socketserver.ThreadingUnixStreamServer):
    """One thread per client, none of which holds up the exit."""

    daemon_threads = True


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    path, reply = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Server(path + ".tmp", Handler) as server:
        server.list_reply = reply
        # Appear under the final name only once listening: tests wait for it.
        os.rename(path + ".tmp", path)
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
