#!/usr/bin/env python3
"""A real HTTP server for the http sink tests (Python's http.server), failing on command.

Usage: http_peer.py DIR
Writes its port to DIR/port. Every POST to / is answered with the current status (200 at
first), except bodies starting with "reject", which always get 400. Each request is logged
to DIR/seen as "<status> <content-type> <body>"; bodies answered 2xx are appended to
DIR/accepted. POST /_control with a status code as the body sets the current status.
"""
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIR = sys.argv[1]
state = {"status": 200}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8", "replace")
        if self.path == "/_control":
            with lock:
                state["status"] = int(body.strip())
            code = 200
        else:
            with lock:
                code = 400 if body.startswith("reject") else state["status"]
                ctype = self.headers.get("Content-Type", "-")
                with open(os.path.join(DIR, "seen"), "a") as f:
                    f.write(f"{code} {ctype} {body}\n")
                if 200 <= code < 300:
                    with open(os.path.join(DIR, "accepted"), "a") as f:
                        f.write(body + "\n")
        payload = b"ok\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
tmp = os.path.join(DIR, "port.tmp")
with open(tmp, "w") as f:
    f.write(str(server.server_address[1]))
os.rename(tmp, os.path.join(DIR, "port"))
server.serve_forever()
