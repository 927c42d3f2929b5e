#!/usr/bin/env python3
"""An HTTP/1.1 server for the HTTP client's tests (keep-alive, threads).

  stream_server.py [--unix PATH]
      listens on 127.0.0.1 port 0 (or on the unix socket PATH) and prints
      "READY <port>" (or "READY unix") on stdout once it accepts.

  GET  /hello            200 "hello\\n" (Content-Length: keep-alive reuse)
  GET  /status/N         status N, body "status N\\n"
  GET  /lines?n=N&ms=M   chunked: N lines "line I", each written in two
                         pieces M ms apart (lines across packet boundaries)
  GET  /sse?n=N&ms=M     text/event-stream: N events (id: I, data: event I),
                         a keep-alive comment between them, M ms apart
  GET  /forever?ms=M     chunked: a line every M ms until the client leaves
  GET  /long?bytes=B     chunked: one line of B bytes, then "end"
  GET  /slow?ms=M        answers after M ms
  *    /echo             200 "METHOD PATH\\nheader: value...\\n\\nBODY"
"""
import argparse
import http.server
import os
import socket
import socketserver
import sys
import time
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def address_string(self):
        return "unix"

    def reply(self, status, body, ctype="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def start_chunked(self, ctype="text/plain"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.flush()

    def end_chunked(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        ms = int(q.get("ms", "20")) / 1000.0
        try:
            if url.path == "/hello":
                self.reply(200, "hello\n")
            elif url.path.startswith("/status/"):
                n = int(url.path.split("/")[2])
                self.reply(n, "status %d\n" % n)
            elif url.path == "/lines":
                self.start_chunked()
                for i in range(int(q.get("n", "5"))):
                    text = "line %d" % i
                    self.chunk(text[:3])
                    time.sleep(ms)
                    self.chunk(text[3:] + ("\r\n" if i % 2 else "\n"))
                self.end_chunked()
            elif url.path == "/sse":
                self.start_chunked("text/event-stream")
                for i in range(int(q.get("n", "3"))):
                    self.chunk(": keep-alive\n\n")
                    time.sleep(ms)
                    self.chunk("id: %d\nevent: tick\ndata: event %d\n\n" % (i + 1, i + 1))
                self.end_chunked()
            elif url.path == "/forever":
                self.start_chunked()
                i = 0
                while True:
                    self.chunk("tick %d\n" % i)
                    i += 1
                    time.sleep(ms)
            elif url.path == "/long":
                self.start_chunked()
                self.chunk("x" * int(q.get("bytes", "100000")) + "\n")
                self.chunk("end\n")
                self.end_chunked()
            elif url.path == "/slow":
                time.sleep(ms)
                self.reply(200, "slow\n")
            elif url.path == "/echo":
                self.echo()
            else:
                self.reply(404, "no such path\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def echo(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n).decode() if n else ""
        head = "".join("%s: %s\n" % (k.lower(), v) for k, v in self.headers.items())
        self.reply(200, "%s %s\n%s\n%s" % (self.command, self.path, head, body))

    do_POST = do_PUT = do_DELETE = do_PATCH = lambda self: self.echo()


class TcpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        conn, _ = self.socket.accept()
        return conn, ("unix", 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unix")
    a = ap.parse_args()
    if a.unix:
        if os.path.exists(a.unix):
            os.unlink(a.unix)
        srv = UnixServer(a.unix, Handler)
        print("READY unix", flush=True)
    else:
        srv = TcpServer(("127.0.0.1", 0), Handler)
        print("READY %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
