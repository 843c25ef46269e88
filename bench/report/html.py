"""One self-contained HTML page for a collected sweep: `valbench-report html RESULTS -o report.html`.

The page holds the leaderboard (when more than one method ran), the per-setting summary, every
figure (PNG embedded as a data: URI), what every job shared (config, package versions, device) and
a table of the jobs with what sets each apart, its seed, status, metrics and cost. Tables sort by
a click on a header (a few lines of vanilla JavaScript; cells carry a numeric `data-sort` where
their text is not a plain number). Nothing is fetched from the network.
"""

from __future__ import annotations

import base64
import datetime
import io
import logging
from html import escape

import numpy as np
import pandas as pd

from ..score import QUALITY_KEYS, SELECTION_KEYS
from .leaderboard import (
    TABLE_METRICS,
    label_settings,
    leaderboard,
    statistics_markdown,
)
from .leaderboard_plots import leaderboard_figures
from .plots import make_figures
from .style import paper_style
from .tables import summarize

log = logging.getLogger(__name__)
JOB_COLUMNS = (
    "method",
    "setting",
    "seed",
    "status",
    *TABLE_METRICS,
    "n_evals",
    "seconds",
    "wall_seconds",
)
SHARED_PREFIXES = ("config.", "versions.")
PNG_DPI = 150

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; vertical-align: top; }
td.text, th.text { text-align: left; }
th { background: #f3f3f3; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort=ascending]::after { content: " \\25B2"; } th[aria-sort=descending]::after { content: " \\25BC"; }
tr.failed td { background: #fde8e8; }
td.config { font-size: 11px; color: #555; text-align: left; max-width: 40em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 12px; }
.note { color: #555; }
"""

# Click a header: sort that table's body rows by the column (numbers numerically), toggling order.
SORT_JS = """
document.querySelectorAll("table.sortable th").forEach(th => th.addEventListener("click", () => {
  const table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
  const ascending = th.getAttribute("aria-sort") !== "ascending";
  table.querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const key = row => {
    const cell = row.cells[col], text = cell.dataset.sort ?? cell.textContent.trim();
    const number = Number(text);
    return text !== "" && !Number.isNaN(number) ? number : text;
  };
  const rows = Array.from(body.rows).sort((a, b) => {
    const x = key(a), y = key(b);
    const order = typeof x === "number" && typeof y === "number" ? x - y
      : typeof x === "number" ? -1 : typeof y === "number" ? 1 : String(x).localeCompare(String(y));
    return ascending ? order : -order;
  });
  body.append(...rows);
}));
"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _cell(value, text_columns: bool = False) -> str:
    """A <td>: numbers right-aligned with a `data-sort` of their full value, text left-aligned."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if not np.isfinite(value):
            return '<td data-sort="">–</td>'
        text = f"{value:.0f}" if float(value).is_integer() else f"{value:.3f}"
        return f'<td data-sort="{float(value)!r}">{text}</td>'
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return '<td class="text"></td>'
    return f'<td class="text">{escape(str(value))}</td>'


def html_table(frame: pd.DataFrame, headers: dict | None = None, row_class=None) -> str:
    """A sortable HTML table of `frame`'s columns (renamed by `headers`)."""
    headers = headers or {}
    head = "".join(f"<th>{escape(str(headers.get(c, c)))}</th>" for c in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        css = f' class="{row_class(row)}"' if row_class and row_class(row) else ""
        rows.append(f"<tr{css}>" + "".join(_cell(v) for v in row.to_numpy()) + "</tr>")
    return (
        f'<table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def shared_and_own(jobs: pd.DataFrame) -> tuple[dict, pd.Series]:
    """The config, versions and device every job shares ({key: value}), and per job the keys that
    set it apart (`key=value ...`); keys a job does not have (NaN) are left out."""
    keys = [c for c in jobs if c.startswith(SHARED_PREFIXES) or c == "device"]
    shared = {k: jobs[k].iloc[0] for k in keys if jobs[k].nunique(dropna=False) == 1}
    varying = [k for k in keys if k not in shared]
    own = jobs[varying].apply(
        lambda row: " ".join(
            f"{k.removeprefix('config.')}={v}" for k, v in row.items() if not pd.isna(v)
        ),
        axis=1,
    )
    return {k: v for k, v in shared.items() if not pd.isna(v)}, own


def _figure_html(name: str, fig, caption: str = "") -> str:
    return (
        f'<figure id="fig-{escape(name)}"><img alt="{escape(name)}" src="{_png(fig)}">'
        f"<figcaption>{escape(caption or name)}</figcaption></figure>"
    )


def render(frame: pd.DataFrame, title: str, alpha: float = 0.05) -> str:
    """The whole page for a collected table (one row per job, finished or not)."""
    ok = frame[frame["status"] == "ok"]
    if ok.empty:
        raise ValueError("no job finished (status ok): nothing to report")
    jobs = label_settings(frame)
    parts = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="note">{len(frame)} jobs ({len(ok)} finished, {len(frame) - len(ok)} failed), '
        f"{ok['method'].nunique()} methods; page written "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.</p>",
    ]
    with paper_style():
        board = leaderboard(frame, alpha)
        if len(board.table) > 1:
            parts.append("<h2>Leaderboard</h2>")
            parts.append(html_table(board.table, LEADERBOARD_HEADERS))
            stats = statistics_markdown(board, alpha).split("\n\n")
            parts += [f'<p class="note">{escape(p)}</p>' for p in stats]
            for name, fig in leaderboard_figures(board, alpha=alpha).items():
                parts.append(_figure_html(name, fig, LEADERBOARD_CAPTIONS[name]))
        summary = summarize(frame)
        metrics = [m for m in (*QUALITY_KEYS, *SELECTION_KEYS) if m in summary]
        columns = ["setting", "method", "seeds", *metrics, "n_evals", "seconds"]
        parts.append("<h2>Settings</h2>")
        parts.append('<p class="note">Mean over seeds per method and setting.</p>')
        parts.append(html_table(summary[columns]))
        parts.append("<h2>Figures</h2>")
        for name, fig in make_figures(frame, removal=False).items():
            parts.append(_figure_html(name, fig))
    shared, own = shared_and_own(jobs)
    parts.append("<h2>Shared by every job</h2>")
    parts.append(html_table(pd.DataFrame({"key": list(shared), "value": list(shared.values())})))
    parts.append("<h2>Jobs</h2>")
    table = jobs[[c for c in JOB_COLUMNS if c in jobs]].assign(
        **{"config, versions, device (beyond the shared)": own, "record": jobs.get("path")}
    )
    if "error" in jobs:
        table["error"] = jobs["error"]
    parts.append(html_table(table, row_class=lambda r: "failed" if r["status"] != "ok" else ""))
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body>\n{body}\n<script>{SORT_JS}</script></body></html>\n"
    )


LEADERBOARD_HEADERS = {
    "mean_rank": "mean rank",
    "n_evals": "evaluations",
    "settings": "settings run",
    "incomplete": "settings incomplete",
}
LEADERBOARD_CAPTIONS = {
    "cd": "Critical-difference diagram: mean rank of AUROC across settings (best on the right); "
    "methods joined by a bar do not differ significantly (Nemenyi test).",
    "cost_quality": "Mean AUROC over settings vs. mean seconds per job; the dashed staircase is "
    "the Pareto front (outlined points).",
}
