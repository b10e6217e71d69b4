#!/usr/bin/env python3
"""Peak memory (VmHWM) of an Aurore binary under hostile bodies, for comparing builds.

Starts BINARY (default target/debug/aurore) on a fresh database, then sends sixteen
gzip bombs of tiny events at once (eight NDJSON, eight JSON arrays: 8 MB each once
inflated, about 8 KB on the wire) and opens 3,000 connections that each declare an 8 MB
body and send one byte. Prints the peak RSS after each stage.
Usage: scripts/rss-under-hostile-bodies.py [BINARY]
"""
import asyncio
import gzip
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target/debug/aurore")
admin = subprocess.run([os.path.join(root, "scripts/database.sh"), "admin"], check=True, capture_output=True, text=True).stdout.strip()
database = f"aurore_rss_{os.getpid()}"
subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {database}"], check=True)
journal = tempfile.mkdtemp()
env = {
    "PATH": os.environ["PATH"],
    "AURORE__DATABASE__URL": f"{admin.rsplit('/', 1)[0]}/{database}",
    "AURORE__JOURNAL__DIR": journal,
    "AURORE__SERVER__PORT": "0",
    "AURORE__PARTITIONS__DAYS_BEHIND": "1",
    "AURORE__PARTITIONS__DAYS_AHEAD": "1",
    "RUST_LOG": "info",
}
service = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
port = None
for line in service.stderr:
    found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    if found:
        port = int(found.group(1))
        break
# Keep reading so the service never blocks on a full pipe.
threading.Thread(target=lambda: [None for _ in service.stderr], daemon=True).start()


def peak_mib():
    with open(f"/proc/{service.pid}/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmHWM:"))


async def post(body, content_type):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST /events HTTP/1.1\r\nHost: aurore\r\nContent-Type: {content_type}\r\n"
            f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    writer.write(head.encode() + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer.split(b"\r\n", 1)[0].decode()


async def main():
    time.sleep(2)
    idle = peak_mib()
    ndjson = gzip.compress(b"1\n" * 4_000_000, 9)
    array = gzip.compress(b"[" + b"1," * 3_999_999 + b"1]", 9)
    answers = await asyncio.gather(*[post(ndjson, "application/x-ndjson") for _ in range(8)],
                                   *[post(array, "application/json") for _ in range(8)])
    bombs = peak_mib()
    stalled = []
    for _ in range(3000):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /events HTTP/1.1\r\nHost: aurore\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 8000000\r\n\r\n[")
        await writer.drain()
        stalled.append(writer)
    await asyncio.sleep(8)
    print(f"answers to the bombs: {sorted(set(answers))}")
    print(f"peak RSS: idle {idle} MiB, after 16 bombs {bombs} MiB, after 3,000 stalled 8 MB bodies {peak_mib()} MiB")


try:
    asyncio.run(main())
finally:
    service.kill()
    service.wait()
    subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"])
