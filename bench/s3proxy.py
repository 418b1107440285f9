#!/usr/bin/env python3
"""A counting HTTP/1.1 proxy in front of an S3 server (MinIO), so the bench
can say what a run downloaded.

Usage: s3proxy.py UPSTREAM LOG [PORT_FILE]
  UPSTREAM   http://host:port of the S3 server
  LOG        one JSON line per request is appended here when the proxy stops:
             method, path (with the query), status, req_bytes and resp_bytes
             (bodies only)
  PORT_FILE  the port it listens on (127.0.0.1, chosen by the system) is
             written here once it accepts connections

Requests are forwarded byte for byte (the Host header too, so SigV4
signatures stay valid); bodies are framed by Content-Length or chunked
encoding. A client's `Expect: 100-continue` is answered by the proxy and the
server's own interim response dropped. Stop it with SIGTERM.

`s3proxy.py sum LOG KEY` prints the totals of the log as JSON: requests by
method, bytes down and up, and the bytes of GETs whose path holds KEY.
"""
import asyncio
import json
import signal
import sys
from collections import Counter
from urllib.parse import urlsplit


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return head, lines[0], headers


async def relay_body(reader, writer, headers, until_close=False):
    """Copies a body from reader to writer; returns its size (payload bytes)."""
    total = 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            writer.write(size_line)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    line = await reader.readuntil(b"\r\n")
                    writer.write(line)
                    if line == b"\r\n":
                        return total
            data = await reader.readexactly(size + 2)
            writer.write(data)
            total += size
            await writer.drain()
    if "content-length" in headers:
        left = int(headers["content-length"])
        while left:
            data = await reader.read(min(left, 1 << 16))
            if not data:
                raise ConnectionError("body cut short")
            writer.write(data)
            total += len(data)
            left -= len(data)
            await writer.drain()
        return total
    if until_close:
        while data := await reader.read(1 << 16):
            writer.write(data)
            total += len(data)
            await writer.drain()
    return total


class Proxy:
    def __init__(self, upstream):
        parts = urlsplit(upstream)
        self.host, self.port = parts.hostname, parts.port or 80
        self.seen = []  # one dict per request, written out when the proxy stops

    async def handle(self, client_r, client_w):
        up_r = up_w = None
        try:
            while True:
                try:
                    head, request_line, headers = await read_head(client_r)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                method, target = request_line.split(" ")[:2]
                if up_w is None:
                    up_r, up_w = await asyncio.open_connection(self.host, self.port)
                up_w.write(head)
                expect = headers.get("expect", "").lower() == "100-continue"
                if expect:
                    client_w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await client_w.drain()
                sent = await relay_body(client_r, up_w, headers)
                await up_w.drain()
                while True:
                    rhead, status_line, rheaders = await read_head(up_r)
                    status = int(status_line.split(" ")[1])
                    if 100 <= status < 200:
                        continue  # interim: already answered (Expect) or not for the client
                    break
                client_w.write(rhead)
                received = 0
                if method != "HEAD" and status not in (204, 304):
                    received = await relay_body(up_r, client_w, rheaders, until_close=True)
                await client_w.drain()
                self.seen.append({"method": method, "path": target, "status": status,
                                  "req_bytes": sent, "resp_bytes": received})
                if rheaders.get("connection", "").lower() == "close" or headers.get("connection", "").lower() == "close":
                    return
        except (asyncio.IncompleteReadError, ConnectionError) as err:
            print(f"[s3proxy] connection ended: {err!r}", file=sys.stderr)
        finally:
            for w in (client_w, up_w):
                if w is not None:
                    w.close()


def write_lines(path, lines):
    with open(path, "a") as f:
        f.writelines(line + "\n" for line in lines)


async def serve(proxy, port_file):
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    if port_file:
        write_lines(port_file, [str(server.sockets[0].getsockname()[1])])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def summary(log, key):
    out = {"requests": Counter(), "bytes_down": 0, "bytes_up": 0, "export_get_bytes": 0, "export_gets": 0}
    with open(log) as f:
        for line in f:
            r = json.loads(line)
            out["requests"][r["method"]] += 1
            out["bytes_down"] += r["resp_bytes"]
            out["bytes_up"] += r["req_bytes"]
            if r["method"] == "GET" and key in r["path"].split("?")[0]:
                out["export_gets"] += 1
                out["export_get_bytes"] += r["resp_bytes"]
    out["requests"] = dict(out["requests"])
    return out


def main():
    if sys.argv[1] == "sum":
        print(json.dumps(summary(sys.argv[2], sys.argv[3])))
        return
    proxy = Proxy(sys.argv[1])
    asyncio.run(serve(proxy, sys.argv[3] if len(sys.argv) > 3 else None))
    write_lines(sys.argv[2], [json.dumps(r) for r in proxy.seen])


if __name__ == "__main__":
    main()
