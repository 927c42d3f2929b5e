#!/usr/bin/env python3
"""A program for probe tests: an HTTP server and/or an sd_notify client.

  probe_target.py --port N [--status S] [--body TEXT] [--body-file F] [--apache-idle N]
      serves every GET with status S (default 200) and TEXT (default "ok"),
      or the contents of F (a recorded page); with --apache-idle, the body
      is a mod_status "?auto" page.
  probe_target.py --notify [--pings-while FILE] [--no-ready]
      sends READY=1 to $NOTIFY_SOCKET, then WATCHDOG=1 every half of
      $WATCHDOG_USEC for as long as FILE exists (forever without FILE);
      then it goes on running, silent.
Both may be combined. It writes its pid to --pid-file when serving.
"""
import argparse
import http.server
import os
import socket
import sys
import threading
import time


def notify(msg):
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(msg.encode(), addr)
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int)
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--body", default="ok")
    ap.add_argument("--body-file")
    ap.add_argument("--apache-idle", type=int)
    ap.add_argument("--notify", action="store_true")
    ap.add_argument("--no-ready", action="store_true")
    ap.add_argument("--pings-while")
    a = ap.parse_args()

    if a.port:
        body = a.body
        if a.body_file:
            with open(a.body_file) as f:
                body = f.read()
        if a.apache_idle is not None:
            body = "Total Accesses: 10\nBusyWorkers: 5\nIdleWorkers: %d\n" % a.apache_idle

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                data = body.encode()
                self.send_response(a.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()

    if a.notify:
        usec = int(os.environ.get("WATCHDOG_USEC", "0"))
        if not a.no_ready:
            notify("READY=1\nSTATUS=serving")
        while usec and (not a.pings_while or os.path.exists(a.pings_while)):
            notify("WATCHDOG=1")
            time.sleep(usec / 2e6)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
