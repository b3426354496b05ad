"""A `gts` subcommand run as its own program (`python -m bench`, `python -m bench.plan`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from scheduler.cli import exit_code_of

AddParser = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def run_subcommand(name: str, add_parser: AddParser, argv: Sequence[str]) -> int:
    """Parse `argv` as `gts NAME argv...` and run it; the arguments are kept (`args.argv`) so
    that reports quote the command as it was typed."""
    parser = argparse.ArgumentParser(prog="gts")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args([name, *argv])
    args.argv = list(argv)
    return exit_code_of(lambda: args.func(args))
