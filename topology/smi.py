"""Read and write the text of `nvidia-smi topo -m`.

The parser takes the output as people paste it: tab- or space-separated, with shell prompts or
titles above the header, with or without NIC rows and columns (`mlx5_N` names, or `NICn` names
resolved by the "NIC Legend" section), with or without the CPU Affinity / NUMA Affinity /
GPU NUMA ID columns, and with the legends after the matrix. Anything it cannot read raises
TopologyParseError naming the 1-based line and the offending token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from topology.links import LinkError, normalize_link
from topology.model import GPU, NIC, NodeTopology, TopologyError

_GPU_RE = re.compile(r"^GPU(\d+)$")
_NIC_LEGEND_RE = re.compile(r"^\s*(NIC\d+)\s*:\s*(\S+)\s*$")
# Values that belong to the affinity columns; seeing one where a link cell is expected means
# the row is short, not that the link kind is unknown.
_AFFINITY_VALUE_RE = re.compile(r"^(N/A|\d+(-\d+)?(,\d+(-\d+)?)*)$", re.IGNORECASE)
_NUMA_LIST_RE = re.compile(r"^\d+([-,]\d+)+$")

CPU_AFFINITY = "CPU Affinity"
NUMA_AFFINITY = "NUMA Affinity"
# Multi-word column titles after the link columns, longest first so "GPU NUMA ID" is not
# mistaken for a device called GPU.
_AFFINITY_HEADERS: tuple[tuple[str, ...], ...] = (
    ("GPU", "NUMA", "ID"),
    ("CPU", "Affinity"),
    ("NUMA", "Affinity"),
)


class TopologyParseError(ValueError):
    """Text that is not a readable `nvidia-smi topo -m` matrix.

    `line` is the 1-based line number and `token` the offending token ("" when there is none).
    """

    def __init__(self, reason: str, line: int, token: str) -> None:
        super().__init__(f"line {line}: {reason} (token {token!r})")
        self.reason = reason
        self.line = line
        self.token = token


@dataclass(slots=True)
class _Row:
    line: int  # 1-based
    cells: list[str]  # normalized link kinds, one per device column
    raw: list[str]  # the tokens as written, for error messages
    affinity: dict[str, str]


def _tokens_with_spans(line: str) -> list[re.Match[str]]:
    return list(re.finditer(r"\S+", line))


def _find_header(lines: list[str]) -> int:
    """Index of the header line: the first line whose tokens start with GPU0."""
    for i, ln in enumerate(lines):
        toks = ln.split()
        if toks and toks[0] == "GPU0":
            if len(toks) > 1 and toks[1].upper() == "X":
                # A matrix row came first: the header is missing.
                raise TopologyParseError("matrix row before any header line", i + 1, "GPU0")
            return i
    first = next(((i, ln.split()[0]) for i, ln in enumerate(lines) if ln.strip()), None)
    if first is None:
        raise TopologyParseError("empty input: no topology matrix", 1, "")
    raise TopologyParseError("no header line starting with GPU0", first[0] + 1, first[1])


def _parse_header(line: str, lineno: int) -> tuple[list[str], int, list[str]]:
    """(device column names, number of GPU columns, affinity column titles)."""
    toks = line.split()
    devices: list[str] = []
    affinity: list[str] = []
    i = 0
    while i < len(toks):
        multi = next((h for h in _AFFINITY_HEADERS if tuple(toks[i : i + len(h)]) == h), None)
        if multi is not None:
            affinity.append(" ".join(multi))
            i += len(multi)
            continue
        tok = toks[i]
        if affinity:
            # An unknown title after the affinity columns (a newer nvidia-smi): keep it as a
            # one-word column so its values are consumed, and ignore them.
            affinity.append(tok)
        else:
            if tok in devices:
                raise TopologyParseError("duplicate column in header", lineno, tok)
            devices.append(tok)
        i += 1
    n_gpu = 0
    for name in devices:
        m = _GPU_RE.match(name)
        if m is None:
            break
        if int(m.group(1)) != n_gpu:
            raise TopologyParseError(f"GPU columns out of order: expected GPU{n_gpu}", lineno, name)
        n_gpu += 1
    for name in devices[n_gpu:]:
        if _GPU_RE.match(name):
            raise TopologyParseError("GPU column after NIC columns", lineno, name)
    return devices, n_gpu, affinity


def _affinity_cells(line: str, after: int, n_cols: int, lineno: int) -> list[str]:
    """The cells after the link cells, aligned to the affinity columns."""
    rest = line[after:]
    if "\t" in rest:
        # Tab-separated output keeps empty cells (a NIC row, an empty CPU Affinity). The text
        # before the first tab is the padding of the last link cell.
        cells = [c.strip() for c in rest.split("\t")[1:]]
        # nvidia-smi writes one tab too many before "GPU NUMA ID": drop empty cells until the
        # row fits its header.
        while len(cells) > n_cols and "" in cells:
            cells.remove("")
    else:
        cells = rest.split()
    if len(cells) > n_cols:
        raise TopologyParseError(
            f"unexpected token after the {n_cols} affinity column(s)", lineno, cells[n_cols]
        )
    return cells + [""] * (n_cols - len(cells))


def _parse_row(
    line: str, lineno: int, devices: list[str], self_col: int, affinity_cols: list[str]
) -> _Row:
    spans = _tokens_with_spans(line)
    name = spans[0].group()
    n = len(devices)
    cells: list[str] = []
    raw: list[str] = []
    for j in range(n):
        if j + 1 >= len(spans):
            raise TopologyParseError(
                f"short row {name}: {j} link cells, expected {n} (truncated matrix)", lineno, name
            )
        tok = spans[j + 1].group()
        try:
            kind = normalize_link(tok)
        except LinkError:
            if _AFFINITY_VALUE_RE.match(tok):
                raise TopologyParseError(
                    f"short row {name}: {j} link cells, expected {n} (truncated matrix)",
                    lineno,
                    tok,
                ) from None
            raise TopologyParseError(
                f"unknown link token in row {name}, column {devices[j]}", lineno, tok
            ) from None
        if (kind == "X") != (j == self_col):
            where = "on the diagonal" if j == self_col else f"off the diagonal ({devices[j]})"
            raise TopologyParseError(
                f"row {name}: {'expected X' if j == self_col else 'X'} {where}", lineno, tok
            )
        cells.append(kind)
        raw.append(tok)
    after = spans[n].end() if n else spans[0].end()
    values = _affinity_cells(line, after, len(affinity_cols), lineno)
    return _Row(lineno, cells, raw, dict(zip(affinity_cols, values, strict=True)))


def _numa(value: str, lineno: int) -> int | None:
    v = value.strip()
    if not v or v.upper() == "N/A":
        return None
    if v.isdigit():
        return int(v)
    if _NUMA_LIST_RE.match(v):
        return None  # spans several NUMA nodes: no single home node
    raise TopologyParseError("NUMA Affinity is not a node number or N/A", lineno, v)


def _nic_legend(lines: list[str]) -> dict[str, str]:
    """NICn -> real name from the "NIC Legend:" section, if any."""
    out: dict[str, str] = {}
    in_legend = False
    for ln in lines:
        if ln.strip().rstrip(":").lower() == "nic legend":
            in_legend = True
            continue
        if in_legend:
            m = _NIC_LEGEND_RE.match(ln)
            if m:
                out[m.group(1)] = m.group(2)
            elif ln.strip():
                in_legend = False
    return out


def parse_topo_m(
    text: str, model: str = "unknown", memory_mib: int = 0, *, name: str = ""
) -> NodeTopology:
    """Parse `nvidia-smi topo -m` text into a NodeTopology (GPUs of `model`, `memory_mib`).

    Raises TopologyParseError(line, token) on anything malformed.
    """
    lines = text.splitlines()
    h = _find_header(lines)
    devices, n_gpu, affinity_cols = _parse_header(lines[h], h + 1)
    col = {d: j for j, d in enumerate(devices)}
    rows: dict[str, _Row] = {}
    end = len(lines)  # index of the first line after the matrix
    for i in range(h + 1, len(lines)):
        ln = lines[i]
        toks = ln.split()
        if not toks:
            if rows:
                end = i
                break
            continue
        row_name = toks[0]
        if row_name not in col:
            if _GPU_RE.match(row_name):
                raise TopologyParseError("row has no column in the header", i + 1, row_name)
            end = i
            break
        if row_name in rows:
            raise TopologyParseError(
                f"duplicate row (first on line {rows[row_name].line})", i + 1, row_name
            )
        rows[row_name] = _parse_row(ln, i + 1, devices, col[row_name], affinity_cols)

    # Every GPU needs its row; NIC rows are optional, but all or none (a partial set means the
    # text was cut off).
    last_line = max((r.line for r in rows.values()), default=h + 1)
    nic_cols = devices[n_gpu:]
    required = devices[:n_gpu] + (nic_cols if any(c in rows for c in nic_cols) else [])
    for d in required:
        if d not in rows:
            raise TopologyParseError(
                f"truncated matrix: no row for {d} ({len(rows)} of {len(required)} rows)",
                last_line + 1,
                d,
            )
    if n_gpu == 0:
        raise TopologyParseError("header has no GPU columns", h + 1, lines[h].split()[0])

    # The matrix must be symmetric wherever both rows are present.
    present = [d for d in devices if d in rows]
    for a_i, a in enumerate(present):
        for b in present[a_i + 1 :]:
            ra, rb = rows[a], rows[b]
            if ra.cells[col[b]] != rb.cells[col[a]]:
                later = ra if ra.line > rb.line else rb
                tok = later.raw[col[b] if later is ra else col[a]]
                raise TopologyParseError(
                    f"asymmetric matrix: {a}->{b} is {ra.cells[col[b]]}, "
                    f"{b}->{a} is {rb.cells[col[a]]}",
                    later.line,
                    tok,
                )

    gpus: list[GPU] = []
    for g in range(n_gpu):
        r = rows[devices[g]]
        cpu = r.affinity.get(CPU_AFFINITY, "")
        gpus.append(
            GPU(
                index=g,
                model=model,
                memory_mib=memory_mib,
                numa_node=_numa(r.affinity.get(NUMA_AFFINITY, ""), r.line),
                cpu_affinity="" if cpu.upper() == "N/A" else cpu,
            )
        )
    links = tuple(tuple(rows[devices[g]].cells[:n_gpu]) for g in range(n_gpu))
    legend = _nic_legend(lines[end:])
    nics: list[NIC] = []
    for j in range(n_gpu, len(devices)):
        nic_col = devices[j]
        nic_row = rows.get(nic_col)
        nics.append(
            NIC(
                name=legend.get(nic_col, nic_col),
                gpu_links=tuple(rows[devices[g]].cells[j] for g in range(n_gpu)),
                numa_node=(
                    _numa(nic_row.affinity.get(NUMA_AFFINITY, ""), nic_row.line)
                    if nic_row
                    else None
                ),
            )
        )
    try:
        return NodeTopology(gpus=tuple(gpus), links=links, nics=tuple(nics), name=name)
    except TopologyError as e:  # pragma: no cover - the checks above catch these first
        raise TopologyParseError(str(e), h + 1, "") from None
