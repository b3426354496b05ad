"""`gts bench policy|extender|e2e [--json]`: the performance benchmarks."""

from __future__ import annotations

import argparse
import importlib


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `bench` with its two benchmarks."""
    p = subparsers.add_parser("bench", help="performance benchmarks (policy, extender, e2e)")
    sub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    from bench.policy_perf import add_arguments
    pol = sub.add_parser("policy", help="policy decisions per second (filter+score+assign)")
    add_arguments(pol)
    pol.set_defaults(func=_policy)
    ext = sub.add_parser("extender", help="extender filter+prioritize latency over HTTP "
                         "(more options: python -m bench.extender_load --help)")
    ext.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ext.set_defaults(func=_extender)
    from bench.e2e import add_arguments as add_e2e_arguments
    e2e = sub.add_parser("e2e", help="time to bind through a real control plane: our profile "
                         "against kube-scheduler's default profile")
    add_e2e_arguments(e2e)
    e2e.set_defaults(func=_e2e)


def _policy(args: argparse.Namespace) -> int:
    from bench.policy_perf import run_args
    return run_args(args)


def _e2e(args: argparse.Namespace) -> int:
    from bench.e2e import run_args
    return run_args(args)


def _extender(args: argparse.Namespace) -> int:
    # Imported only when asked for: it pulls in the HTTP server and its client.
    try:
        mod = importlib.import_module("bench.extender_load")
    except ModuleNotFoundError as e:
        if e.name in ("bench.extender_load", "bench"):
            print("gts bench extender: bench/extender_load.py is not in this build "
                  "(the extender load benchmark has not landed yet)")
            return 2
        raise
    return int(mod.main(args) or 0)
