"""bench.pprof_top reads Go CPU profiles (profile.proto) and ranks functions; bench.e2e's
--profile-scheduler reads kube-scheduler's parts from it."""

from __future__ import annotations

import gzip

import pytest

from bench.e2e import SCHEDULER_PARTS, scheduler_parts
from bench.pprof_top import ProfileError, rank, report


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def _packed(xs: list[int]) -> bytes:
    return b"".join(_varint(x) for x in xs)


def _profile(stacks: list[tuple[list[str], int]]) -> bytes:
    """A profile.proto whose samples are (stack leaf first, nanoseconds); one location and
    function per name."""
    strings = [""]
    funcs: dict[str, int] = {}
    body = b""
    for stack, _ in stacks:
        for name in stack:
            if name not in funcs:
                funcs[name] = len(funcs) + 1
                strings.append(name)
    for stack, ns in stacks:
        sample = _field(1, _packed([funcs[n] for n in stack])) + _field(2, _packed([1, ns]))
        body += _field(2, sample)
    for name, fid in funcs.items():
        body += _field(4, _field(1, fid) + _field(4, _field(1, fid)))  # location id = fid
        body += _field(5, _field(1, fid) + _field(2, strings.index(name)))
    for s in strings:
        body += _field(6, s.encode())
    return gzip.compress(body)


def test_cumulative_and_flat_shares() -> None:
    data = _profile([(["leaf", "mid", "main"], 6_000_000_000),
                     (["mid", "main"], 2_000_000_000),
                     (["other", "main"], 2_000_000_000)])
    r = rank(data)
    assert r.total_s == pytest.approx(10.0)
    assert r.share("main") == pytest.approx(1.0)
    assert r.share("mid") == pytest.approx(0.8)
    assert r.share("leaf") == pytest.approx(0.6)
    assert r.share("absent") == 0.0
    assert dict(r.flat) == pytest.approx({"leaf": 0.6, "mid": 0.2, "other": 0.2})
    assert r.cumulative[0][0] == "main"
    assert "80.0%  mid" in report(r)


def test_a_recursive_function_counts_once_per_sample() -> None:
    r = rank(_profile([(["f", "f", "f", "main"], 1_000)]))
    assert r.share("f") == pytest.approx(1.0)


def test_uncompressed_and_empty_profiles() -> None:
    raw = gzip.decompress(_profile([(["a"], 5)]))
    assert rank(raw).share("a") == 1.0
    assert rank(b"").total_s == 0.0


@pytest.mark.parametrize("bad", [b"\x1f\x8b\x08garbage", b"\x12\x05ab", b"\x12\xff"])
def test_broken_profiles_raise_profile_error(bad: bytes) -> None:
    with pytest.raises(ProfileError):
        rank(bad)


def test_scheduler_parts_match_kube_scheduler_function_names() -> None:
    fit = "k8s.io/kubernetes/pkg/scheduler/framework/plugins/noderesources.(*Fit).Filter"
    filters = "k8s.io/kubernetes/pkg/scheduler.(*Scheduler).findNodesThatPassFilters.func1"
    ext = "k8s.io/kubernetes/pkg/scheduler.findNodesThatPassExtenders"
    score = "k8s.io/kubernetes/pkg/scheduler/framework/runtime.(*frameworkImpl).RunScorePlugins"
    data = _profile([([fit, filters], 3_000), ([filters], 1_000), ([ext], 1_000),
                     (["runtime.gcBgMarkWorker"], 4_000), ([score + ".func2"], 500),
                     ([score, "k8s.io/kubernetes/pkg/scheduler.prioritizeNodes"], 500)])
    parts = scheduler_parts(data)
    assert set(parts) == {p for p, _ in SCHEDULER_PARTS} | {"profiled_cpu_s"}
    assert parts["filter plugins"] == pytest.approx(0.4)
    assert parts["of them NodeResourcesFit"] == pytest.approx(0.3)
    assert parts["extender filter call"] == pytest.approx(0.1)
    assert parts["garbage collector"] == pytest.approx(0.4)
    # the parallel part (.func2, no caller) and the sequential one, each sample counted once
    assert parts["scoring"] == pytest.approx(0.1)
    assert parts["binding cycle"] == 0.0
