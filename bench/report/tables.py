"""Summaries of a collected result table: mean ± std over seeds per method x setting.

A *setting* is what the rows of a table are compared within: the base setting (dataset, corruption,
model, utility) plus every config value that varies between the seeds-aside jobs of one method in one
base setting, e.g. `method.budget` in a budget sweep. Rows are summarised over seeds; the 95%
confidence half-width of a mean over n seeds is t_{0.975, n-1} * std / sqrt(n).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..score import QUALITY_KEYS, SELECTION_KEYS
from ..store.keys import NOT_SETTING_KEYS
from .markdown import markdown_table

BASE_KEYS = ("dataset", "corruption", "model", "utility")
COST_KEYS = ("n_evals", "seconds")
NOT_SETTINGS = tuple(f"config.{k}" for k in NOT_SETTING_KEYS)
_FORMATS = {"n_evals": "{:.0f}", "seconds": "{:.2f}"}


def ok_jobs(frame: pd.DataFrame) -> pd.DataFrame:
    """The jobs that finished (status ok)."""
    return frame[frame["status"] == "ok"]


def variant_columns(frame: pd.DataFrame) -> list[str]:
    """Config columns that vary between jobs of one method in one base setting (seed aside)."""
    ok = ok_jobs(frame)
    candidates = [c for c in ok if c.startswith("config.") and c not in NOT_SETTINGS]
    if ok.empty or not candidates:
        return []
    groups = ok.groupby(["method", *BASE_KEYS], dropna=False)
    return [c for c in candidates if (groups[c].nunique(dropna=False) > 1).any()]


def setting_label(values: dict) -> str:
    """'dataset=wine method.budget=100': the non-missing values, config. prefixes dropped."""
    return " ".join(
        f"{key.removeprefix('config.')}={_plain(value)}"
        for key, value in values.items()
        if not pd.isna(value)
    )


def _plain(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def quality_metrics(frame: pd.DataFrame) -> list[str]:
    """The quality metrics to report: AUROC, AP and 2-means F1, plus selection precision/recall when
    some method selects points."""
    extra = [k for k in SELECTION_KEYS if k in frame and frame[k].notna().any()]
    return [k for k in QUALITY_KEYS if k in frame] + extra


def ci95(std, n):
    """Half-width of the 95% t confidence interval of a mean of `n` values with sample std `std`."""
    from scipy.stats import t

    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = t.ppf(0.975, n - 1) * np.asarray(std, dtype=float) / np.sqrt(n)
    return np.where(n > 1, half, np.nan)


def label_jobs(frame: pd.DataFrame) -> pd.DataFrame:
    """The ok jobs with two label columns: `base` (dataset corruption model utility) and `setting`
    (the base and the variant values, see `variant_columns`)."""
    ok = ok_jobs(frame)
    variants = variant_columns(frame)
    return ok.assign(
        base=[setting_label(r) for r in ok[list(BASE_KEYS)].to_dict("records")],
        setting=[setting_label(r) for r in ok[[*BASE_KEYS, *variants]].to_dict("records")],
    )


def largest_budget(jobs: pd.DataFrame) -> pd.DataFrame:
    """Of labelled jobs, one per method x base setting x seed: the one that spent the most
    evaluations (a method's best-funded variant)."""
    order = jobs.assign(_evals=jobs["n_evals"].fillna(0)).sort_values("_evals", ascending=False)
    return order.drop_duplicates(["method", "base", "seed"]).drop(columns="_evals")


def summarize(frame: pd.DataFrame, metrics=None) -> pd.DataFrame:
    """One row per method x setting (ok jobs only): `seeds`, and for each metric and cost its mean
    (column named as the metric) and sample std over seeds (`<metric>_std`), and the mean fraction
    of planted points (the average precision of random values).

    Key columns: `method`, `base`, `setting`, the base keys and the varying config columns.
    """
    if ok_jobs(frame).empty:
        raise ValueError("no job finished (status ok): nothing to summarise")
    jobs = label_jobs(frame)
    metrics = list(metrics or quality_metrics(jobs))
    variants = variant_columns(frame)
    keys = ["method", "base", "setting", *BASE_KEYS, *variants]
    values = [c for c in (*metrics, *COST_KEYS) if c in jobs]
    jobs = jobs.assign(planted_fraction=jobs["n_planted"] / jobs["n_train"])
    grouped = jobs.groupby(keys, dropna=False, sort=True)
    out = pd.concat(
        [grouped[values].mean(), grouped[values].std(ddof=1).add_suffix("_std")], axis=1
    )
    out.insert(0, "seeds", grouped.size())
    out["planted_fraction"] = grouped["planted_fraction"].mean()
    out = out.reset_index()
    # settings in the order of their values (budget 8 before 20), the best method first in each
    order = ["base", *variants, "setting", metrics[0], "method"]
    ascending = [True] * (len(order) - 2) + [False, True]
    return out.sort_values(order, ascending=ascending, na_position="first")


def shown_keys(summary: pd.DataFrame) -> list[str]:
    """The setting columns worth a table column: those that differ between rows."""
    keys = [
        k
        for k in summary.columns[: summary.columns.get_loc("seeds")]
        if k not in ("base", "setting", "method")
    ]
    return [k for k in keys if summary[k].nunique(dropna=False) > 1]


def _cells(summary: pd.DataFrame, metrics, bold) -> list[list[str]]:
    keys = shown_keys(summary)
    best = {m: summary.groupby("setting")[m].transform("max") for m in metrics}
    rows = []
    for i, row in summary.iterrows():
        cells = [_plain(row[k]) if pd.notna(row[k]) else "–" for k in keys]
        cells += [row["method"], str(int(row["seeds"]))]
        for col in (*metrics, *COST_KEYS):
            mean, std = row.get(col, np.nan), row.get(f"{col}_std", np.nan)
            fmt = _FORMATS.get(col, "{:.3f}")
            cell = fmt.format(mean) if np.isfinite(mean) else "–"
            if col in best and np.isfinite(mean) and mean == best[col][i]:
                cell = bold(cell)
            if np.isfinite(std) and std > 0:
                cell += " ± " + fmt.format(std)
            cells.append(cell)
        rows.append(cells)
    return rows


def _header(summary: pd.DataFrame, metrics) -> list[str]:
    return [k.removeprefix("config.") for k in shown_keys(summary)] + [
        "method",
        "seeds",
        *metrics,
        *COST_KEYS,
    ]


def to_markdown(summary: pd.DataFrame, metrics=None) -> str:
    """The summary as a Markdown table of mean ± std cells; the best mean per setting in bold."""
    metrics = list(metrics or [m for m in QUALITY_KEYS + SELECTION_KEYS if m in summary])
    return markdown_table(_header(summary, metrics), _cells(summary, metrics, lambda c: f"**{c}**"))


def to_latex(summary: pd.DataFrame, metrics=None) -> str:
    """The summary as a booktabs LaTeX tabular of mean $\\pm$ std cells; the best mean per setting
    in bold, a rule between settings."""
    metrics = list(metrics or [m for m in QUALITY_KEYS + SELECTION_KEYS if m in summary])
    header = _header(summary, metrics)
    cells = _cells(summary, metrics, lambda c: f"\\textbf{{{c}}}")
    lines = [
        "\\begin{tabular}{"
        + "l" * (len(header) - len(metrics) - len(COST_KEYS))
        + "r" * (len(metrics) + len(COST_KEYS))
        + "}",
        "\\toprule",
        " & ".join(_tex(h) for h in header) + " \\\\",
        "\\midrule",
    ]
    previous = None
    for setting, row in zip(summary["setting"], cells, strict=True):
        if previous is not None and setting != previous:
            lines.append("\\midrule")
        previous = setting
        lines.append(" & ".join(_tex(c) for c in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines)


def _tex(text: str) -> str:
    for char in ("_", "%", "&", "#"):
        text = text.replace(char, "\\" + char)
    return text.replace(" ± ", " $\\pm$ ").replace("–", "--")
