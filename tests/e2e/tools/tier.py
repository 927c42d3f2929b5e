#!/usr/bin/env python3
"""One tier of a chain (db -> app -> web) for the group tests.

tier.py PORT [NEEDS_PORT]: refuses to start (exit 3) unless something
listens on NEEDS_PORT, then listens on PORT and serves until killed. Like a
real application server, it does not notice when its dependency goes away
later: that is what a dependency-aware restart is for.
"""
import socket
import sys

port = int(sys.argv[1])
if len(sys.argv) > 2:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=2).close()
    except OSError as e:
        print(f"dependency on port {sys.argv[2]} is not there: {e}", file=sys.stderr)
        sys.exit(3)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(16)
while True:
    c, _ = s.accept()
    c.close()
