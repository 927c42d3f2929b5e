#!/usr/bin/env python3
"""A stand-in for another node's vigil remote API (plain HTTP on loopback),
for tests/e2e/remote_test.cpp: GET /v1/status (one watch "db"), GET
/v1/events/stream (SSE: two events about db after Last-Event-ID, then
keep-alives), POST /v1/watches/NAME/VERB. Each stream's Last-Event-ID and
each POST are appended to LOG, one line each.

  fake_peer.py PORT LOG
"""
import http.server
import json
import sys
import time

port, log_path = int(sys.argv[1]), sys.argv[2]


def note(line):
    with open(log_path, 'a') as f:
        f.write(line + '\n')


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def reply(self, obj, code=200):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == '/v1/status':
            return self.reply({"ok": True, "watches": [
                {"name": "db", "state": "running", "ready": True, "pid": 42}]})
        if self.path != '/v1/events/stream':
            return self.reply({"ok": False, "error": "not found"}, 404)
        last = self.headers.get('Last-Event-ID')
        note('stream ' + (last or '-'))
        self.send_response(200)
        self.send_header('Content-Type', 'text/event-stream')
        self.end_headers()
        seq = int(last) + 1 if last else 1
        try:
            for _ in range(2):
                ev = {"seq": seq, "id": "VGL0102", "event": "process_exited", "watch": "db",
                      "severity": "warning", "message": "db: pid 42 exited 3",
                      "fields": {"watch": "db", "code": 3}}
                self.wfile.write(('id: %d\ndata: %s\n\n' % (seq, json.dumps(ev))).encode())
                self.wfile.flush()
                seq += 1
            while True:
                time.sleep(0.2)
                self.wfile.write(b': keep-alive\n\n')
                self.wfile.flush()
        except OSError:
            pass

    def do_POST(self):
        note('POST ' + self.path)
        self.reply({"ok": True})


http.server.ThreadingHTTPServer(('127.0.0.1', port), Handler).serve_forever()
