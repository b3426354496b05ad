"""Blocks (heading, paragraph, table, image) rendered as Markdown, or as one self-contained
HTML file with the PNGs inlined."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import cast

# (kind, body): ("h1"|"h2"|"p", text), ("table", (head, rows)), ("img", image key).
Block = tuple[str, object]


def render_markdown(blocks: Sequence[Block], images: dict[str, str]) -> str:
    """Markdown with image links to the PNGs next to it."""
    out: list[str] = []
    for kind, body in blocks:
        if kind == "h1":
            out.append(f"# {body}\n")
        elif kind == "h2":
            out.append(f"## {body}\n")
        elif kind == "p":
            out.append(f"{body}\n")
        elif kind == "table":
            head, rows = cast(tuple[list[str], list[list[str]]], body)
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "|".join(" --- " for _ in head) + "|")
            out.extend("| " + " | ".join(r) + " |" for r in rows)
            out.append("")
        elif kind == "img":
            out.append(f"![{body}]({images[str(body)]})\n")
    return "\n".join(out)


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;"
        "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:14px}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child,th{text-align:left}th{background:#f3f3f3}img{max-width:100%}"
        "code{background:#f3f3f3;padding:1px 4px}")


def render_html(blocks: Sequence[Block], images: dict[str, str], folder: Path) -> str:
    """One HTML file with the PNGs inlined as base64 data URIs."""
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>gts simulate report"
           f"</title><style>{_CSS}</style></head><body>"]
    for kind, body in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{html.escape(str(body))}</{kind}>")
        elif kind == "p":
            text = html.escape(str(body))
            parts = text.split("`")
            text = "".join(f"<code>{p}</code>" if k % 2 else p for k, p in enumerate(parts))
            bold = text.split("**")  # the markdown's **emphasis**, as in report.md
            if len(bold) % 2:
                text = "".join(f"<b>{p}</b>" if k % 2 else p for k, p in enumerate(bold))
            out.append(f"<p>{text}</p>")
        elif kind == "table":
            head, rows = cast(tuple[list[str], list[list[str]]], body)
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
                       + "</tr>")
            for r in rows:
                out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
            out.append("</table>")
        elif kind == "img":
            data = base64.b64encode((folder / images[str(body)]).read_bytes()).decode()
            out.append(f"<p><img alt='{html.escape(str(body))}' "
                       f"src='data:image/png;base64,{data}'></p>")
    out.append("</body></html>")
    return "\n".join(out)
