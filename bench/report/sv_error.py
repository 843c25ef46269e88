"""Error of Shapley-value estimates against a reference estimate, by budget (Lin et al. 2022, Sec. 5.3).

Where the exact Shapley value is out of reach (n = 1000), each estimate is compared with a reference
job: by default `method=sv_reference` (Monte Carlo Shapley at a large budget on a permutation stream
of its own), the method a sweep names in its top-level config key `sv_reference`. A job's reference
is the reference job with the same seed (the seed fixes the data split and the planted points) and
the same dataset, corruption, model and utility configs (where and how it runs aside: see
`store.keys.defines_problem`).

Per job, with v its values and r the reference's (flattened when (Q, n)):

rel_l2           ||v - r||_2 / ||r||_2
rel_l2_debiased  sqrt(max(||v - r||^2 - ||se_r||^2, 0)) / ||r||: E||v - r||^2 = ||v - phi||^2 +
                 E||r - phi||^2 for an unbiased reference r independent of v, and ||se_r||^2 (the
                 reference's squared standard errors) estimates the second term
spearman         Spearman correlation of v and r (mean over queries for (Q, n) values)
ref_floor        ||se_r|| / ||r||: the reference's own relative error; rel_l2 near it is not resolved

`error_table` makes the per-job table, `summarize_errors` the mean, std and 95% t interval over seeds
per method x budget, `error_figure` the log-log error-vs-budget figure.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..score import spearman
from ..store.keys import defines_problem
from ..store.records import read_arrays
from .markdown import markdown_table
from .style import method_colour, new_figure
from .tables import ci95, ok_jobs, setting_label

log = logging.getLogger(__name__)
REFERENCE_KEY = "config.sv_reference"
DEFAULT_REFERENCE = "sv_reference"
BUDGET = "config.method.budget"
ERROR_KEYS = ("rel_l2", "rel_l2_debiased", "spearman")


def relative_l2(values, reference) -> float:
    """||values - reference||_2 / ||reference||_2 over all entries (ValueError on a zero reference)."""
    values, reference = np.asarray(values, float), np.asarray(reference, float)
    norm = np.linalg.norm(reference)
    if not norm > 0:
        raise ValueError("the reference values are all zero: the relative error is undefined")
    return float(np.linalg.norm(values - reference) / norm)


def reference_method(jobs: pd.DataFrame, reference: str | None = None) -> str:
    """The reference method: `reference`, else the records' `sv_reference` key, else 'sv_reference'."""
    if reference:
        return reference
    if REFERENCE_KEY in jobs:
        named = sorted({str(v) for v in jobs[REFERENCE_KEY].dropna()})
        if len(named) > 1:
            raise ValueError(
                f"the records name different references in sv_reference: {named}; "
                "pass one with --reference"
            )
        if named:
            return named[0]
    return DEFAULT_REFERENCE


def problem_columns(frame: pd.DataFrame) -> list[str]:
    """The config columns that define a job's problem, as the evaluation store fingerprints it
    (`defines_problem`): a reference may differ from its estimates in everything else."""
    return sorted(
        c for c in frame if c.startswith("config.") and defines_problem(c.removeprefix("config."))
    )


def _key(row: pd.Series, columns) -> tuple:
    return tuple("None" if _missing(row[c]) else str(row[c]) for c in columns)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _arrays(path: str) -> dict[str, np.ndarray]:
    try:
        return read_arrays(Path(path).parent)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the values of {path}: {err}") from None


