"""HTTP(S) front of the extender: kube-scheduler's verbs, health, readiness and metrics.

ThreadingHTTPServer with HTTP/1.1 keep-alive (kube-scheduler's Go client keeps connections
open) and a thread per connection, because bind may block while a gang gathers. Every
reply carries Content-Length and TCP_NODELAY is set, so a small reply is never held back by
Nagle's algorithm waiting for a delayed ACK. TLS handshakes run in the connection's thread,
not in the accept loop, so a slow client cannot stall other connections.

Routing is `ExtenderApp.handle(method, path, body) -> (status, content type, body)`, a
plain function of the request, so it is tested without sockets.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from scheduler.extender.metrics import ExtenderMetrics
from scheduler.extender.service import ExtenderService
from scheduler.extender.wire import (
    WireError,
    decode_json,
    encode_json,
    error_body,
    parse_binding_args,
    parse_extender_args,
)

log = logging.getLogger("gts.extender.http")

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
MAX_BODY_BYTES = 512 * 1024 * 1024  # 5,000 full Node objects are ~20 MB; leave room
VERBS = ("filter", "prioritize", "bind")

Reply = tuple[int, str, bytes]


class ExtenderApp:
    """Maps (method, path, body) to a reply; never raises."""

    def __init__(self, service: ExtenderService, metrics: ExtenderMetrics,
                 ready: Callable[[], bool]) -> None:
        self.service = service
        self.metrics = metrics
        self.ready = ready

    def handle(self, method: str, path: str, body: bytes) -> Reply:
        """The reply to one request; timing and counting included."""
        start = time.perf_counter()
        route = path.split("?", 1)[0].rstrip("/") or "/"
        verb = route.lstrip("/")
        label = verb if verb in (*VERBS, "healthz", "readyz", "metrics") else "other"
        try:
            reply = self._route(method, verb, body)
        except Exception as e:  # a bug must cost one request, never the server
            log.exception("internal error", extra={"verb": verb})
            reply = (500, JSON, error_body(f"internal error in {verb}: {type(e).__name__}: {e}"))
        self.metrics.observe_request(label, reply[0], time.perf_counter() - start)
        return reply

    def _route(self, method: str, verb: str, body: bytes) -> Reply:
        if verb in VERBS:
            if method != "POST":
                return 405, JSON, error_body(f"/{verb} takes POST with a JSON body")
            try:
                doc = decode_json(body)
                if verb == "bind":
                    return 200, JSON, encode_json(self.service.bind(parse_binding_args(doc)))
                args = parse_extender_args(doc)
                if verb == "filter":
                    return 200, JSON, encode_json(self.service.filter(args))
                return 200, JSON, self.service.prioritize(args).encode()
            except WireError as e:
                log.info("bad request", extra={"verb": verb, "reason": str(e)})
                return 400, JSON, error_body(f"not an extender {verb} request: {e}")
        if verb not in ("healthz", "readyz", "metrics"):
            return 404, TEXT, (f"no such path /{verb}; verbs: /filter /prioritize /bind, "
                               f"and /healthz /readyz /metrics\n").encode()
        if method != "GET":
            return 405, TEXT, b"use GET\n"
        if verb == "healthz":
            return 200, TEXT, b"ok\n"
        if verb == "readyz":
            if self.ready():
                return 200, TEXT, b"ok\n"
            return 503, TEXT, b"cluster cache not synced yet\n"
        return 200, PROMETHEUS, self.metrics.render()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gts-extender/1"
    timeout = 300.0  # an idle keep-alive connection is closed after this
    server: ExtenderHTTPServer

    def setup(self) -> None:
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(sock, ssl.SSLSocket):
            sock.settimeout(self.timeout)
            sock.do_handshake()
        super().setup()

    def do_GET(self) -> None:
        self._serve("GET", b"")

    def do_POST(self) -> None:
        body = self._body()
        if body is not None:
            self._serve("POST", body)

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._chunked()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            n = int(raw)
        except ValueError:
            n = -1
        if n < 0 or n > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(413 if n > 0 else 400, JSON,
                       error_body(f"Content-Length={raw!r}: must be 0..{MAX_BODY_BYTES}"))
            return None
        return self.rfile.read(n)

    def _chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                size = -1
            total += max(size, 0)
            if size < 0 or total > MAX_BODY_BYTES:
                self.close_connection = True
                self._send(400, JSON, error_body("bad chunked body"))
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _serve(self, method: str, body: bytes) -> None:
        status, ctype, out = self.server.app.handle(method, self.path, body)
        self._send(status, ctype, out)

    def _send(self, status: int, ctype: str, out: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format % args, extra={"client": self.client_address[0]})


class ExtenderHTTPServer(ThreadingHTTPServer):
    """The listening server; `tls` wraps each accepted connection."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, app: ExtenderApp, host: str, port: int,
                 tls: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.tls = tls
        super().__init__((host, port), _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        if self.tls is not None:
            return self.tls.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False), addr
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that vanish mid-request or fail the TLS handshake are routine.
        log.debug("connection error", exc_info=True, extra={"client": str(client_address)})

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self.server_address[1])


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """Server-side TLS 1.2+ context from a PEM certificate chain and key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def serve_in_thread(server: ExtenderHTTPServer) -> threading.Thread:
    """Run `server` in a daemon thread (tests, benchmarks); stop with server.shutdown()."""
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="gts-extender-http", daemon=True)
    t.start()
    return t
