"""`gts`: one console script; each subcommand lives with the package it drives."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable

# name -> (module with add_parser(subparsers), help). Imported lazily so that `gts topo` does
# not pay for the Kubernetes client and the simulator does not pay for the HTTP server.
EXIT_USAGE = 2
EXIT_PIPE_CLOSED = 2  # the reader went away (`... | head`); gts has always exited 2 there
EXIT_INTERRUPTED = 130  # 128 + SIGINT

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "topo": ("topology.cli", "GPU topologies: presets, show, parse"),
    "serve": ("scheduler.extender.cli", "run the kube-scheduler extender"),
    "simulate": ("bench.cli", "replay a workload through several policies and write a report"),
    "plan": ("bench.plan", "capacity planning: the smallest cluster per policy for a target"),
    "cluster": ("bench.cluster_export", "cluster specs: export a running cluster's nodes"),
    "bench": ("bench.perf_cli", "performance benchmarks (policy, extender, e2e)"),
    "agent": ("scheduler.nodeagent.cli", "node agent: topology publisher and device plugin"),
    "status": ("scheduler.status.cli", "why a pod is pending; what holds a node's GPUs"),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `gts` command."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="gts", description="GPU topology scheduler")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        if argv and argv[0] != name:
            sub.add_parser(name, help=help_text)
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name):
                sub.add_parser(name, help=f"{help_text} (not available in this build)")
                continue
            raise
        mod.add_parser(sub)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return exit_code_of(lambda: args.func(args))


def exit_code_of(command: Callable[[], int | None]) -> int:
    """Run a command line's body and return its exit code; a reader that went away
    (`gts topo show ... | head`, `python -m bench ... | head`) or Ctrl-C ends it quietly."""
    try:
        code = int(command() or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE_CLOSED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
