"""Check a report folder before a long run, so a bad `--out` fails in a second, not after the
simulation: it must be a folder (or not exist yet, with a creatable parent) that we can write,
and the files we are about to write must be plain files or absent.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


class OutPathError(ValueError):
    """An output folder that cannot take the report; the message names the path."""


def check_out_dir(out: str | Path, files: Sequence[str] = ()) -> Path:
    """Create `out` if needed and prove it writable; returns it as a Path."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise OutPathError(f"--out {str(out)!r}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutPathError(f"--out {str(out)!r}: cannot create the folder: "
                           f"{e.strerror or e}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutPathError(f"--out {str(out)!r}: the folder is not writable")
    for name in files:
        f = folder / name
        if f.exists() and (f.is_dir() or not os.access(f, os.W_OK)):
            raise OutPathError(f"--out {str(out)!r}: {name} exists and cannot be overwritten")
    probe = folder / ".gts-write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutPathError(f"--out {str(out)!r}: cannot write there: {e.strerror or e}") from None
    return folder
