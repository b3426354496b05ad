"""One HTTP/2 connection of the extender (TLS with ALPN "h2"), served with the h2 library.

Why HTTP/2: kube-scheduler's extender client (Go net/http, HTTP/2 enabled) keeps at most 2
idle HTTP/1.1 connections per host and binds each pod in its own goroutine, so a burst of
binds over HTTP/1.1 opens, and then closes, a TLS connection per bind. Over HTTP/2 every call
is a stream of one connection: no handshakes.

Threads: the connection's thread owns the socket and the h2 state machine; it reads, writes
and sends reply bodies as flow control allows. One thread, because OpenSSL does not allow an
SSL object to be read and written from two threads at once. A request that may wait
(`app.may_wait`: a bind, a gang member's filter) is answered by `app.handle` in a thread of
its own, from a pool shared by the server's connections (a bind may block while its gang
gathers and a filter must never wait behind it; the pool only saves starting a thread per
request), its reply coming back through a queue and a wake-up socket pair; the others
(filters of single pods, prioritize, health) are answered on the connection's thread.

Bounds (from `Limits`): at most `h2_max_streams` requests at once (more are refused with
RST_STREAM REFUSED_STREAM, which a client may retry), a header list of at most
`h2_max_header_list_bytes`, a body of at most `max_body_bytes` (413), and bodies being
received share `max_inflight_bytes` with HTTP/1.1's (503). A request whose body has not all
arrived within `read_timeout_s` is reset (RST_STREAM CANCEL), leaving the other streams be.
For the reaper the connection is "busy" while a request is being answered (never cut),
"reading" while a request body or a reply stalls (cut after `read_timeout_s`), and "idle"
otherwise (cut after `idle_timeout_s`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
import threading
import time
from concurrent.futures import Executor
from typing import Protocol

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes
from h2.settings import SettingCodes, Settings

from scheduler.extender.wire import error_body

log = logging.getLogger("gts.extender.http2")

# An idle connection's thread still wakes now and then, so a lost wake-up costs a delay at
# worst, never a stuck reply.
POLL_S = 5.0
# Reply bytes queued for the socket before more DATA frames are made: bounds memory when a
# client grants a large window but reads slowly.
OUT_HIGH_WATER = 1 << 20
# h2 refuses a stream over its advertised limit with a connection error (GOAWAY), which would
# cut every bind in flight on the connection; RFC 9113 5.1.2 allows a stream error, so the
# limit is advertised as Limits.h2_max_streams but enforced here, stream by stream.
_H2_ENFORCED_STREAMS = 2**31 - 1
_DEFAULT_WINDOW = 65_535  # RFC 9113 6.9.2: every connection window starts here


Reply = tuple[int, str, bytes]  # status, content type, body (server.ExtenderApp.handle's)


class H2Limits(Protocol):
    """The bounds this module reads (server.Limits has them)."""

    @property
    def max_body_bytes(self) -> int: ...
    @property
    def read_timeout_s(self) -> float: ...
    @property
    def h2_max_streams(self) -> int: ...
    @property
    def h2_max_header_list_bytes(self) -> int: ...
    @property
    def h2_stream_window_bytes(self) -> int: ...
    @property
    def h2_connection_window_bytes(self) -> int: ...
    @property
    def h2_shutdown_grace_s(self) -> float: ...


class App(Protocol):
    """Routing: server.ExtenderApp."""

    def handle(self, method: str, path: str, body: bytes) -> Reply: ...
    def may_wait(self, path: str, body: bytes) -> bool: ...


class ConnState(Protocol):
    """The connection's state as the reaper reads it (server._Conn)."""

    state: str
    since: float


class Host(Protocol):
    """What the listening server (server.ExtenderHTTPServer) provides to a connection."""

    @property
    def limits(self) -> H2Limits: ...
    @property
    def app(self) -> App: ...
    def reserve_body(self, n: int) -> bool: ...
    def release_body(self, n: int) -> None: ...
    def protocol_error(self) -> None: ...
    def h2_workers(self) -> Executor: ...
    def add_h2(self, c: H2ServerConnection) -> None: ...
    def remove_h2(self, c: H2ServerConnection) -> None: ...


