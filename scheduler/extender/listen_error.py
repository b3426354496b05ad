"""The one-line message for a listening socket the extender cannot open, naming the cause and
what to do about it (a port in use, a privileged port, an address not on this machine)."""

from __future__ import annotations

import errno
import socket


def describe_listen_error(e: OSError, host: str, ports: str) -> str | None:
    """What went wrong listening on host:ports, and what to change; one line. None when `e`
    is not about listening (a file that cannot be read, say)."""
    where = f"cannot listen on {host}:{ports}"
    if isinstance(e, socket.gaierror):
        return f"{where}: {host!r} does not resolve to an address (--host)"
    if e.errno == errno.EADDRINUSE:
        return (f"{where}: the port is in use by another process; stop it or choose "
                "another port")
    if e.errno == errno.EACCES:
        return (f"{where}: permission denied; ports below 1024 need root or "
                "CAP_NET_BIND_SERVICE: choose a port of 1024 or above")
    if e.errno == errno.EADDRNOTAVAIL:
        return (f"{where}: {host} is not an address of this machine; use 127.0.0.1, 0.0.0.0 "
                "(every interface) or one of this machine's addresses (--host)")
    return None
