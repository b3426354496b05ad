"""HTTP(S) front of the extender: kube-scheduler's verbs, health, readiness and metrics.

ThreadingHTTPServer with HTTP/1.1 keep-alive (kube-scheduler's Go client keeps connections
open) and a thread per connection, because bind may block while a gang gathers. Every
reply carries Content-Length and TCP_NODELAY is set, so a small reply is never held back by
Nagle's algorithm waiting for a delayed ACK. TLS handshakes run in the connection's thread,
not in the accept loop, so a slow client cannot stall other connections.

Routing is `ExtenderApp.handle(method, path, body) -> (status, content type, body)`, a
plain function of the request, so it is tested without sockets.

Intake is bounded (`Limits`), because anything that reaches the port can send anything:
- a body over `max_body_bytes` is refused before it is read (413), and all bodies being read
  at once share `max_inflight_bytes` (503 beyond);
- Content-Length must be plain decimal digits (no sign, `_`, or spaces);
- at most `max_connections` connections: a new one evicts the longest-idle keep-alive
  connection, or is refused when every connection is busy;
- a reaper closes connections idle for `idle_timeout_s` and those that have not delivered
  a whole request (TLS handshake, headers and body) within `read_timeout_s` of its first
  byte: a body shorter than its Content-Length costs a connection slot for seconds, not
  minutes. A request being answered (a gang member waiting at bind) is never cut.

Why the default body limit (64 MiB) is enough: with `nodeCacheCapable: false`
kube-scheduler sends every candidate Node object. A Node as the API serves it is 3-5 KB,
and up to ~12 KB with kubelet's default 50 images in status.images; at 5,000 nodes (the
largest cluster the benchmarks cover with full Node objects) that is at most ~60 MB.
With names only (`nodeCacheCapable: true`) 20,000 nodes are ~0.5 MB.

Over TLS the server offers HTTP/2 by ALPN (unless `tls_context(http2=False)`): a connection
that negotiates "h2" is served by h2_connection.H2ServerConnection, with the same routing,
the same limits and the same connection accounting; others get HTTP/1.1 as before.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from scheduler.constants import POD_GROUP_LABEL, VOLCANO_GROUP_ANNOTATION
from scheduler.extender.h2_connection import H2ServerConnection
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
MAX_BODY_BYTES = 64 * 1024 * 1024  # see the module docstring
VERBS = ("filter", "prioritize", "bind")
_GANG_MARKERS = (POD_GROUP_LABEL.encode(), VOLCANO_GROUP_ANNOTATION.encode())
_DIGITS = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one client (or many) can make the server hold; see the module doc."""

    max_body_bytes: int = MAX_BODY_BYTES
    max_inflight_bytes: int = 4 * MAX_BODY_BYTES
    max_connections: int = 256
    idle_timeout_s: float = 60.0
    read_timeout_s: float = 10.0
    reap_interval_s: float = 0.5
    # HTTP/2 (h2_connection.py). Requests in flight on one connection: gang binds wait there,
    # and Go's client opens another connection when a connection is full.
    h2_max_streams: int = 128
    # kube-scheduler sends a handful of headers; as much as HTTP/1.1's 64 KiB request line.
    h2_max_header_list_bytes: int = 65_536
    # A names-only body for 20,000 nodes (~0.5 MB) arrives without waiting for WINDOW_UPDATE.
    h2_stream_window_bytes: int = 1 << 20
    # Room for many such bodies at once; memory stays bounded by max_inflight_bytes.
    h2_connection_window_bytes: int = 16 << 20
    # At shutdown, requests in flight get this long to be answered before GOAWAY and close.
    h2_shutdown_grace_s: float = 2.0


DEFAULT_LIMITS = Limits()

Reply = tuple[int, str, bytes]


