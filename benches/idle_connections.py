#!/usr/bin/env python3
"""Resident memory of the switch holding N idle terminal connections (default 10,000).

Usage: python3 benches/idle_connections.py [BINARY] [N]
Starts `isoswitch run` on 127.0.0.1:28583 (no journal), opens N TCP connections that send
nothing, and prints the switch's VmRSS before and after. Loopback only; the switch is
killed at the end. Needs an open-files limit above N (see `ulimit -n`).
"""
import socket
import subprocess
import sys
import time

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/isoswitch"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
switch = subprocess.Popen(
    [binary, "run", "--listen", "127.0.0.1:28583", "--issuer", "127.0.0.1:28584",
     "--metrics", "127.0.0.1:29583", "--journal", "off"],
    stderr=subprocess.DEVNULL,
)


def rss_mb():
    with open(f"/proc/{switch.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


try:
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", 28583)).close()
            break
        except OSError:
            if time.time() > deadline:
                sys.exit("the switch did not start")
            time.sleep(0.05)
    time.sleep(0.5)
    before = rss_mb()
    conns = [socket.create_connection(("127.0.0.1", 28583)) for _ in range(n)]
    time.sleep(2)
    after = rss_mb()
    print(f"switch RSS: {before:.1f} MB at start, {after:.1f} MB with {len(conns)} idle terminal connections")
    for c in conns:
        c.close()
finally:
    switch.kill()
