"""The events of one open watch response, read straight from its socket buffer.

Why not the client's `Watch.stream`: it reads the chunked body a chunk at a time through
urllib3 (a line read for each chunk's size, then its data, each through several Python
layers) and copies its line buffer for every line; in a burst of pod events that reading cost
more than applying the events. Here each read takes whatever the socket holds (several
events at once in a burst, one TLS record at most), the chunk framing is undone with
`bytes.find` over the whole buffer, lines are split once, and each line is decoded with orjson.

What it yields and raises matches what KubeSource read from `Watch.stream` with
`timeout_seconds` set: the event dicts as decoded (blank and non-JSON lines skipped), an
ERROR event raised as `ApiException(status=code)`, a non-2xx answer raised as the client
raises it; the stream ends when the server ends the body. Responses that are not plainly
chunked (an encoding, HTTP/1.0) are read through urllib3, decoded alike.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from kubernetes.client.exceptions import ApiException

READ_BYTES = 1 << 16
# One event line may not exceed this: a pod object is at most about 1.5 MB (etcd's request
# limit); more means a broken or hostile stream, not an event.
MAX_LINE_BYTES = 8 << 20
_HEX = re.compile(rb"[0-9a-fA-F]{1,15}")


class WatchStreamError(ValueError):
    """The body is not valid chunked framing, or ended before its last chunk."""


def _event(line: bytes) -> dict[str, Any] | None:
    """The event on one line (None for a blank or non-JSON line); an ERROR event is raised."""
    if not line or line.isspace():
        return None
    try:
        ev = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(ev, dict):
        return None
    if ev.get("type") == "ERROR":
        obj = ev.get("object")
        obj = obj if isinstance(obj, dict) else {}
        code = obj.get("code")
        raise ApiException(status=code if isinstance(code, int) else 0,
                           reason=f"{obj.get('reason')}: {obj.get('message')}")
    return ev


class Dechunker:
    """HTTP/1.1 chunked transfer decoding over bytes fed in pieces (RFC 9112 7.1)."""

    __slots__ = ("_buf", "_left", "done")

    def __init__(self) -> None:
        self._buf = b""
        self._left = 0  # bytes of the current chunk's data still to come (then its CRLF)
        self.done = False  # the last (zero-size) chunk was read

    def feed(self, data: bytes) -> bytes:
        """The body bytes that `data` completes, in order."""
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        while pos < n and not self.done:
            if self._left < 0:  # the CRLF after a chunk's data
                if n - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise WatchStreamError("chunk data not followed by CRLF")
                pos += 2
                self._left = 0
                continue
            if self._left > 0:
                take = min(self._left, n - pos)
                out.append(buf[pos:pos + take])
                pos += take
                self._left -= take
                if self._left > 0:
                    break
                self._left = -2  # the chunk's CRLF follows
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if n - pos > 1024:
                    raise WatchStreamError("chunk size line longer than 1024 bytes")
                break
            size_field = buf[pos:eol].split(b";", 1)[0].strip()  # chunk extensions ignored
            if not _HEX.fullmatch(size_field):
                raise WatchStreamError(f"chunk size {size_field[:40]!r} is not hex")
            size = int(size_field, 16)
            pos = eol + 2
            if size == 0:
                self.done = True  # trailers, if any, are not read: the body is over
                break
            self._left = size
        self._buf = buf[pos:] if pos < n and not self.done else b""
        return b"".join(out)


def events_from_body(pieces: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The events of a watch body given in pieces (as read): one JSON object per line."""
    rest = b""
    for piece in pieces:
        if not piece:
            continue
        data = rest + piece if rest else piece
        lines = data.split(b"\n")
        rest = lines.pop()
        if len(rest) > MAX_LINE_BYTES:
            raise WatchStreamError(f"an event line over {MAX_LINE_BYTES} bytes")
        for line in lines:
            ev = _event(line)
            if ev is not None:
                yield ev
    ev = _event(rest)  # a last line without its newline
    if ev is not None:
        yield ev


class WatchStream:
    """One watch response's events; `stop()` from another thread ends the read at once."""

    def __init__(self, resp: Any) -> None:
        """Take an answered watch; a non-2xx answer is raised here as the client raises it."""
        status = getattr(resp, "status", None)
        if isinstance(status, int) and not 200 <= status <= 299:
            try:
                raise ApiException.from_response(http_resp=resp, body=None, data=None)
            finally:
                resp.close()
                resp.release_conn()
        self.resp = resp
        self._stopped = False

    def events(self) -> Iterator[dict[str, Any]]:
        """The decoded events until the server ends the watch (or stop() is called)."""
        resp = self.resp
        try:
            for ev in events_from_body(self._body()):
                yield ev
                if self._stopped:
                    return
        finally:
            resp.close()
            resp.release_conn()

    def _body(self) -> Iterator[bytes]:
        resp = self.resp
        raw: Any = getattr(getattr(resp, "_fp", None), "fp", None)  # http.client's socket file
        plain = (getattr(resp, "chunked", False) and raw is not None
                 and resp.headers.get("content-encoding", "identity") == "identity")
        if not plain:
            yield from resp.stream(READ_BYTES, decode_content=True)
            return
        chunks = Dechunker()
        while not chunks.done and not self._stopped:
            data = raw.read1(READ_BYTES)
            if not data:  # as urllib3 says it: the caller counts a reconnect and resumes
                raise WatchStreamError("the connection closed before the body's last chunk")
            yield chunks.feed(data)

    def stop(self) -> None:
        """End the stream: shut the socket down so a blocked read returns (the client's
        Watch.stop does the same)."""
        self._stopped = True
        conn = getattr(self.resp, "connection", None)
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