class ExtenderApp:
    """Maps (method, path, body) to a reply; never raises."""

    def __init__(self, service: ExtenderService | None, metrics: ExtenderMetrics,
                 ready: Callable[[], bool], *, verbs: bool = True,
                 serve_metrics: bool = True) -> None:
        self.service = service
        self.metrics = metrics
        self.ready = ready
        # The metrics port serves only health and metrics; the extender port serves /metrics
        # only when there is no metrics port.
        self.verbs = verbs and service is not None
        self.serve_metrics = serve_metrics

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

    def may_wait(self, path: str, body: bytes) -> bool:
        """Whether answering may block for a while: a bind (its API write, or its gang's
        other members), a gang member's filter (its gang being planned by another member's
        filter: up to gangs.PLANNING_WAITS seconds), or /metrics (many series). HTTP/2
        answers the others on the connection's own thread, without a hand-off.

        The gang markers are looked for in the raw body: kube-scheduler's JSON writes label
        and annotation keys unescaped, and a false positive only costs the hand-off.
        """
        verb = path.split("?", 1)[0].strip("/")
        if verb not in ("filter", "prioritize", "healthz", "readyz"):
            return True
        return verb == "filter" and any(m in body for m in _GANG_MARKERS)

    def _route(self, method: str, verb: str, body: bytes) -> Reply:
        if verb in VERBS and self.verbs:
            assert self.service is not None
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
        paths = ("healthz", "readyz", "metrics") if self.serve_metrics else ("healthz", "readyz")
        if verb not in paths:
            known = (["/filter /prioritize /bind"] if self.verbs else []) + \
                [f"/{p}" for p in paths]
            return 404, TEXT, f"no such path; this port serves {' '.join(known)}\n".encode()
        if method != "GET":
            return 405, TEXT, b"use GET\n"
        if verb == "healthz":
            return 200, TEXT, b"ok\n"
        if verb == "readyz":
            if self.ready():
                return 200, TEXT, b"ok\n"
            return 503, TEXT, b"cluster cache not synced yet\n"
        return 200, PROMETHEUS, self.metrics.render()


