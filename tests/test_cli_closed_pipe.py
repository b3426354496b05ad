"""A command whose reader went away (`gts ... | head`) ends quietly, without a traceback."""

from __future__ import annotations

import subprocess
import sys

from scheduler.cli import EXIT_PIPE_CLOSED

BODY = ("import sys; from scheduler.cli import exit_code_of; "
        "sys.exit(exit_code_of(lambda: print('x' * 1_000_000)))")


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    p = subprocess.Popen([sys.executable, "-c", BODY], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # the reader goes away before the command writes
    err = p.stderr.read().decode()
    p.stderr.close()
    assert p.wait(timeout=60) == EXIT_PIPE_CLOSED
    assert err == ""


def test_a_reader_that_stays_gets_everything() -> None:
    out = subprocess.run([sys.executable, "-c", BODY], capture_output=True, check=True)
    assert out.stdout == b"x" * 1_000_000 + b"\n" and out.stderr == b""