def error_table(frame: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """One row per finished non-reference job: `method`, `variant` (method keys other than the
    budget that vary), `problem` (problem keys that vary, seed aside), `seed`, `budget`, `n_evals`,
    `seconds`, the ERROR_KEYS, `ref_floor`, `ref_n_evals` and the `path`s of job and reference.

    ValueError when no reference job finished, when a job has no reference of its problem, or when
    job and reference differ in their players (shape of the values, planted mask).
    """
    jobs, refs, estimates = _split_jobs(frame, reference)
    columns = problem_columns(jobs)
    by_key = _references_by_problem(refs, columns)
    shown = [c for c in columns if c != "config.seed" and jobs[c].astype(str).nunique() > 1]
    method_keys = [c for c in jobs if c.startswith("config.method.") and c != BUDGET]
    varying = {
        m: [c for c in method_keys if part[c].astype(str).nunique() > 1]
        for m, part in estimates.groupby("method")
    }
    loaded: dict[str, tuple] = {}
    rows = []
    for _, job in estimates.iterrows():
        key = _key(job, columns)
        if key not in by_key:
            raise _no_reference(job, refs["method"].iloc[0], by_key, columns, shown)
        ref = by_key[key]
        if ref["path"] not in loaded:
            loaded[ref["path"]] = _reference(ref["path"])
        r, floor, planted = loaded[ref["path"]]
        v = _job_values(job["path"], ref["path"], r, planted)
        rows.append(
            {
                "method": job["method"],
                "variant": setting_label({c: job[c] for c in varying[job["method"]]}),
                "problem": setting_label({c: job[c] for c in shown}),
                "seed": job["seed"],
                "budget": job.get(BUDGET, np.nan),
                "n_evals": job["n_evals"],
                "seconds": job["seconds"],
                **errors(v, r, floor),
                "ref_floor": floor,
                "ref_n_evals": ref["n_evals"],
                "path": job["path"],
                "reference": ref["path"],
            }
        )
    table = pd.DataFrame(rows)
    table["budget"] = pd.to_numeric(table["budget"], errors="coerce")
    return table.sort_values(["problem", "method", "variant", "budget", "seed"]).reset_index(
        drop=True
    )


def errors(v: np.ndarray, r: np.ndarray, floor: float) -> dict[str, float]:
    """The ERROR_KEYS of values `v` against reference values `r` of relative standard error
    `floor`: relative L2 error, the same with the reference's own error taken out
    (sqrt(max(||v - r||^2 - (floor ||r||)^2, 0)) / ||r||), and the Spearman correlation."""
    norm = np.linalg.norm(r)
    sq = np.sum((v - r) ** 2) - (floor * norm) ** 2 if np.isfinite(floor) else np.nan
    return {
        "rel_l2": relative_l2(v, r),
        "rel_l2_debiased": math.sqrt(max(sq, 0.0)) / norm if np.isfinite(sq) else np.nan,
        "spearman": float(np.mean(spearman(v, r))),  # NaN if a row is constant
    }


def _split_jobs(frame: pd.DataFrame, reference: str | None):
    """(finished jobs, the reference method's, the others'); failed jobs are skipped by name, and
    a ValueError says what is missing when either part is empty."""
    jobs = ok_jobs(frame)
    failed = frame[frame["status"] != "ok"]
    for _, row in failed.iterrows():
        log.warning("skipping failed job %s: %s", row.get("path"), row.get("error"))
    if jobs.empty:
        raise ValueError("no job finished (status ok): no errors to compute")
    name = reference_method(jobs, reference)
    refs, estimates = jobs[jobs["method"] == name], jobs[jobs["method"] != name]
    if refs.empty:
        hint = ""
        if name in set(failed["method"]):
            hint = f" (its jobs failed: {failed[failed['method'] == name]['error'].iloc[0]})"
        raise ValueError(
            f"no finished reference job: no ok record of method {name!r}{hint} among the methods "
            f"{sorted(set(jobs['method']))}; run the reference sweep (e.g. "
            f"experiment=ame_paper_mnist_sv_reference) or name the reference with --reference"
        )
    if estimates.empty:
        raise ValueError(f"only reference jobs ({name!r}) found: nothing to compare with them")
    return jobs, refs, estimates


def _references_by_problem(refs: pd.DataFrame, columns) -> dict[tuple, pd.Series]:
    """The reference job of each problem (its `columns`), the largest budget where there are two."""
    by_key: dict[tuple, pd.Series] = {}
    for _, ref in refs.sort_values("n_evals").iterrows():
        key = _key(ref, columns)
        if key in by_key:
            log.warning("two reference jobs for one problem; using the larger: %s", ref["path"])
        by_key[key] = ref  # the largest budget last
    return by_key


def _no_reference(job: pd.Series, name: str, by_key: dict, columns, shown) -> ValueError:
    def label(row) -> str:
        return setting_label({c: row[c] for c in columns if c in shown or c == "config.seed"})

    return ValueError(
        f"no reference job ({name!r}) for {job['method']} at {label(job) or 'its problem'} "
        f"({job['path']}); references exist for: " + "; ".join(label(r) for r in by_key.values())
    )


def _job_values(path: str, ref_path: str, r: np.ndarray, planted) -> np.ndarray:
    """A job's values, checked to be of the same players (and planted points) as its reference."""
    arrays = _arrays(path)
    v = arrays["values"]
    if v.shape != r.shape:
        raise ValueError(
            f"{path}: values of shape {v.shape} but its reference {ref_path} has "
            f"{r.shape}: not the same players (n) or queries"
        )
    if (
        planted is not None
        and "planted" in arrays
        and not np.array_equal(arrays["planted"], planted)
    ):
        raise ValueError(
            f"{path} and its reference {ref_path} plant different points: not the same problem"
        )
    return v


def _reference(path: str) -> tuple[np.ndarray, float, np.ndarray | None]:
    """A reference job's values, relative standard error (NaN without stderr) and planted mask."""
    arrays = _arrays(path)
    r = arrays["values"]
    if not np.linalg.norm(r) > 0:
        raise ValueError(f"the reference {path} has all-zero values: relative errors are undefined")
    floor = np.nan
    if "stderr" in arrays:
        floor = float(np.linalg.norm(arrays["stderr"]) / np.linalg.norm(r))
    return r, floor, arrays.get("planted")


def summarize_errors(table: pd.DataFrame) -> pd.DataFrame:
    """Per problem x method x variant x budget: `seeds`, and mean, std (`_std`) and 95% t half-width
    (`_ci`) over seeds of each ERROR_KEY; mean `n_evals`, `seconds`, `ref_floor`."""
    keys = ["problem", "method", "variant", "budget"]
    grouped = table.groupby(keys, dropna=False, sort=True)
    out = grouped[[*ERROR_KEYS, "n_evals", "seconds", "ref_floor"]].mean()
    out.insert(0, "seeds", grouped.size())
    for key in ERROR_KEYS:
        std = grouped[key].std(ddof=1)
        out[f"{key}_std"] = std
        out[f"{key}_ci"] = ci95(std, grouped[key].count())
    return out.reset_index()


def _label(row) -> str:
    return f"{row['method']} {row['variant']}".strip()


def to_markdown(summary: pd.DataFrame) -> str:
    """Rows method x budget: mean ± 95% CI half-width over seeds; a problem column when several."""
    several = summary["problem"].nunique() > 1
    header = ["problem"] * several + ["method", "budget", "seeds", "rel. L2 error"]
    header += ["debiased", "Spearman", "n_evals", "seconds", "reference floor"]
    rows = []
    for _, row in summary.iterrows():
        cells = [row["problem"]] * several + [_label(row)]
        cells.append("–" if _missing(row["budget"]) else f"{row['budget']:.0f}")
        cells.append(str(int(row["seeds"])))
        for key in ERROR_KEYS:
            cell = "–" if _missing(row[key]) else f"{row[key]:.3f}"
            if not _missing(row[f"{key}_ci"]):
                cell += f" ± {row[f'{key}_ci']:.3f}"
            cells.append(cell)
        cells += [f"{row['n_evals']:.0f}", f"{row['seconds']:.2f}"]
        cells.append("–" if _missing(row["ref_floor"]) else f"{row['ref_floor']:.3f}")
        rows.append(cells)
    return markdown_table(header, rows)


def error_figure(summary: pd.DataFrame, width: str = "auto"):
    """Panels problem x (relative L2 error, Spearman) against the budget: one line per method with
    95% CIs over seeds, log-log for the error; dotted: the reference's own relative error.
    Methods without a budget are dashed horizontal lines."""
    from matplotlib.ticker import NullLocator

    problems = sorted(summary["problem"].unique())
    fig, axes = new_figure(len(problems), 2, width)
    for row, problem in zip(axes, problems, strict=True):
        part = summary[summary["problem"] == problem]
        for ax, key in zip(row, ("rel_l2", "spearman"), strict=True):
            for (method, variant), line in part.groupby(["method", "variant"], sort=True):
                line = line.sort_values("budget")
                colour = method_colour(method)
                label = f"{method} {variant}".strip()
                if line["budget"].isna().all():
                    ax.axhline(line[key].mean(), color=colour, linestyle="--", label=label)
                    continue
                mean, half = line[key].to_numpy(), np.nan_to_num(line[f"{key}_ci"].to_numpy())
                low = np.minimum(half, 0.95 * mean) if key == "rel_l2" else half
                ax.errorbar(
                    line["budget"], mean, yerr=[low, half], color=colour, marker="o", label=label
                )
            ax.set_xscale("log")
            budgets = sorted(part["budget"].dropna().unique())
            if budgets:
                ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
                ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xlabel("budget (game evaluations)")
            if key == "rel_l2":
                floor = part["ref_floor"].mean()
                if np.isfinite(floor) and floor > 0:
                    ax.axhline(floor, color="0.4", linestyle=":", label="reference floor")
                ax.set_yscale("log")
                ax.set_ylabel(r"$\|v - v_{ref}\| / \|v_{ref}\|$")
                ax.set_title("relative L2 error" + (f" ({problem})" if problem else ""))
            else:
                ax.set_ylabel("Spearman with the reference")
                ax.set_title("rank correlation" + (f" ({problem})" if problem else ""))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4))
    return fig