class _Conn:
    """One connection's state, for the reaper and the connection cap."""

    __slots__ = ("since", "sock", "state")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.state = "reading"  # reading (handshake or a request), idle, or busy (answering)
        self.since = now

    def close(self) -> None:
        # shutdown() wakes the connection's thread from a blocked read; it then ends. The
        # plain socket's: SSLSocket.shutdown would drop its TLS state under the reader's feet.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gts-extender/1"
    server: ExtenderHTTPServer
    conn: _Conn
    http2 = False

    def setup(self) -> None:
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = self.server.register(sock)
        # Per-read timeout as a backstop; the reaper enforces the whole-request deadline.
        sock.settimeout(max(self.server.limits.idle_timeout_s,
                            self.server.limits.read_timeout_s) + 5.0)
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.do_handshake()
                self.http2 = sock.selected_alpn_protocol() == "h2"
            self.server.count_connection("h2" if self.http2 else "http/1.1")
            super().setup()
        except BaseException:
            self.server.unregister(sock)  # finish() does not run when setup() fails
            raise

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.unregister(self.request)

    def handle(self) -> None:
        if self.http2:
            assert isinstance(self.request, ssl.SSLSocket)
            H2ServerConnection(self.request, self.server, self.conn).serve()
        else:
            super().handle()

    def handle_one_request(self) -> None:
        """BaseHTTPRequestHandler's, with the connection's state kept for the reaper."""
        self.server.mark(self.conn, "idle")
        try:
            self.raw_requestline = self.rfile.readline(65537)
            self.server.mark(self.conn, "reading")
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.close_connection = True
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.close_connection = True
                self.send_error(501, f"unsupported method {self.command[:20]!r}")
                return
            method()
            self.wfile.flush()
        except (TimeoutError, OSError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._serve("GET", b"")

    def do_POST(self) -> None:
        body = self._body()
        if body is not None:
            self._serve("POST", body)

    def _body(self) -> bytes | None:
        limits = self.server.limits
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._chunked()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        n = int(raw) if _DIGITS.fullmatch(raw) else -1
        if n < 0 or n > limits.max_body_bytes:
            self.close_connection = True
            self._send(413 if n > 0 else 400, JSON,
                       error_body(f"Content-Length={raw[:40]!r}: must be decimal digits, "
                                  f"0..{limits.max_body_bytes}"))
            return None
        if not self.server.reserve_body(n):
            self.close_connection = True
            self._send(503, JSON, error_body("too many request bytes in flight; retry"))
            return None
        try:
            data = self.rfile.read(n)
        finally:
            self.server.release_body(n)
        if len(data) != n:
            self.close_connection = True  # the client closed (or was reaped) mid-body
            return None
        return data

    def _chunked(self) -> bytes | None:
        limit = self.server.limits.max_body_bytes
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            size = int(line, 16) if re.fullmatch(rb"[0-9a-fA-F]{1,8}", line) else -1
            total += max(size, 0)
            if size < 0 or total > limit:
                self.close_connection = True
                self._send(413 if total > limit else 400, JSON,
                           error_body(f"bad chunked body (at most {limit} bytes)"))
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                self.close_connection = True
                return None
            parts.append(chunk)
            self.rfile.readline(1024)

    def _serve(self, method: str, body: bytes) -> None:
        self.server.mark(self.conn, "busy")
        status, ctype, out = self.server.app.handle(method, self.path, body)
        self._send(status, ctype, out)

    def _send(self, status: int, ctype: str, out: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(out)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format % args, extra={"client": self.client_address[0]})


class ExtenderHTTPServer(ThreadingHTTPServer):
    """The listening server; `tls` wraps each accepted connection; `limits` bound intake."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, app: ExtenderApp, host: str, port: int,
                 tls: ssl.SSLContext | None = None, limits: Limits = DEFAULT_LIMITS) -> None:
        self.app = app
        self.tls = tls
        self.limits = limits
        self._conns: dict[int, _Conn] = {}
        self._conns_lock = threading.Lock()
        self._inflight = 0
        self._closed = threading.Event()
        self.refused = 0
        self.evicted = 0
        self.reaped = 0
        self.h2_errors = 0
        self._h2: set[H2ServerConnection] = set()
        self._h2_pool: ThreadPoolExecutor | None = None
        super().__init__((host, port), _Handler)
        self._reaper = threading.Thread(target=self._reap_loop, name="gts-http-reaper",
                                        daemon=True)
        self._reaper.start()

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        if self.tls is not None:
            return self.tls.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False), addr
        return sock, addr

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Admit the connection if there is room, making room by evicting the longest-idle
        one; registered here, in the accept loop, so the count never exceeds the cap."""
        with self._conns_lock:
            victim = None
            if len(self._conns) >= self.limits.max_connections:
                idle = [c for c in self._conns.values() if c.state == "idle"]
                victim = min(idle, key=lambda c: c.since) if idle else None
                if victim is None:
                    self.refused += 1
                    log.warning("connection refused: all connections busy",
                                extra={"client": str(client_address),
                                       "max_connections": self.limits.max_connections})
                    return False
                self._conns.pop(id(victim.sock), None)
                self.evicted += 1
            self._conns[id(request)] = _Conn(request, time.monotonic())
        if victim is not None:
            victim.close()
        return True

    def register(self, sock: socket.socket) -> _Conn:
        """The connection's state (made at admission; made here for a direct caller)."""
        with self._conns_lock:
            c = self._conns.get(id(sock))
            if c is None or c.sock is not sock:
                c = self._conns[id(sock)] = _Conn(sock, time.monotonic())
            return c

    def unregister(self, sock: socket.socket) -> None:
        with self._conns_lock:
            c = self._conns.get(id(sock))
            if c is not None and c.sock is sock:
                del self._conns[id(sock)]

    def mark(self, conn: _Conn, state: str) -> None:
        conn.state, conn.since = state, time.monotonic()

    @property
    def connections(self) -> int:
        """Open connections now."""
        with self._conns_lock:
            return len(self._conns)

    def reserve_body(self, n: int) -> bool:
        with self._conns_lock:
            if self._inflight + n > self.limits.max_inflight_bytes:
                return False
            self._inflight += n
            return True

    def release_body(self, n: int) -> None:
        with self._conns_lock:
            self._inflight -= n

    def _reap_loop(self) -> None:
        lim = self.limits
        while not self._closed.wait(lim.reap_interval_s):
            now = time.monotonic()
            with self._conns_lock:
                late = [c for c in self._conns.values()
                        if (c.state == "idle" and now - c.since > lim.idle_timeout_s)
                        or (c.state == "reading" and now - c.since > lim.read_timeout_s)]
            for c in late:
                self.reaped += 1
                c.close()

    def count_connection(self, protocol: str) -> None:
        """A connection past its handshake; counted on the port that serves the verbs."""
        if self.app.verbs:
            self.app.metrics.connection(protocol)

    def protocol_error(self) -> None:
        """An HTTP/2 connection closed for a protocol error."""
        with self._conns_lock:
            self.h2_errors += 1
        self.app.metrics.http2_error()

    def add_h2(self, c: H2ServerConnection) -> None:
        with self._conns_lock:
            self._h2.add(c)

    def h2_workers(self) -> ThreadPoolExecutor:
        """Threads answering HTTP/2 requests. As many as could be in flight at once, so no
        request waits for a thread behind blocked binds; idle ones are reused."""
        with self._conns_lock:
            if self._h2_pool is None:
                self._h2_pool = ThreadPoolExecutor(
                    self.limits.max_connections * self.limits.h2_max_streams,
                    thread_name_prefix="gts-h2-request")
            return self._h2_pool

    def remove_h2(self, c: H2ServerConnection) -> None:
        with self._conns_lock:
            self._h2.discard(c)

    def server_close(self) -> None:
        """Close the socket; HTTP/2 connections send GOAWAY once their requests in flight are
        answered (at most Limits.h2_shutdown_grace_s), so clients see a clean close."""
        self._closed.set()
        with self._conns_lock:
            live = list(self._h2)
        for c in live:
            c.stop()
        for c in live:
            c.done.wait(self.limits.h2_shutdown_grace_s + 1.0)
        if self._h2_pool is not None:
            self._h2_pool.shutdown(wait=False)  # a bind still waiting ends with the process
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that vanish mid-request or fail the TLS handshake are routine.
        log.debug("connection error", exc_info=True, extra={"client": str(client_address)})

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self.server_address[1])


def tls_context(cert_file: str, key_file: str, client_ca: str | None = None, *,
                http2: bool = True) -> ssl.SSLContext:
    """Server-side TLS 1.2+ context from a PEM certificate chain and key.

    With `client_ca`, every client must present a certificate that chains to it (mutual
    TLS; kube-scheduler's extender tlsConfig certFile/keyFile): others fail the handshake.
    With `http2`, ALPN offers "h2" (then "http/1.1"): Go's client multiplexes every call
    on one connection instead of opening a TLS connection per concurrent bind.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    # kube-scheduler's Go client keeps no TLS session cache, so tickets would be made, sent
    # and never used, on every one of its (frequent, see deploy/README) new connections.
    ctx.num_tickets = 0
    if http2:
        ctx.set_alpn_protocols(["h2", "http/1.1"])
    if client_ca:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def serve_in_thread(server: ExtenderHTTPServer) -> threading.Thread:
    """Run `server` in a daemon thread (tests, benchmarks); stop with server.shutdown()."""
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="gts-extender-http", daemon=True)
    t.start()
    return t
