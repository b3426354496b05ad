"""Valid-request latency while hostile traffic flows (issue 8): p99 with garbage / p99 quiet.

`gts serve --cluster` runs in its own process (N DGX-H100 nodes), as in extender_load. This
process plays kube-scheduler on one keep-alive connection (filter -> prioritize -> bind per
pod, names only) twice: once with nothing else going on (quiet), once while a second
process sends garbage at `--garbage-rps` requests per second and holds `--idle` idle
sockets (more than the server's connection cap); the two phases alternate in `--rounds`
rounds, so a drift of the machine's load hits both alike. The garbage mix, one kind per request in
turn: Content-Length values the server must refuse (`1_0`, `+N`, ` N`, over the limit),
bodies shorter than their Content-Length (left hanging), malformed JSON, integer literals
over 4,300 digits, lone UTF-16 surrogates in names, a pod with a 250 KB
`gts.dev/gpu-models` annotation filtered against every node, binds of pods never filtered
and of other schedulers' pods.

Reports p50/p99 of a valid pod's filter + prioritize in both phases and their ratio
(goal: p99 within 1.5x of quiet), the garbage actually sent, and how many valid requests had
to reconnect (a connection evicted at the cap counts; Go's client retries those too).
Run: `python -m bench.extender_garbage [--nodes 1000] [--pods 300] [--garbage-rps 100]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import socket
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.extender_load import Client, Server, _ms, _pick, cluster_yaml, pod_object
from scheduler.cli import exit_code_of
from scheduler.cluster.static import load_cluster_file
from scheduler.constants import ALLOWED_MODELS_ANNOTATION

GOAL_RATIO = 1.5


def _garbage_bodies(names: list[str]) -> list[bytes]:
    """Whole HTTP requests, one per kind of garbage (see the module docstring)."""
    def post(path: str, body: bytes, length: str | None = None) -> bytes:
        cl = str(len(body)) if length is None else length
        return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {cl}\r\n\r\n").encode() + body

    huge = pod_object("huge", 1, 0)
    huge["metadata"]["annotations"] = {ALLOWED_MODELS_ANNOTATION: "X" * 250_000}
    foreign = pod_object("foreign", 1, 0)
    foreign["spec"]["schedulerName"] = "default-scheduler"
    surrogate = (b'{"Pod":{"metadata":{"name":"p\\ud800","namespace":"x","uid":"u"},'
                 b'"spec":{"containers":[]}},"NodeNames":["n\\udc00"]}')
    return [
        post("/filter", b"{}", length="1_0"),
        post("/filter", b"{}", length="+2"),
        post("/filter", b"{}", length=" 2"),
        post("/filter", b"", length=str(10**12)),
        post("/filter", b"{", length="4096"),  # short body: left hanging
        post("/filter", b'{"Pod": [1, 2'),
        post("/filter", b'{"Pod": {"metadata": {"name": "p"}}, "x": ' + b"9" * 5000 + b"}"),
        post("/filter", surrogate),
        post("/filter", json.dumps({"Pod": huge, "NodeNames": names}).encode()),
        post("/bind", json.dumps({"PodName": "ghost", "PodNamespace": "x", "PodUID": "u",
                                  "Node": names[0]}).encode()),
        post("/filter", json.dumps({"Pod": foreign, "NodeNames": names[:50]}).encode()),
    ]


def _garbage(port: int, names: list[str], rps: float, idle: int, stop: Any,
             sent: Any, go: Any) -> None:
    """Runs in its own process: idle sockets plus `rps` garbage requests per second, while
    `go.value` is 1 (the quiet phases set 0: every socket is closed then); ends when
    `stop.value` is 1. Flags are lock-free shared values polled here, so this process dying
    at any point can never leave the parent waiting on a lock it held."""

    def wait_go(t: float) -> bool:
        end = time.monotonic() + t
        while not go.value and not stop.value and time.monotonic() < end:
            time.sleep(0.02)
        return bool(go.value)

    bodies = _garbage_bodies(names)
    held: list[socket.socket] = []
    lock = threading.Lock()

    def hold_idle() -> None:
        while not stop.value:
            if not go.value:
                with lock:
                    for s in held:
                        s.close()
                    held.clear()
                wait_go(0.5)
                continue
            with lock:
                held[:] = [s for s in held if s.fileno() >= 0]
                missing = idle - len(held)
            for _ in range(max(missing, 0)):
                try:
                    held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                except OSError:
                    break
            time.sleep(0.5)

    def fire(k: int) -> None:
        rng = random.Random(k)
        i = k
        period = 4.0 / rps  # four senders share the rate
        while not stop.value:
            if not wait_go(0.5):
                continue
            t0 = time.monotonic()
            body = bodies[i % len(bodies)]
            i += rng.randint(1, 3)
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(body)
                if not body.endswith(b"{"):  # the short body is left hanging
                    s.settimeout(5)
                    with contextlib.suppress(OSError):
                        s.recv(65536)
                    s.close()
                else:
                    with lock:
                        held.append(s)
                with lock:
                    sent.value += 1
            except OSError:
                pass
            time.sleep(max(0.0, period - (time.monotonic() - t0)))

    threads = [threading.Thread(target=hold_idle, daemon=True)] + [
        threading.Thread(target=fire, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    while not stop.value:
        time.sleep(0.1)
    for s in held:
        s.close()


def _phase(port: int, names: list[str], pods: int, rng: random.Random) -> dict[str, Any]:
    """Valid pods: filter -> prioritize -> bind each; latency of filter + prioritize."""
    both: list[float] = []
    reconnects = 0
    c = Client(port)
    for i in range(pods):
        pod = pod_object(f"valid-{rng.random():.12f}-{i}", *_pick(rng))
        body = json.dumps({"Pod": pod, "NodeNames": names}).encode()
        for _attempt in range(3):
            try:
                t0 = time.perf_counter()
                reply = json.loads(c.exchange("filter", body))
                t1 = time.perf_counter() - t0
                passed = reply["NodeNames"]
                t2 = 0.0
                if len(passed) > 1:
                    pb = json.dumps({"Pod": pod, "NodeNames": passed}).encode()
                    t0 = time.perf_counter()
                    c.exchange("prioritize", pb)
                    t2 = time.perf_counter() - t0
                both.append(t1 + t2)
                if passed:
                    c.exchange("bind", json.dumps({
                        "PodName": pod["metadata"]["name"], "PodNamespace": "bench",
                        "PodUID": pod["metadata"]["uid"], "Node": passed[0]}).encode())
                break
            except (OSError, ConnectionError, RuntimeError, ValueError):
                reconnects += 1  # evicted or reset: reconnect, as Go's client would
                c.conn.close()
                c = Client(port)
    c.conn.close()
    return {"times": both, "reconnects": reconnects}


def run(nodes: int, pods: int, rps: float, idle: int, seed: int,
        rounds: int = 4) -> dict[str, Any]:
    """Quiet and garbage phases, interleaved in `rounds` so that a drift of the machine's
    load hits both alike; one server; a JSON-able dict."""
    rng = random.Random(seed)
    out: dict[str, Any] = {"nodes": nodes, "pods": pods, "garbage_rps": rps, "idle": idle,
                           "seed": seed, "rounds": rounds, "goal_ratio": GOAL_RATIO,
                           "loadavg_before": list(os.getloadavg())}
    per = max(1, pods // rounds)
    quiet: list[float] = []
    noisy: list[float] = []
    reconnects = {"quiet": 0, "garbage": 0}
    with tempfile.TemporaryDirectory() as tmp:
        cfile = Path(tmp) / "cluster.yaml"
        cfile.write_text(cluster_yaml(nodes))
        names = [s.name for s in load_cluster_file(cfile)]
        server = Server(cfile, Path(tmp) / "serve.log")
        ctx = multiprocessing.get_context("spawn")
        stop, go, sent = ctx.RawValue("i", 0), ctx.RawValue("i", 0), ctx.RawValue("l", 0)
        g = ctx.Process(target=_garbage, args=(server.port, names, rps, idle, stop, sent, go),
                        daemon=True)
        g.start()
        garbage_s = 0.0
        try:
            _phase(server.port, names, min(pods, 50), rng)  # warm up
            for _ in range(rounds):
                r = _phase(server.port, names, per, rng)
                quiet += r["times"]
                reconnects["quiet"] += r["reconnects"]
                if not g.is_alive():
                    raise RuntimeError(f"the garbage process died (exit code {g.exitcode})")
                go.value = 1
                time.sleep(1.0)  # let the idle sockets and the garbage stream build up
                t0 = time.monotonic()
                r = _phase(server.port, names, per, rng)
                garbage_s += time.monotonic() - t0 + 1.0
                go.value = 0
                noisy += r["times"]
                reconnects["garbage"] += r["reconnects"]
                time.sleep(0.5)
            out["server_alive"] = server.proc.poll() is None
        finally:
            stop.value = 1
            g.join(30)
            if g.is_alive():
                g.kill()
            server.stop()
    out["quiet"] = {"filter_prioritize_ms": _ms(quiet), "reconnects": reconnects["quiet"]}
    out["garbage"] = {"filter_prioritize_ms": _ms(noisy), "reconnects": reconnects["garbage"]}
    out["garbage_sent"] = int(sent.value)
    out["garbage_rps_achieved"] = round(sent.value / max(garbage_s, 1e-9), 1)
    q = out["quiet"]["filter_prioritize_ms"]["p99"]
    gp = out["garbage"]["filter_prioritize_ms"]["p99"]
    out["p99_ratio"] = round(gp / q, 2) if q else float("nan")
    out["met"] = bool(out["p99_ratio"] <= GOAL_RATIO)
    out["loadavg_after"] = list(os.getloadavg())
    return out


def table(res: dict[str, Any]) -> str:
    """A Markdown table of the result."""
    q, g = res["quiet"]["filter_prioritize_ms"], res["garbage"]["filter_prioritize_ms"]
    lines = [
        f"{res['nodes']} nodes, {res['pods']} valid pods per phase in {res['rounds']} "
        f"alternating rounds, garbage "
        f"{res['garbage_rps_achieved']}/s ({res['garbage_sent']} requests) + {res['idle']} "
        f"idle sockets; load {res['loadavg_before'][0]:.2f} -> {res['loadavg_after'][0]:.2f}",
        "",
        "| phase | filter+prioritize p50 ms | p99 ms | max ms | reconnects |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| quiet | {q['p50']} | {q['p99']} | {q['max']} | {res['quiet']['reconnects']} |",
        f"| garbage | {g['p50']} | {g['p99']} | {g['max']} | "
        f"{res['garbage']['reconnects']} |",
        "",
        f"p99 ratio {res['p99_ratio']} (goal <= {GOAL_RATIO}): "
        f"{'met' if res['met'] else 'NOT met'}; server alive: {res['server_alive']}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.extender_garbage`."""
    ap = argparse.ArgumentParser(prog="python -m bench.extender_garbage",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=300, help="valid pods per phase")
    ap.add_argument("--garbage-rps", type=float, default=100.0)
    ap.add_argument("--idle", type=int, default=300, help="idle sockets held by the garbage")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=4, help="quiet/garbage alternations")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = run(a.nodes, a.pods, a.garbage_rps, a.idle, a.seed, a.rounds)
    print(json.dumps(res, indent=2) if a.json else table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_code_of(main))
