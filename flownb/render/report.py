"""HTML for runs and flows: the live view's texts and the static picture a saved notebook keeps.

Two styles of the same markup:

* ``live=True``: classes (``flownb-pill flownb-st-failed``...) that the live view's
  stylesheet colours from JupyterLab's theme variables (light, dark, high contrast);
* ``live=False``: inline colours only, for places that load no stylesheet and may
  strip ``<style>``: GitHub, nbviewer, nbconvert and papermill output. Each status
  is dark text on a pale pill of its own, so it reads on a light and a dark page.

Everything here takes plain values (the render layer knows no runs or stores) and
escapes every text it is given.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping, Sequence

from flownb.render.picture import format_duration

#: (background, text) per status for static HTML: contrast of at least 7:1 within each pill
STATIC_PILLS: dict[str, tuple[str, str]] = {
    "pending": ("#f3f4f6", "#374151"),
    "running": ("#bfdbfe", "#1e3a8a"),
    "retrying": ("#fde68a", "#78350f"),
    "waiting": ("#fdba74", "#7c2d12"),
    "paused": ("#fde68a", "#78350f"),
    "succeeded": ("#bbf7d0", "#14532d"),
    "cached": ("#d9f99d", "#365314"),
    "failed": ("#fca5a5", "#7f1d1d"),
    "skipped": ("#e5e7eb", "#374151"),
    "cancelled": ("#d1d5db", "#374151"),
    "interrupted": ("#fed7aa", "#7c2d12"),
}
_CELL = "padding:3px 10px;text-align:left;vertical-align:top;border-bottom:1px solid rgba(128,128,128,.35)"


#: one step's line in a run's summary table: step, level, status, attempts, duration_ms, note.
#: A plain tuple, not a named one: a finished live view keeps a thousand, and the garbage
#: collector stops tracking a tuple of atoms but tracks a tuple subclass for good.
SummaryFields = tuple[str, int | None, str, int, float | None, str]


@functools.lru_cache(maxsize=64)
def pill(status: str, *, live: bool) -> str:
    """A status as a coloured word (cached: a summary of 1,000 steps has a dozen distinct ones)."""
    text = html.escape(status)
    if live:
        return f"<span class='flownb-pill flownb-st-{_cls(status)}'>{text}</span>"
    bg, fg = STATIC_PILLS.get(status, STATIC_PILLS["pending"])
    return (
        f"<span style='background:{bg};color:{fg};padding:0 6px;border-radius:8px;"
        f"font-weight:600;white-space:nowrap'>{text}</span>"
    )


def run_heading(
    flow: str, run_id: str, status: str, *, done: int, total: int, counts: Mapping[str, int],
    duration_ms: float | None = None, error: str | None = None, live: bool,
) -> str:  # fmt: skip
    """``flow run 1a2b3c: succeeded in 1.2s · 8/8 steps done (succeeded 8)``, and the run's error."""
    took = f" in {format_duration(duration_ms)}" if duration_ms is not None else ""
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    out = (
        f"<b>{html.escape(flow)}</b> run <code>{html.escape(run_id)}</code>: {pill(status, live=live)}{took}"
        f" · {done}/{total} steps done" + (f" ({html.escape(parts)})" if parts else "")
    )
    if error:
        style = "class='flownb-error'" if live else f"style='color:{STATIC_PILLS['failed'][1]};background:#fff1f1'"
        out += f"<br><span {style}>{html.escape(error)}</span>"
    return out


def summary_table(rows: Sequence[SummaryFields], *, live: bool) -> str:
    """The steps of a run, one line each: level, status, attempts, duration and a note."""
    cell = "" if live else f" style='{_CELL}'"
    head = "".join(f"<th{cell}>{h}</th>" for h in ("step", "level", "status", "attempts", "duration", "note"))
    # the final frame of a big run draws this at once: a row is one join, and most of what
    # it escapes (identifier-like names, empty notes) needs nothing
    td, tr = f"</td><td{cell}>", f"<tr><td{cell}><code>"
    body = []
    for step, level, status, attempts, duration_ms, text in rows:
        took = "" if duration_ms is None else format_duration(duration_ms)
        note = html.escape(text[:300] + ("…" if len(text) > 300 else "")) if text else ""
        name = step if step.isidentifier() else html.escape(step)
        body.append(
            f"{tr}{name}</code>{td}{'' if level is None else level}{td}{pill(status, live=live)}{td}{attempts}"
            f"{td}{took}{td}{note}</td></tr>"
        )
    attrs = "class='flownb-summary'" if live else "style='border-collapse:collapse;font-size:90%;margin-top:6px'"
    return f"<table {attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def static_report(heading: str, svg: str | None, rows: Sequence[SummaryFields]) -> str:
    """A run's final state as one self-contained block: heading, picture and summary table.

    The ``flownb-static`` class lets a live view hide it when it sits under the live
    widget of the same cell; without the view's stylesheet (GitHub, nbviewer,
    nbconvert) it shows.
    """
    picture = f"<div style='max-width:100%;overflow-x:auto;margin:6px 0'>{_fit(svg)}</div>" if svg else ""
    return f"<div class='flownb-static'><div>{heading}</div>{picture}{summary_table(rows, live=False)}</div>"


def flow_html(flow: str, *, steps: Sequence[tuple[str, str, int | None, Sequence[str]]], svg: str | None,
              where: str | None = None, error: str | None = None) -> str:  # fmt: skip
    """A flow as HTML: its name and size, its picture, and its steps (name, kind, level, dependencies)."""
    levels = {level for _, _, level, _ in steps if level is not None}
    size = f"{len(steps)} step{'s' if len(steps) != 1 else ''}" + (f" in {len(levels)} levels" if levels else "")
    head = f"<b>Flow {html.escape(repr(flow))}</b>: {size}" + (f" · store <code>{html.escape(where)}</code>"
                                                                if where else "")  # fmt: skip
    if error:
        return f"<div>{head}<br><span style='color:{STATIC_PILLS['failed'][1]}'>{html.escape(error)}</span></div>"
    rows = "".join(
        f"<tr><td style='{_CELL}'><code>{html.escape(n)}</code></td><td style='{_CELL}'>{html.escape(k)}</td>"
        f"<td style='{_CELL}'>{'' if lv is None else lv}</td>"
        f"<td style='{_CELL}'>{html.escape(', '.join(sorted(d)))}</td></tr>"
        for n, k, lv, d in steps
    )
    table = (
        "<details><summary>steps</summary><table style='border-collapse:collapse;font-size:90%'><thead><tr>"
        + "".join(f"<th style='{_CELL}'>{h}</th>" for h in ("step", "kind", "level", "depends on"))
        + f"</tr></thead><tbody>{rows}</tbody></table></details>"
    )
    picture = f"<div style='max-width:100%;overflow-x:auto;margin:6px 0'>{_fit(svg)}</div>" if svg else ""
    return f"<div class='flownb-flow'><div>{head}</div>{picture}{table if steps else ''}</div>"


def _fit(svg: str | None) -> str:
    """An SVG that shrinks to the page's width (never grows past its natural size)."""
    if not svg:
        return ""
    return svg.replace("<svg ", "<svg style='max-width:100%;height:auto' ", 1)


def _cls(status: str) -> str:
    return "".join(c for c in status if c.isalnum()) or "pending"
