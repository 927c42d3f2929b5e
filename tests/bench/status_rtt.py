#!/usr/bin/env python3
"""`vigil status` round trip and the daemon's RSS, for one vigil binary.

Starts BINARY with W watches (each a sleep), waits until all run, then times
R runs of `vigil --socket S status --json` (the CLI: connect, request, the
whole reply, exit) and R raw requests on the socket from this process (the
server alone: the HTTP request GET /v1/status, or with --line the JSON line
the socket took before issue 15). Prints p50/p99 in ms and VmRSS in kB
after the watches run and after the requests. Compare two builds:

  tests/bench/status_rtt.py /work/main/build-cc/vigil --watches 10 --line   # before
  tests/bench/status_rtt.py build/vigil --watches 10                       # after
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def pct(values, p):
    v = sorted(values)
    rank = max(1, min(len(v), int(-(-p * len(v) // 100))))
    return v[rank - 1]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raw(sock_path, line_protocol):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(sock_path)
    if line_protocol:
        s.sendall(b'{"cmd":"status"}\n')
    else:
        s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        b = s.recv(1 << 16)
        if not b:
            break
        data += b
    s.close()
    if not line_protocol:
        head, _, data = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit("status: " + head.decode(errors="replace"))
    reply = json.loads(data)
    if reply.get("ok") is not True:
        raise SystemExit("status: " + data[:200].decode(errors="replace"))
    return reply


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--watches", type=int, default=10)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--line", action="store_true", help="the socket speaks JSON lines (before issue 15)")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="vigil-status-rtt.")
    os.makedirs(d + "/rules")
    with open(d + "/rules/bench.lua", "w") as f:
        for i in range(a.watches):
            f.write(f'watch "w{i}" {{ start = {{ "/bin/sleep", "100000" }} }}\n')
    sock = d + "/vigil.sock"
    log = open(d + "/log", "w")
    daemon = subprocess.Popen([a.binary, "--socket", sock, "run", "--rules", d + "/rules",
                               "--state-dir", d + "/state"], stdout=log, stderr=log)
    try:
        deadline = time.time() + 120
        while True:
            try:
                st = raw(sock, a.line)
                if sum(1 for w in st["watches"] if w.get("state") == "running") == a.watches:
                    break
            except (OSError, ValueError):
                pass
            if time.time() > deadline or daemon.poll() is not None:
                raise SystemExit("the watches did not all run; log: " + open(d + "/log").read()[-2000:])
            time.sleep(0.05)
        time.sleep(0.5)  # let the start settle (a status reply trims the heap afterwards)
        raw(sock, a.line)
        rss_before = rss_kb(daemon.pid)
        cli, srv = [], []
        for _ in range(a.requests):
            t0 = time.perf_counter()
            r = subprocess.run([a.binary, "--socket", sock, "status", "--json"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            t1 = time.perf_counter()
            if r.returncode != 0:
                raise SystemExit("vigil status: " + r.stderr.decode())
            cli.append((t1 - t0) * 1e3)
            t0 = time.perf_counter()
            raw(sock, a.line)
            srv.append((time.perf_counter() - t0) * 1e3)
        raw(sock, a.line)
        rss_after = rss_kb(daemon.pid)
        print(f"{os.path.basename(os.path.dirname(os.path.abspath(a.binary)))}/{os.path.basename(a.binary)} "
              f"watches={a.watches} requests={a.requests} "
              f"cli_p50={pct(cli, 50):.2f}ms cli_p99={pct(cli, 99):.2f}ms "
              f"socket_p50={pct(srv, 50):.2f}ms socket_p99={pct(srv, 99):.2f}ms "
              f"rss_idle={rss_before}kB rss_after={rss_after}kB")
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
