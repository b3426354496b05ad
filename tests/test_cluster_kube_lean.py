"""The lean pieces of the watch and bind path: the watch body read straight from its socket
buffer (chunked framing, orjson lines, ERROR events), and a Binding POST on a pool the
client's manager has since closed."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubeapi_double import KubeAPIDouble
from kubernetes.client.exceptions import ApiException
from test_cluster_kube import api_client, pod_obj

from scheduler.cluster.kube_binder import TOKEN_REUSE_S, KubeBinder
from scheduler.cluster.watch_stream import Dechunker, WatchStream, WatchStreamError


@pytest.fixture
def api() -> Iterator[KubeAPIDouble]:
    with KubeAPIDouble() as server:
        yield server


def chunked(body: bytes, sizes: list[int], ext: bool) -> bytes:
    """`body` in HTTP/1.1 chunked framing, cut at `sizes` (cycled), ending with the last chunk."""
    out, pos, i = [], 0, 0
    while pos < len(body):
        n = max(1, sizes[i % len(sizes)])
        piece = body[pos:pos + n]
        out.append(b"%x%s\r\n%s\r\n" % (len(piece), b";x=y" if ext else b"", piece))
        pos += n
        i += 1
    return b"".join(out) + b"0\r\n\r\n"


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=3000), sizes=st.lists(st.integers(1, 700), min_size=1),
       cuts=st.lists(st.integers(1, 500), min_size=1), ext=st.booleans())
def test_dechunker_gives_the_body_back_however_the_bytes_arrive(
        body: bytes, sizes: list[int], cuts: list[int], ext: bool) -> None:
    wire = chunked(body, sizes, ext) + b"after the last chunk"
    d, got, pos, i = Dechunker(), [], 0, 0
    while pos < len(wire) and not d.done:
        n = cuts[i % len(cuts)]
        got.append(d.feed(wire[pos:pos + n]))
        pos += n
        i += 1
    assert d.done and b"".join(got) == body


@pytest.mark.parametrize("wire", [b"zz\r\nab\r\n", b"0x2\r\nab\r\n", b"-2\r\nab\r\n",
                                  b"2\r\nabX\r\n", b"1" * 2000])
def test_dechunker_refuses_broken_framing(wire: bytes) -> None:
    with pytest.raises(WatchStreamError):
        Dechunker().feed(wire)


class _Resp:
    """Just what WatchStream reads of a urllib3 response: a chunked body on a socket file."""

    def __init__(self, body: bytes, status: int = 200) -> None:
        self.status = status
        self.chunked = True
        self.headers: dict[str, str] = {}
        wire = io.BufferedReader(io.BytesIO(chunked(body, [37], False)))
        self._fp = type("fp", (), {"fp": wire})()
        self.closed = self.released = False

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        self.released = True


def test_watch_stream_decodes_lines_and_skips_what_is_not_json() -> None:
    obj = {"metadata": {"name": "p", "resourceVersion": "7"}, "x": [1, 2.5, None, "é"]}
    ev = json.dumps({"type": "MODIFIED", "object": obj}).encode()
    resp = _Resp(b"\n  \n{not json\n" + ev + b"\n[1]\n" + ev)  # the last line has no newline
    assert list(WatchStream(resp).events()) == [{"type": "MODIFIED", "object": obj}] * 2
    assert resp.closed and resp.released


@pytest.mark.parametrize("newline", [b"\n", b""])
def test_watch_stream_raises_an_error_event_with_its_code(newline: bytes) -> None:
    # Also as the body's last line without its newline: never passed on as an event.
    err = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                       "message": "too old resource version"}}
    ok = {"type": "ADDED", "object": {"metadata": {"name": "a"}}}
    resp = _Resp(json.dumps(ok).encode() + b"\n" + json.dumps(err).encode() + newline)
    seen = []
    with pytest.raises(ApiException) as e:
        for ev in WatchStream(resp).events():
            seen.append(ev)
    assert seen == [ok] and e.value.status == 410 and "Expired" in str(e.value.reason)
    assert resp.closed


def test_an_error_event_without_a_numeric_code_is_raised_with_status_0() -> None:
    err = {"type": "ERROR", "object": {"code": "gone", "reason": "X", "message": "y"}}
    with pytest.raises(ApiException) as e:
        list(WatchStream(_Resp(json.dumps(err).encode() + b"\n")).events())
    assert e.value.status == 0 and "X: y" in str(e.value.reason)


def test_a_bind_after_the_pool_was_closed_opens_it_again(api: KubeAPIDouble) -> None:
    api.put_node({"metadata": {"name": "a"}, "status": {}})
    for name in ("p", "q"):
        api.put_pod(pod_obj(name, gpus=1))
    binder = KubeBinder(api_client(api))
    binder.bind("default", "p", "", "a", {"x/a": "1"})
    # Its pools closed and dropped (what urllib3 1.x's manager did on eviction, and what
    # closing the client does): the pool the binder looked up is closed.
    pm = binder.api_client.rest_client.pool_manager
    for key in pm.pools.keys():  # noqa: SIM118 - the container refuses iteration
        pm.pools[key].close()
    pm.clear()
    binder.bind("default", "q", "", "a", {"x/a": "2"})
    for name, v in (("p", "1"), ("q", "2")):
        pod = api.get_pod("default", name)
        assert pod is not None and pod["spec"]["nodeName"] == "a"
        assert pod["metadata"]["annotations"]["x/a"] == v


def test_the_bearer_token_is_reused_for_a_second_then_read_again(api: KubeAPIDouble) -> None:
    """Reading the token runs the configuration's refresh hook (an environment scan per bind
    before); a rotated token is picked up once the reuse window has passed."""
    client = api_client(api)
    reads: list[float] = []
    token = ["Bearer one"]

    def refresh(cfg: object) -> None:
        reads.append(now[0])
        client.configuration.api_key["BearerToken"] = token[0]

    client.configuration.refresh_api_key_hook = refresh
    now = [100.0]
    binder = KubeBinder(client, clock=lambda: now[0])
    assert binder._bearer() == "Bearer one"
    token[0] = "Bearer two"
    now[0] += TOKEN_REUSE_S / 2
    assert binder._bearer() == "Bearer one" and reads == [100.0]
    now[0] += TOKEN_REUSE_S
    assert binder._bearer() == "Bearer two" and len(reads) == 2
    now[0] -= 10 * TOKEN_REUSE_S  # a clock that went back never pins the old token
    assert binder._bearer() == "Bearer two" and len(reads) == 3
    api.put_node({"metadata": {"name": "a"}, "status": {}})
    api.put_pod(pod_obj("p", gpus=1))
    binder.bind("default", "p", "", "a")  # the bind path reads it through the same cache
    assert len(reads) == 3
