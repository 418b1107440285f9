"""An OpenLineage HTTP receiver for the lineage tier, on 127.0.0.1 only.

Stores every request (method, path, headers, body) as one JSON line in
RECORD, flushed at once, then answers as MODE says:
  ok    201 (as Marquez answers POST /api/v1/lineage)
  500   500 Internal Server Error
  hang  reads the request, then answers nothing for HANG seconds (bounded)
Binds a free port itself and writes it to PORT_FILE once listening, so the
caller never races another process for the port. Stops on SIGTERM/SIGINT,
or by itself after LIFETIME seconds.

    python receiver.py MODE RECORD PORT_FILE [--hang 60] [--lifetime 900]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["ok", "500", "hang"])
    parser.add_argument("record")
    parser.add_argument("port_file")
    parser.add_argument("--hang", type=float, default=60.0)
    parser.add_argument("--lifetime", type=float, default=900.0)
    args = parser.parse_args()
    lock = threading.Lock()
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            entry = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()), "body": body}
            with lock, open(args.record, "a", encoding="utf-8") as out:
                out.write(json.dumps(entry) + "\n")
                out.flush()
            if args.mode == "hang":
                stop.wait(args.hang)
                self.close_connection = True
                return
            status = 201 if args.mode == "ok" else 500
            payload = b"" if status == 201 else b'{"error": "receiver in mode 500"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_POST = _handle
        do_PUT = _handle
        do_GET = _handle

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as out:
        out.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)

    def shutdown(*_args) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    timer = threading.Timer(args.lifetime, shutdown)
    timer.daemon = True
    timer.start()
    started = time.monotonic()
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    print(f"receiver ({args.mode}) stopped after {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
