"""`gts status probe URL`: the extender at URL (its plain metrics port) is ready, its cache
synced, and it exports its metrics. The Helm chart's smoke test (`helm test`) runs it."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

_SYNCED = re.compile(r"^gts_cache_synced\s+([0-9.eE+-]+)\s*$", re.M)


class ProbeError(Exception):
    """The extender is not healthy; the message says what failed."""


def _get(url: str, timeout_s: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return int(r.status), r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ProbeError(f"{url}: cannot connect: {reason}") from None


def probe(base_url: str, timeout_s: float = 10.0) -> str:
    """Check /healthz, /readyz and /metrics under base_url; a one-line summary or ProbeError."""
    if not base_url.startswith(("http://", "https://")):
        raise ProbeError(f"{base_url!r}: expected an http:// or https:// URL")
    base = base_url.rstrip("/")
    code, _ = _get(base + "/healthz", timeout_s)
    if code != 200:
        raise ProbeError(f"{base}/healthz answered {code}: the extender is not live")
    code, body = _get(base + "/readyz", timeout_s)
    if code != 200:
        raise ProbeError(f"{base}/readyz answered {code}: not ready ({body.strip()[:200]}); "
                         "the cache has not synced with the API server: check the extender's "
                         "logs and its RBAC (nodes and pods list/watch)")
    code, body = _get(base + "/metrics", timeout_s)
    m = _SYNCED.search(body) if code == 200 else None
    if m is None:
        raise ProbeError(f"{base}/metrics answered {code} without gts_cache_synced")
    if float(m[1]) != 1.0:
        raise ProbeError(f"{base}/metrics: gts_cache_synced is {m[1]}, expected 1")
    nodes = re.search(r"^gts_cache_nodes\s+([0-9.eE+-]+)\s*$", body, re.M)
    n = int(float(nodes[1])) if nodes else 0
    return f"{base}: live, ready, cache synced ({n} nodes)"
