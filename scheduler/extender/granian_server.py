"""The extender port served by granian (Rust hyper and rustls) instead of the built-in server.

Opt-in (`gts serve --http-server=granian`), experimental. Why: on the 2-core benchmark machine
the built-in server's HTTP/2 (the pure-Python h2 library, one thread per connection) was a
third of `gts serve`'s CPU per pod in `gts bench e2e`; granian parses HTTP/1.1 and HTTP/2 and
runs TLS in Rust and hands each request to Python once, as a coroutine on one asyncio loop.

What is the same as the built-in server: the same `ExtenderApp` answers every request; a
request that may wait (`app.may_wait`: a bind, a gang member's filter) is answered on a worker
thread and the others on the loop's own thread; TLS 1.2+, ALPN h2 and http/1.1, and with a
client CA every client must present a certificate that chains to it; a body is refused with
413 over `max_body_bytes` (by Content-Length before it is read, or as it arrives), with 503
while the bodies being read exceed `max_inflight_bytes`, and with 408 when it has not all
arrived within `read_timeout_s`; HTTP/2 streams per connection, header list size and windows
come from the same `Limits`.

What differs: granian's embedded server is experimental (its own log says so at start); hyper,
not this project, bounds connections (keep-alive timeouts; no cap on their number, no idle
reaper, and `gts_extender_connections_total` is not counted); concurrent requests are bounded
by granian's backpressure (`max_connections`); the listening port is chosen before granian
binds it, so `port 0` has a short race with other processes on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduler.extender.server import ExtenderApp, Limits, Reply
from scheduler.extender.wire import error_body

log = logging.getLogger("gts.extender.granian")

JSON = "application/json"
# Workers for requests that may wait (binds wait for the API server or for their gang).
WORKERS = 64


class GranianUnavailable(RuntimeError):
    """The granian package is not installed (it is an optional dependency)."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for the server's TLS: certificate chain, key, and the client CA (mTLS)."""

    cert: str
    key: str
    client_ca: str | None = None


class _Refused(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply[0])
        self.reply = reply


class RsgiExtender:
    """The RSGI application: one request -> ExtenderApp.handle, within the Limits."""

    def __init__(self, app: ExtenderApp, limits: Limits, workers: ThreadPoolExecutor) -> None:
        self.app = app
        self.limits = limits
        self.workers = workers
        self.inflight = 0  # body bytes being read, all requests (only the loop's thread)

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return  # websockets are off; nothing else reaches an RSGI app
        try:
            body = await self._body(scope, proto)
            path = scope.path + ("?" + scope.query_string if scope.query_string else "")
            if self.app.may_wait(path, body):
                loop = asyncio.get_running_loop()
                reply = await loop.run_in_executor(self.workers, self.app.handle,
                                                   scope.method, path, body)
            else:
                reply = self.app.handle(scope.method, path, body)
        except _Refused as r:
            reply = r.reply
        status, ctype, out = reply
        proto.response_bytes(status, [("content-type", ctype)], out)

    async def _body(self, scope: Any, proto: Any) -> bytes:
        lim = self.limits
        raw = scope.headers.get("content-length")
        if raw is not None and raw.isdigit() and int(raw) > lim.max_body_bytes:
            raise _Refused((413, JSON, error_body(
                f"content-length={raw[:40]!r}: at most {lim.max_body_bytes} bytes")))
        parts: list[bytes] = []
        held = 0
        try:
            async with asyncio.timeout(lim.read_timeout_s):
                async for chunk in _chunks(proto):
                    held += len(chunk)
                    self.inflight += len(chunk)
                    if held > lim.max_body_bytes:
                        raise _Refused((413, JSON, error_body(
                            f"body over {lim.max_body_bytes} bytes")))
                    if self.inflight > lim.max_inflight_bytes:
                        raise _Refused((503, JSON, error_body(
                            "too many request bytes in flight; retry")))
                    parts.append(chunk)
        except TimeoutError:
            raise _Refused((408, JSON, error_body(
                f"request body not received within {lim.read_timeout_s:g}s"))) from None
        finally:
            self.inflight -= held
        return b"".join(parts)


async def _chunks(proto: Any) -> AsyncIterator[bytes]:
    async for chunk in proto:
        yield bytes(chunk)


def _import_granian() -> Any:
    try:
        from granian import http as granian_http
        from granian.constants import HTTPModes, Interfaces, SSLProtocols
        from granian.server.embed import Server
    except ImportError as e:
        raise GranianUnavailable(
            f"http-server=granian: the granian package is not installed ({e}); "
            f"pip install 'gpu-topology-scheduler[granian]' or use http-server=builtin"
        ) from None
    return Server, Interfaces, HTTPModes, SSLProtocols, granian_http


def _free_port(host: str, port: int) -> int:
    """`port`, or a free one for 0; raises OSError (as the built-in server would) when the
    address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return int(s.getsockname()[1])


class GranianExtenderServer:
    """The extender port on granian; the built-in server's interface that `Extender` uses
    (server_address, tls, serve_forever, shutdown, server_close)."""

    def __init__(self, app: ExtenderApp, host: str, port: int, tls: TlsFiles | None,
                 limits: Limits, *, http2: bool = True) -> None:
        server_cls, interfaces, modes, protocols, granian_http = _import_granian()
        self.app = app
        self.tls = tls
        self.server_address = (host, _free_port(host, port))
        self._workers = ThreadPoolExecutor(WORKERS, thread_name_prefix="gts-granian-worker")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._stopped = threading.Event()
        h2 = granian_http.HTTP2Settings(
            max_concurrent_streams=limits.h2_max_streams,
            max_headers_size=limits.h2_max_header_list_bytes,
            initial_stream_window_size=limits.h2_stream_window_bytes,
            initial_connection_window_size=limits.h2_connection_window_bytes,
            keep_alive_timeout=max(1, int(limits.idle_timeout_s)))
        h1 = granian_http.HTTP1Settings(
            header_read_timeout=int(limits.read_timeout_s * 1000))
        tls_kw: dict[str, Any] = {}
        if tls is not None:
            tls_kw = {"ssl_cert": Path(tls.cert), "ssl_key": Path(tls.key),
                      "ssl_protocol_min": protocols.tls12}
            if tls.client_ca:
                tls_kw.update(ssl_ca=Path(tls.client_ca), ssl_client_verify=True)
        self._server_cls = server_cls
        self._server_kw: dict[str, Any] = dict(
            target=RsgiExtender(app, limits, self._workers), address=host,
            port=self.server_address[1], interface=interfaces.RSGI,
            http=modes.auto if http2 else modes.http1, http1_settings=h1,
            http2_settings=h2, websockets=False, backpressure=limits.max_connections,
            log_enabled=False, **tls_kw)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until shutdown() (in the calling thread, on a loop of its own)."""
        del poll_interval  # the loop waits on its own events
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = self._server_cls(**self._server_kw)
            loop.run_until_complete(self._server.serve())
        finally:
            loop.close()
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serving and wait for the loop to end (up to 10 s)."""
        loop, srv = self._loop, self._server
        if loop is not None and srv is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(srv.stop)
            self._stopped.wait(10)
        self._workers.shutdown(wait=False)

    def server_close(self) -> None:
        """Nothing left to close: granian's socket ends with its loop."""
