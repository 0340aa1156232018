#!/usr/bin/env python3
"""Tiny sample application for the schemagate local stack.

Serves HTTP on HOST:PORT (--host, default 127.0.0.1; --port, else $PORT, else
8080; in a container pass --host 0.0.0.0 so that others can reach it):

  GET /         200 {"status": "up", "users": N, "documents": M, ...}
                503 {"status": "error", "error": "..."} if the database query fails
  GET /healthz  200 "ok" (liveness only; does not touch the database)

The database comes from $DATABASE_URL and is queried with the psql command
line client, so only the Python standard library is needed. SIGTERM and
SIGINT cause a clean shutdown with exit status 0.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

QUERY_TIMEOUT_SECONDS = 5.0
COUNT_QUERY = "select (select count(*) from users), (select count(*) from documents)"


class QueryError(Exception):
    pass


def query_counts(database_url):
    """Return (users, documents) counts using psql; raise QueryError on failure."""
    if not database_url:
        raise QueryError("DATABASE_URL is not set")
    env = dict(os.environ)
    # Fail fast instead of hanging on an unreachable or password-prompting server.
    env.setdefault("PGCONNECT_TIMEOUT", "3")
    try:
        proc = subprocess.run(
            ["psql", database_url, "-XAt", "-F", " ", "-v", "ON_ERROR_STOP=1",
             "-c", COUNT_QUERY],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=QUERY_TIMEOUT_SECONDS,
            env=env,
        )
    except FileNotFoundError:
        raise QueryError("psql not found in PATH")
    except subprocess.TimeoutExpired:
        raise QueryError("query timed out after %.0fs" % QUERY_TIMEOUT_SECONDS)
    if proc.returncode != 0:
        msg = proc.stderr.strip() or "psql exited with status %d" % proc.returncode
        raise QueryError(msg)
    fields = proc.stdout.strip().split()
    try:
        users, documents = int(fields[0]), int(fields[1])
    except (IndexError, ValueError):
        raise QueryError("unexpected psql output: %r" % proc.stdout.strip())
    return users, documents


class Handler(BaseHTTPRequestHandler):
    server_version = "sample-app/1"
    protocol_version = "HTTP/1.1"

    def _send(self, code, body, content_type="application/json"):
        data = body.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, code, obj):
        self._send(code, json.dumps(obj) + "\n")

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(200, "ok\n", "text/plain; charset=utf-8")
        elif path == "/":
            try:
                users, documents = query_counts(os.environ.get("DATABASE_URL", ""))
            except QueryError as exc:
                self._json(503, {"status": "error", "error": str(exc)})
                return
            self._json(200, {
                "status": "up",
                "app": "sample-app",
                "pid": os.getpid(),
                "users": users,
                "documents": documents,
            })
        else:
            self._json(404, {"status": "error", "error": "not found"})

    do_HEAD = do_GET

    def log_message(self, fmt, *args):
        sys.stderr.write("sample-app: %s %s\n" % (self.address_string(), fmt % args))


def parse_args(argv):
    default_port = os.environ.get("PORT") or "8080"
    parser = argparse.ArgumentParser(description="schemagate sample application")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1; 0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=None,
                        help="TCP port (default: $PORT or 8080)")
    args = parser.parse_args(argv)
    if args.port is None:
        try:
            args.port = int(default_port)
        except ValueError:
            parser.error("invalid PORT environment value: %r" % default_port)
    if not 0 <= args.port < 65536:
        parser.error("port out of range: %d" % args.port)
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    try:
        httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    except OSError as exc:
        print("sample-app: cannot listen on %s:%d: %s" % (args.host, args.port, exc),
              file=sys.stderr, flush=True)
        return 1

    def on_signal(signum, _frame):
        # shutdown() blocks until serve_forever() returns, so call it from
        # another thread rather than from the signal handler's thread.
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    print("sample-app: listening on %s:%d" % (args.host, httpd.server_address[1]), flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
    print("sample-app: shut down", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
