"""Read a Go CPU profile (pprof's profile.proto, gzipped, as /debug/pprof/profile serves it)
and rank its functions by the share of samples they are in (cumulative) or on top of (flat).

kube-scheduler's profiles name their functions in the file itself (Go's runtime/pprof
symbolizes as it writes), so no binary or Go toolchain is needed; this reads the few fields
of profile.proto that ranking needs (samples, locations, lines, functions, strings).

    python -m bench.pprof_top PROFILE [--top N]
"""

from __future__ import annotations

import argparse
import gzip
import sys
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

# profile.proto field numbers (github.com/google/pprof/proto/profile.proto)
_SAMPLE, _LOCATION, _FUNCTION, _STRINGS = 2, 4, 5, 6
_SAMPLE_LOCATIONS, _SAMPLE_VALUES = 1, 2
_LOCATION_ID, _LOCATION_LINE = 1, 4
_LINE_FUNCTION = 1
_FUNCTION_ID, _FUNCTION_NAME = 1, 2


class ProfileError(ValueError):
    """Not a readable profile.proto."""


@dataclass(frozen=True)
class Ranking:
    """Functions by share of the profile's CPU time (0..1), largest first."""

    total_s: float
    cumulative: list[tuple[str, float]]
    flat: list[tuple[str, float]]

    def share(self, function: str) -> float:
        """The cumulative share of one function (0 when absent)."""
        return dict(self.cumulative).get(function, 0.0)


def _varint(b: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if i >= len(b):
            raise ProfileError("truncated varint")
        c = b[i]
        i += 1
        out |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return out, i
        if shift > 63:
            raise ProfileError("varint over 64 bits")


def _fields(b: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of one message."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
            yield num, wire, v
        elif wire == 2:
            n, i = _varint(b, i)
            if i + n > len(b):
                raise ProfileError("truncated field")
            yield num, wire, b[i:i + n]
            i += n
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ProfileError(f"wire type {wire} at byte {i}")


def _ints(value: int | bytes) -> list[int]:
    """A repeated integer field, packed or not."""
    if isinstance(value, int):
        return [value]
    out, i = [], 0
    while i < len(value):
        v, i = _varint(value, i)
        out.append(v)
    return out


def samples(data: bytes, value_index: int = 1) -> list[tuple[list[str], int]]:
    """Each sample's stack (function names, leaf first) and value; `value_index` 1 is Go CPU
    profiles' nanoseconds column."""
    try:
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError, zlib.error) as e:
        raise ProfileError(f"not gzip: {e}") from None
    raw_samples: list[tuple[list[int], list[int]]] = []
    locations: dict[int, list[int]] = {}
    functions: dict[int, int] = {}
    strings: list[str] = []
    for num, _, v in _fields(raw):
        if num == _SAMPLE and isinstance(v, bytes):
            locs: list[int] = []
            vals: list[int] = []
            for n2, _, v2 in _fields(v):
                if n2 == _SAMPLE_LOCATIONS:
                    locs += _ints(v2)
                elif n2 == _SAMPLE_VALUES:
                    vals += _ints(v2)
            raw_samples.append((locs, vals))
        elif num == _LOCATION and isinstance(v, bytes):
            lid, funcs = 0, []
            for n2, _, v2 in _fields(v):
                if n2 == _LOCATION_ID and isinstance(v2, int):
                    lid = v2
                elif n2 == _LOCATION_LINE and isinstance(v2, bytes):
                    funcs += [f for n3, _, f in _fields(v2)
                              if n3 == _LINE_FUNCTION and isinstance(f, int)]
            locations[lid] = funcs
        elif num == _FUNCTION and isinstance(v, bytes):
            fid = name = 0
            for n2, _, v2 in _fields(v):
                if n2 == _FUNCTION_ID and isinstance(v2, int):
                    fid = v2
                elif n2 == _FUNCTION_NAME and isinstance(v2, int):
                    name = v2
            functions[fid] = name
        elif num == _STRINGS and isinstance(v, bytes):
            strings.append(v.decode("utf-8", "replace"))
    names = {fid: strings[s] if 0 <= s < len(strings) else "?" for fid, s in functions.items()}
    # A location's lines are innermost first (inlined calls), locations leaf first.
    return [([names.get(f, "?") for lid in locs for f in locations.get(lid, [])],
             vals[value_index] if len(vals) > value_index else vals[0])
            for locs, vals in raw_samples if vals]


def rank(data: bytes, value_index: int = 1) -> Ranking:
    """Rank a profile's functions by share of its samples."""
    flat: Counter[str] = Counter()
    cum: Counter[str] = Counter()
    total = 0
    for stack, v in samples(data, value_index):
        total += v
        if stack:
            flat[stack[0]] += v
        for n in set(stack):
            cum[n] += v
    if total <= 0:
        return Ranking(0.0, [], [])
    return Ranking(total / 1e9, [(n, v / total) for n, v in cum.most_common()],
                   [(n, v / total) for n, v in flat.most_common()])


def part_shares(data: bytes, parts: Sequence[tuple[str, Sequence[str]]]
                ) -> tuple[float, dict[str, float]]:
    """(CPU seconds, share of samples per part), a sample being in a part when a function on
    its stack contains one of the part's patterns: a part that runs in goroutines of its own
    (kube-scheduler's parallel filter and score) has no single caller on their stacks."""
    total = 0
    hits = dict.fromkeys((name for name, _ in parts), 0)
    for stack, v in samples(data):
        total += v
        for name, patterns in parts:
            if any(p in f for f in stack for p in patterns):
                hits[name] += v
    if total <= 0:
        return 0.0, dict.fromkeys(hits, 0.0)
    return total / 1e9, {k: v / total for k, v in hits.items()}


def report(r: Ranking, top: int = 25) -> str:
    """The top functions, cumulative then flat, as text."""
    lines = [f"{r.total_s:.2f} s of CPU samples", "cumulative:"]
    lines += [f"  {100 * s:5.1f}%  {n}" for n, s in r.cumulative[:top]]
    lines.append("flat:")
    lines += [f"  {100 * s:5.1f}%  {n}" for n, s in r.flat[:top]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.pprof_top PROFILE`."""
    ap = argparse.ArgumentParser(prog="python -m bench.pprof_top",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", help="a CPU profile from /debug/pprof/profile")
    ap.add_argument("--top", type=int, default=25, help="functions listed (default 25)")
    args = ap.parse_args(argv)
    try:
        with open(args.profile, "rb") as f:
            print(report(rank(f.read()), args.top))
    except (OSError, ProfileError) as e:
        print(f"{args.profile}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