class _Stream:
    """A request being received (or answered)."""

    __slots__ = ("body", "complete", "headers", "reserved", "since", "size")

    def __init__(self, headers: dict[bytes, bytes], since: float) -> None:
        self.headers = headers
        self.body: list[bytes] = []
        self.size = 0
        self.reserved = 0  # bytes held against Limits.max_inflight_bytes
        self.complete = False
        self.since = since


class H2ServerConnection:
    """Serves one TLS connection that negotiated "h2" until it closes."""

    def __init__(self, sock: ssl.SSLSocket, server: Host, conn: ConnState) -> None:
        self.sock = sock
        self.server = server
        self.conn = conn
        self.limits = server.limits
        self.streams: dict[int, _Stream] = {}  # received or being answered, not yet replied
        self.sending: dict[int, memoryview] = {}  # reply bodies left to send, by stream
        self.running = 0  # requests in app.handle
        # Their streams: a request the client reset while it is answered still counts
        # toward the stream limit until app.handle returns ("rapid reset", CVE-2023-44487:
        # otherwise request, reset, repeat runs any number of requests at once).
        self.answering: set[int] = set()
        self.replies: queue.SimpleQueue[tuple[int, Reply]] = queue.SimpleQueue()
        self.out = bytearray()  # bytes for the socket
        self._retry_len = 0  # an SSL write that wanted to be retried with the same length
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self.done = threading.Event()
        self._last_progress = time.monotonic()
        self._stop_deadline = 0.0
        self._peer_done = False
        # A wake-up byte is on its way: replies finished meanwhile need not send another.
        self._wake_sent = False
        # Often enough to cancel a stalled request body within about its read timeout.
        self._poll_s = min(POLL_S, self.limits.read_timeout_s / 2)
        # Our own headers need no checking (a fifth of h2's cost of a reply); the client's
        # are checked.
        config = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                           validate_outbound_headers=False,
                                           normalize_outbound_headers=False)
        self.h2 = h2.connection.H2Connection(config=config)

    # ---- life cycle -------------------------------------------------------------------------

    def serve(self) -> None:
        """Run the connection until the client or the server closes it; never raises."""
        self.server.add_h2(self)
        try:
            self._start()
            self._loop()
        except OSError:
            pass  # the client went away, or the reaper cut the connection
        except Exception as e:  # h2's ProtocolError, or what h2 let through on bad input
            self.server.protocol_error()
            log.warning("HTTP/2 protocol error; connection closed",
                        extra={"error": f"{type(e).__name__}: {e}"},
                        exc_info=not isinstance(e, h2.exceptions.ProtocolError))
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.close_connection(error_code=getattr(e, "error_code",
                                                            ErrorCodes.PROTOCOL_ERROR))
            self._flush_best_effort()
        finally:
            self.server.remove_h2(self)
            for s in self.streams.values():
                self._release(s)
            self._wake_r.close()
            self._wake_w.close()
            self.done.set()

    def stop(self) -> None:
        """Server shutdown: send GOAWAY once the requests in flight are answered (or after
        Limits.h2_shutdown_grace_s), then close."""
        self._stop_deadline = time.monotonic() + self.limits.h2_shutdown_grace_s
        self._stopping.set()
        self._wake()

    def _start(self) -> None:
        lim = self.limits
        values = {SettingCodes.MAX_CONCURRENT_STREAMS: lim.h2_max_streams,
                  SettingCodes.INITIAL_WINDOW_SIZE: lim.h2_stream_window_bytes,
                  SettingCodes.MAX_HEADER_LIST_SIZE: lim.h2_max_header_list_bytes}
        self.h2.local_settings = Settings(client=False, initial_values=values)
        self.h2.initiate_connection()  # our SETTINGS, with the values above
        values[SettingCodes.MAX_CONCURRENT_STREAMS] = _H2_ENFORCED_STREAMS  # see its comment
        self.h2.local_settings = Settings(client=False, initial_values=values)
        self.h2.decoder.max_header_list_size = lim.h2_max_header_list_bytes
        if lim.h2_connection_window_bytes > _DEFAULT_WINDOW:
            self.h2.increment_flow_control_window(lim.h2_connection_window_bytes
                                                  - _DEFAULT_WINDOW)
        self.sock.setblocking(False)
        self._flush()

    def _loop(self) -> None:
        while True:
            readers: list[socket.socket] = [self.sock, self._wake_r]
            writers = [self.sock] if self.out else []
            if not self.sock.pending():  # bytes TLS already decrypted are not seen by select
                r, _, _ = select.select(readers, writers, [], self._poll_s)
            else:
                r = [self.sock]
            if self._wake_r in r:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
                # Cleared before the queue is read, so a reply queued after this point sends
                # its own wake-up, and one queued before it is taken below.
                self._wake_sent = False
            self._take_replies()
            if self.sock in r and not self._read():
                return
            self._send_bodies()
            self._cancel_stalled()
            self._flush()
            if self._stopping.is_set() and self._goaway_due():
                self.h2.close_connection(error_code=ErrorCodes.NO_ERROR)
                self._flush_best_effort()
                return
            if self._peer_done and self.running == 0 and not self.sending:
                self._flush_best_effort()
                return
            self._mark()

    def _cancel_stalled(self) -> None:
        """Reset requests whose body has not all arrived within read_timeout_s: one stalled
        stream must not hold bytes (or, via the reaper, cut the connection) while other
        streams on it are being answered."""
        late = time.monotonic() - self.limits.read_timeout_s
        for sid in [i for i, s in self.streams.items() if not s.complete and s.since < late]:
            log.info("HTTP/2 request body stalled; stream reset", extra={"stream": sid})
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.reset_stream(sid, ErrorCodes.CANCEL)
            self._forget(sid)

    def _goaway_due(self) -> bool:
        answered = self.running == 0 and not self.sending
        return answered or time.monotonic() >= self._stop_deadline

    # ---- reading ----------------------------------------------------------------------------

    def _read(self) -> bool:
        """Feed what the socket has to h2; False once the client closed."""
        while True:
            try:
                data = self.sock.recv(65_536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return True
            if not data:
                return False
            for event in self.h2.receive_data(data):
                self._on_event(event)
            if not self.sock.pending():
                return True

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._on_request(event)
        elif isinstance(event, h2.events.DataReceived):
            self._on_data(event)
        elif isinstance(event, h2.events.StreamEnded):
            self._on_end(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self._forget(event.stream_id)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._peer_done = True  # no new streams; those in flight still get their replies
        # Settings, pings, window updates and priorities: h2 answers them itself.

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        assert sid is not None and event.headers is not None
        if (len(self.streams.keys() | self.answering) >= self.limits.h2_max_streams
                or self._stopping.is_set()):
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        headers = {bytes(k): bytes(v) for k, v in event.headers}
        self.streams[sid] = _Stream(headers, time.monotonic())
        raw = headers.get(b"content-length")
        if raw is not None and raw.isdigit() and int(raw) > self.limits.max_body_bytes:
            self._refuse(sid, 413, f"content-length={raw[:40].decode('latin-1')!r}: at most "
                                   f"{self.limits.max_body_bytes} bytes")
        elif event.stream_ended is not None:
            self._on_end(sid)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        sid = event.stream_id
        assert sid is not None and event.data is not None
        n = event.flow_controlled_length or 0
        s = self.streams.get(sid)
        if n:
            # Received data frees its window at once: memory is bounded by the limits below,
            # and a large body never waits a round trip for a WINDOW_UPDATE.
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.h2.acknowledge_received_data(n, sid)
        if s is None or s.complete:
            return  # refused or reset already
        size = len(event.data)
        if s.size + size > self.limits.max_body_bytes:
            self._refuse(sid, 413, f"body over {self.limits.max_body_bytes} bytes")
            return
        if not self.server.reserve_body(size):
            self._refuse(sid, 503, "too many request bytes in flight; retry")
            return
        s.reserved += size
        s.size += size
        s.body.append(event.data)

    def _on_end(self, sid: int) -> None:
        s = self.streams.get(sid)
        if s is None or s.complete:
            return
        s.complete = True
        body = b"".join(s.body)
        s.body = []
        self._release(s)
        method = s.headers.get(b":method", b"").decode("latin-1")
        path = s.headers.get(b":path", b"/").decode("latin-1")
        app = self.server.app
        if not app.may_wait(path, body):
            # Answered here: a filter's answer is bounded work under the cache lock, and a
            # hand-off to a worker and back (queue, wake-up byte, two thread switches under
            # the GIL) cost about a fifth of it.
            self._start_reply(sid, app.handle(method, path, body))
            return
        self.running += 1
        self.answering.add(sid)
        self.server.h2_workers().submit(self._answer, sid, method, path, body)

    def _answer(self, sid: int, method: str, path: str, body: bytes) -> None:
        try:
            reply = self.server.app.handle(method, path, body)  # never raises
        finally:
            self.replies.put((sid, reply))  # before the flag is read: see _loop
            if not self._wake_sent:
                self._wake_sent = True
                self._wake()

    # ---- writing ----------------------------------------------------------------------------

    def _refuse(self, sid: int, status: int, why: str) -> None:
        """Reply now and stop receiving the request's body (RST_STREAM NO_ERROR after a full
        reply tells the client to stop sending; RFC 9113 8.1)."""
        s = self.streams[sid]
        s.complete = True
        s.body = []
        self._release(s)
        self._start_reply(sid, (status, "application/json", error_body(why)))

    def _take_replies(self) -> None:
        while True:
            try:
                sid, reply = self.replies.get_nowait()
            except queue.Empty:
                return
            self.running -= 1
            self.answering.discard(sid)
            if sid in self.streams:
                self._start_reply(sid, reply)

    def _start_reply(self, sid: int, reply: Reply) -> None:
        status, ctype, body = reply
        headers = [(":status", str(status)), ("content-type", ctype),
                   ("content-length", str(len(body)))]
        try:
            self.h2.send_headers(sid, headers, end_stream=not body)
        except h2.exceptions.StreamClosedError:
            self._forget(sid)  # the client reset the stream meanwhile
            return
        if body:
            self.sending[sid] = memoryview(body)
        else:
            self._replied(sid)

    def _send_bodies(self) -> None:
        """DATA frames within each stream's and the connection's flow-control window."""
        for sid in list(self.sending):
            view = self.sending[sid]
            try:
                while view and len(self.out) < OUT_HIGH_WATER:
                    window = self.h2.local_flow_control_window(sid)
                    n = min(window, self.h2.max_outbound_frame_size, len(view))
                    if n <= 0:
                        break  # wait for WINDOW_UPDATE
                    self.h2.send_data(sid, view[:n].tobytes(), end_stream=n == len(view))
                    view = view[n:]
                    self.out += self.h2.data_to_send()
                    self._last_progress = time.monotonic()
            except h2.exceptions.StreamClosedError:
                self._forget(sid)
                continue
            if view:
                self.sending[sid] = view
            else:
                self._replied(sid)

    def _replied(self, sid: int) -> None:
        self.sending.pop(sid, None)
        s = self.streams.pop(sid, None)
        if s is not None and not s.complete:
            # Replied before the body was all in (413): no more of it is wanted.
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.reset_stream(sid, ErrorCodes.NO_ERROR)

    def _forget(self, sid: int) -> None:
        self.sending.pop(sid, None)
        s = self.streams.pop(sid, None)
        if s is not None:
            self._release(s)

    def _release(self, s: _Stream) -> None:
        if s.reserved:
            self.server.release_body(s.reserved)
            s.reserved = 0

    def _flush(self) -> None:
        """Write what fits into the socket now; the rest when select says it is writable."""
        self.out += self.h2.data_to_send()
        while self.out:
            n = self._retry_len or min(len(self.out), 65_536)
            try:
                sent = self.sock.send(bytes(self.out[:n]))
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                # OpenSSL wants the same write again, of the same length.
                self._retry_len = n
                return
            self._retry_len = 0
            del self.out[:sent]
            self._last_progress = time.monotonic()

    def _flush_best_effort(self) -> None:
        """Before closing: a GOAWAY's few bytes, without waiting long for a slow reader."""
        with contextlib.suppress(OSError):
            self.sock.settimeout(1.0)
            self.out += self.h2.data_to_send()
            if self.out:
                self.sock.sendall(bytes(self.out))
            self.out.clear()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a full pair is awake already; a closed one is done
            self._wake_w.send(b"\0")

    # ---- for the reaper ---------------------------------------------------------------------

    def _mark(self) -> None:
        """The connection's state as the reaper sees it (see the module docstring)."""
        c = self.conn
        if self.running:
            state, since = "busy", c.since if c.state == "busy" else time.monotonic()
        else:
            stalled = [s.since for s in self.streams.values() if not s.complete]
            if self.sending or self.out:
                stalled.append(self._last_progress)
            if stalled:
                state, since = "reading", min(stalled)
            else:
                state, since = "idle", c.since if c.state == "idle" else time.monotonic()
        c.since = since  # before the state, so the reaper never pairs a new state with an old time
        c.state = state
