"""A `gts` command that only groups subcommands (`gts topo`, `gts agent`, `gts status`): given
no subcommand it prints its help to stderr and exits with the usage code.

In topology, the bottom of the import graph, so the node agent's command line can use it too.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_USAGE = 2


def add_command_group(subparsers: Any, name: str, help_text: str, description: str | None,
                      dest: str) -> Any:
    """Register `name` on the dispatcher's subparsers; returns its own subparsers."""
    group = subparsers.add_parser(name, help=help_text, description=description,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    group.set_defaults(func=lambda args: _usage(group))
    return group.add_subparsers(dest=dest, metavar="SUBCOMMAND")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE
