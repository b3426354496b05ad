"""A small blocking HTTP/2 client over TLS (the h2 library), for the extender's HTTP/2 tests."""

from __future__ import annotations

import json
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
from h2.settings import SettingCodes, Settings


@dataclass
class Response:
    """What came back on one stream."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None  # the RST_STREAM error code, when the server reset the stream

    def json(self) -> Any:
        return json.loads(bytes(self.body))


class H2Client:
    """One TLS connection speaking HTTP/2 (ALPN h2); requests are sent at once, replies read
    on demand, so several streams can be in flight together."""

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext, *,
                 read_settings: bool = True, window: int | None = None,
                 timeout: float = 20.0) -> None:
        context.set_alpn_protocols(["h2", "http/1.1"])
        raw = socket.create_connection(address, timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname=address[0])
        self.protocol = self.sock.selected_alpn_protocol()
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        if window is not None:
            self.h2.local_settings = Settings(
                client=True, initial_values={SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.h2.initiate_connection()
        self.responses: dict[int, Response] = {}
        self.remote_settings_seen = False
        self.settings_acked = False
        self.terminated: h2.events.ConnectionTerminated | None = None
        self.flush()
        if read_settings:
            # Both: the server's settings, and its ACK of ours (before it our window is not
            # yet in force here, and a smaller one would be applied to streams in flight).
            while not (self.remote_settings_seen and self.settings_acked):
                self.pump()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method: str, path: str, body: bytes = b"", *,
                content_length: int | None = None, end: bool = True) -> int:
        """Send one request (the whole body, within the window the server gave); its stream."""
        sid = self.h2.get_next_available_stream_id()
        headers = [(":method", method), (":path", path), (":scheme", "https"),
                   (":authority", "127.0.0.1"), ("content-type", "application/json")]
        if content_length is not None:
            headers.append(("content-length", str(content_length)))
        self.h2.send_headers(sid, headers, end_stream=end and not body)
        self.responses[sid] = Response()
        self.send_body(sid, body, end=end)
        return sid

    def send_body(self, sid: int, body: bytes, *, end: bool = True) -> None:
        view = memoryview(body)
        while view:
            n = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size,
                    len(view))
            assert n > 0, "the server's flow-control window ran out"
            self.h2.send_data(sid, view[:n].tobytes(), end_stream=end and n == len(view))
            view = view[n:]
        self.flush()

    def post(self, verb: str, doc: object) -> int:
        body = json.dumps(doc).encode()
        return self.request("POST", f"/{verb}", body, content_length=len(body))

    def pump(self) -> None:
        """Read once from the socket and apply what came."""
        data = self.sock.recv(65_536)
        if not data:
            raise ConnectionError("the server closed the connection")
        for e in self.h2.receive_data(data):
            if isinstance(e, h2.events.RemoteSettingsChanged):
                self.remote_settings_seen = True
            elif isinstance(e, h2.events.SettingsAcknowledged):
                self.settings_acked = True
            elif isinstance(e, h2.events.ResponseReceived):
                r = self.responses[e.stream_id or 0]
                # header_encoding="utf-8": h2 hands over str, though typed as bytes
                hd: dict[str, str] = {str(k): str(v) for k, v in e.headers or []}
                r.status, r.headers = int(hd[":status"]), hd
            elif isinstance(e, h2.events.DataReceived):
                self.responses[e.stream_id or 0].body += e.data or b""
                self.h2.acknowledge_received_data(e.flow_controlled_length or 0,
                                                  e.stream_id or 0)
            elif isinstance(e, h2.events.StreamEnded):
                self.responses[e.stream_id or 0].ended = True
            elif isinstance(e, h2.events.StreamReset):
                r = self.responses.setdefault(e.stream_id or 0, Response())
                r.reset = int(e.error_code or 0)
            elif isinstance(e, h2.events.ConnectionTerminated):
                self.terminated = e
        self.flush()

    def wait(self, sid: int) -> Response:
        """The stream's response, once it has ended or was reset."""
        r = self.responses[sid]
        while not r.ended and r.reset is None:
            self.pump()
        return r

    def get(self, path: str) -> Response:
        return self.wait(self.request("GET", path))

    def close(self) -> None:
        self.sock.close()


def client_window(c: H2Client) -> int:
    """The window the server granted for a new stream (its INITIAL_WINDOW_SIZE)."""
    return int(c.h2.remote_settings[SettingCodes.INITIAL_WINDOW_SIZE])
