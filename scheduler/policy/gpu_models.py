"""GPU model names as people write them, matched against the product names nodes report.

Nodes report NVIDIA's product string (`NVIDIA H100 80GB HBM3`, `NVIDIA A100-SXM4-80GB`), the
node agent's label carries it with dashes (`NVIDIA-H100-80GB-HBM3`: label values hold no
spaces), traces use short names (`V100M32`, `T4`) and people write families (`A100`,
`H100-80GB`). The rules, applied to both the name written and the model:

1. Case does not matter, and spaces, dashes and underscores are one and the same separator,
   so a name splits into words: `NVIDIA-H100-80GB-HBM3` = `nvidia h100 80gb hbm3`.
2. The vendor and brand words NVIDIA, Tesla, GeForce and Quadro may be left out.
3. A memory size may be written with or without the B: `80G` = `80GB`.
4. A name matches a model when its words appear among the model's words, whole and in the same
   order (others may sit in between).

Examples (model -> names that match it / do not):
- `NVIDIA A100-SXM4-80GB`: `A100`, `a100-80gb`, `A100 SXM4`, `NVIDIA-A100-SXM4-80GB` /
  `A10` (whole words), `A100-40GB`, `80GB-A100` (order).
- `NVIDIA H100 80GB HBM3`: `H100`, `H100-80GB`, `NVIDIA-H100-80GB-HBM3`, `h100 hbm3` / `H200`.
- `NVIDIA L40S`: `L40S` / `L40`, `L4`.
- `V100M32` (Alibaba trace): `V100M32` / `V100` (the trace's names are single words).

A pod lists several names (`A100|H100`); a node fits when its model matches any of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from scheduler.contract.request import PodRequest, RequestError

# Words a product string carries that say nothing about the GPU itself.
VENDOR_WORDS = frozenset({"nvidia", "tesla", "geforce", "quadro"})
_SEPARATORS = re.compile(r"[\s\-_]+")
_MEMORY = re.compile(r"^(\d+)g$")


def model_words(name: str) -> tuple[str, ...]:
    """The words of a model name after rules 1-3 (lower case, vendor words dropped)."""
    words = (w for w in _SEPARATORS.split(name.strip().casefold()) if w)
    return tuple(_MEMORY.sub(r"\1gb", w) for w in words if w not in VENDOR_WORDS)


def _in_order(want: tuple[str, ...], have: tuple[str, ...]) -> bool:
    it = iter(have)
    return all(any(w == h for h in it) for w in want)


def model_matches(name: str, model: str) -> bool:
    """True when the name a person wrote matches the node's GPU model (module rules)."""
    want = model_words(name)
    return bool(want) and _in_order(want, model_words(model))


def accepts(names: Iterable[str], model: str) -> bool:
    """True when `model` matches any of `names` (empty `names`: any model)."""
    names = tuple(names)
    return not names or any(model_matches(n, model) for n in names)


@lru_cache(maxsize=4096)
def _matching(names: frozenset[str], models: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(i for i, m in enumerate(models) if any(model_matches(n, m) for n in names))


def matching_model_ids(names: frozenset[str], models: Sequence[str]) -> np.ndarray:
    """Indices into `models` that match any of `names` (int32; cached per distinct pair)."""
    return np.array(_matching(names, tuple(models)), dtype=np.int32)


def unmatched_names(names: frozenset[str], models: Sequence[str]) -> list[str]:
    """The names (sorted) that match none of `models`."""
    return sorted(n for n in names if not any(model_matches(n, m) for m in models))


def check_models(req: PodRequest, known_models: frozenset[str]) -> None:
    """Reject a request whose GPU model names match no node's model (a typo would otherwise
    pend forever); names match by this module's rules."""
    if not req.allowed_models:
        return
    known = sorted(known_models)
    unknown = unmatched_names(req.allowed_models, known)
    if len(unknown) == len(req.allowed_models):
        raise RequestError(
            "allowed_models", "|".join(unknown), f"no node has a GPU model matching this "
            f"(names match whole words, any case, '-' = ' ', e.g. A100 or H100-80GB); "
            f"models in the cluster: {', '.join(known) or 'none'}"
        )
