"""Paper figures from a collected result table, in the paper style of `style.py`.

Every figure has one panel row (or column) per base setting (dataset corruption model utility), one
fixed colour per method, and error bars or bands of 95% t confidence intervals over seeds:

quality           AUROC and AP per method (x setting variant); dotted line: chance
cost              AUROC vs. game evaluations (log); methods that spend none are horizontal lines
time              AUROC vs. the method's seconds (log)
selection         selection precision and recall vs. evaluations (only if a method selects points)
budget            precision and recall vs. c of budget_c sweeps (m = c k log2 n), as in the AME paper
rank_correlation  mean over seeds of the Spearman correlation between methods' values
removal           test accuracy after removing the highest / lowest valued points (see removal.py)

Figures are matplotlib `Figure`s on the Agg canvas (no pyplot state), saved as PNG and PDF.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..score import spearman
from ..store.records import read_arrays
from .style import METHOD_COLOURS, method_colour, new_figure, paper_style
from .tables import BASE_KEYS, ci95, label_jobs, largest_budget, summarize

log = logging.getLogger(__name__)
LABELS = {
    "auroc": "AUROC",
    "ap": "average precision",
    "sel_precision": "selection precision",
    "sel_recall": "selection recall",
    "n_evals": "game evaluations",
    "seconds": "seconds",
    "config.budget_c": "c (budget m = c k log2 n)",
    "precision": "precision (selection, else top k)",
    "recall": "recall (selection, else top k)",
}
REMOVED = {"highest": "highest-valued removed", "lowest": "lowest-valued removed"}


def method_order(methods) -> list[str]:
    """Known methods in their fixed order, then the others alphabetically."""
    methods = set(methods)
    return [m for m in METHOD_COLOURS if m in methods] + sorted(methods - set(METHOD_COLOURS))


def base_titles(bases) -> dict[str, str]:
    """Short panel titles: only the base keys that differ between bases (empty for one base)."""
    parsed = {b: dict(part.split("=", 1) for part in b.split()) for b in bases}
    differ = [k for k in BASE_KEYS if len({p.get(k) for p in parsed.values()}) > 1]
    return {b: " / ".join(p.get(k, "?") for k in differ) for b, p in parsed.items()}


def _title(text: str, base_title: str) -> str:
    return f"{text} ({base_title})" if base_title else text


def _clip_to_unit(ax) -> None:
    """Keep the y range within [0, 1] (plus a margin): CIs of bounded scores may overshoot."""
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, -0.02), min(high, 1.02))


def _legend(fig, methods) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=method_colour(m), marker="o", label=m) for m in methods]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(methods), 6))


def quality_figure(summary: pd.DataFrame, metrics=("auroc", "ap"), width: str = "auto"):
    """Panels base x metric: each method x variant's mean with its 95% CI over seeds."""
    bases = sorted(summary["base"].unique())
    titles = base_titles(bases)
    fig, axes = new_figure(len(bases), len(metrics), width)
    for row, base in zip(axes, bases, strict=True):
        part = summary[summary["base"] == base]
        part = part.assign(_o=part["method"].map(method_order(part["method"]).index))
        part = part.sort_values(["_o", "setting"])
        ticks = [
            " ".join([m, s.removeprefix(base).strip()]).strip()
            for m, s in zip(part["method"], part["setting"], strict=True)
        ]
        for ax, metric in zip(row, metrics, strict=True):
            x = np.arange(len(part))
            err = ci95(part[f"{metric}_std"], part["seeds"])
            for xi, (_, r), e in zip(x, part.iterrows(), err, strict=True):
                ax.errorbar(xi, r[metric], yerr=e, fmt="o", color=method_colour(r["method"]))
            chance = 0.5 if metric == "auroc" else part["planted_fraction"].mean()
            ax.axhline(chance, color="0.5", linestyle=":", linewidth=0.8)
            ax.set_xticks(x, ticks, rotation=45, ha="right")
            ax.set_xlim(-0.6, len(part) - 0.4)
            _clip_to_unit(ax)
            ax.set_ylabel(LABELS[metric])
            ax.set_title(_title(LABELS[metric], titles[base]))
    _legend(fig, method_order(summary["method"]))
    return fig


def _lines(ax, part: pd.DataFrame, x: str, y: str) -> None:
    """One line per method through its variants ordered by x; no x spent: a horizontal line."""
    for method in method_order(part["method"]):
        rows = part[part["method"] == method].sort_values(x)
        colour = method_colour(method)
        if not (rows[x] > 0).any():
            ax.axhline(rows[y].mean(), color=colour, linestyle="--", linewidth=1)
            continue
        rows = rows[rows[x] > 0]
        err = ci95(rows[f"{y}_std"], rows["seeds"])
        ax.errorbar(rows[x], rows[y], yerr=err, color=colour, marker="o")
    ax.set_xscale("log")
    _clip_to_unit(ax)
    ax.set_xlabel(LABELS[x])
    ax.set_ylabel(LABELS[y])


def tradeoff_figure(summary: pd.DataFrame, cost: str = "n_evals", width: str = "auto"):
    """One panel per base: AUROC against a cost (`n_evals` or `seconds`)."""
    bases = sorted(summary["base"].unique())
    titles = base_titles(bases)
    fig, axes = new_figure(1, len(bases), width)
    for ax, base in zip(axes[0], bases, strict=True):
        _lines(ax, summary[summary["base"] == base], cost, "auroc")
        ax.set_title(_title(f"AUROC vs. {LABELS[cost]}", titles[base]))
    _legend(fig, method_order(summary["method"]))
    return fig


def selection_figure(summary: pd.DataFrame, width: str = "auto"):
    """Panels base x (precision, recall) of methods' selections against evaluations; None when no
    method selects points."""
    selecting = summary[summary["sel_recall"].notna()] if "sel_recall" in summary else summary[:0]
    if selecting.empty:
        return None
    bases = sorted(selecting["base"].unique())
    titles = base_titles(bases)
    fig, axes = new_figure(len(bases), 2, width)
    for row, base in zip(axes, bases, strict=True):
        for ax, metric in zip(row, ("sel_precision", "sel_recall"), strict=True):
            _lines(ax, selecting[selecting["base"] == base], "n_evals", metric)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(_title(LABELS[metric], titles[base]))
    _legend(fig, method_order(selecting["method"]))
    return fig


def budget_figure(frame: pd.DataFrame, width: str = "auto"):
    """Panels base x (precision, recall) against c of a `budget_c` sweep (Lin et al. 2022, Fig. 3):
    a method's own selection where it makes one (AME with knockoffs), else its k top-valued points;
    methods without a budget are dashed lines. None when no job ran at a c, or every method ran
    at one c only (a single budget, as in experiment=leaderboard: no curve to draw)."""
    col = "config.budget_c"
    if col not in frame or pd.to_numeric(frame[col], errors="coerce").isna().all():
        return None
    summary = summarize(frame, ["sel_precision", "sel_recall", "precision_at_k", "recall_at_k"])
    if col not in summary:  # c does not vary within any method and setting
        return None
    summary[col] = pd.to_numeric(summary[col], errors="coerce")
    selects = summary.groupby("method")["sel_recall"].transform(lambda v: v.notna().any())
    for what in ("precision", "recall"):
        for suffix in ("", "_std"):
            own, top = summary[f"sel_{what}{suffix}"], summary[f"{what}_at_k{suffix}"]
            summary[what + suffix] = own.where(selects, top)
    bases = sorted(summary["base"].unique())
    titles = base_titles(bases)
    fig, axes = new_figure(len(bases), 2, width)
    for row, base in zip(axes, bases, strict=True):
        for ax, metric in zip(row, ("precision", "recall"), strict=True):
            part = summary[summary["base"] == base]
            _lines(ax, part.fillna({col: 0}), col, metric)
            cs = sorted(part[col].dropna().unique())
            ax.set_xscale("log", base=2)
            ax.set_xticks(cs, [f"{c:g}" for c in cs])
            ax.minorticks_off()
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(_title(metric, titles[base]))
    _legend(fig, method_order(summary["method"]))
    return fig


def _mean_values(job_path: str) -> np.ndarray | None:
    try:
        values = read_arrays(Path(job_path).parent)["values"]
    except (OSError, KeyError, ValueError) as err:
        log.warning("no values for %s: %s", job_path, err)
        return None
    return values.mean(0) if values.ndim == 2 else values


def rank_correlations(jobs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per base with at least two methods: method x method mean over seeds of the Spearman
    correlation of their values (the best-funded variant of each method; methods that gave
    constant values get NaN)."""
    out = {}
    for base, part in largest_budget(jobs).groupby("base"):
        methods = method_order(part["method"])
        if len(methods) < 2:
            continue
        per_seed = []
        for _, seed_jobs in part.groupby("seed"):
            vectors = {
                m: _mean_values(p)
                for m, p in zip(seed_jobs["method"], seed_jobs["path"], strict=True)
            }
            vectors = {m: v for m, v in vectors.items() if v is not None}
            if not vectors:
                continue
            rho = np.full((len(methods), len(methods)), np.nan)
            for i, a in enumerate(methods):
                for j, b in enumerate(methods):
                    if a in vectors and b in vectors:
                        rho[i, j] = spearman(vectors[a], vectors[b])[0]
            per_seed.append(rho)
        if per_seed:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells stay NaN
                mean = np.nanmean(per_seed, axis=0)
            out[base] = pd.DataFrame(mean, index=methods, columns=methods)
    return out


def rank_correlation_figure(jobs: pd.DataFrame, width: str = "auto"):
    """One heatmap per base of `rank_correlations`; None when no job's values can be read."""
    matrices = rank_correlations(jobs)
    if not matrices:
        return None
    titles = base_titles(list(matrices))
    fig, axes = new_figure(1, len(matrices), width)
    for ax, (base, matrix) in zip(axes[0], matrices.items(), strict=True):
        image = ax.imshow(matrix.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
        ticks = np.arange(len(matrix))
        ax.set_xticks(ticks, matrix.columns, rotation=45, ha="right")
        ax.set_yticks(ticks, matrix.index)
        ax.grid(False)
        ax.spines[:].set_visible(False)
        for (i, j), value in np.ndenumerate(matrix.to_numpy()):
            text = "–" if np.isnan(value) else f"{value:.2f}"
            colour = "white" if abs(value) > 0.6 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=6, color=colour)
        ax.set_title(_title("Spearman rank correlation", titles[base]))
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    return fig


def removal_figure(curves: pd.DataFrame, width: str = "auto"):
    """Panels base x (highest, lowest removed): mean test accuracy over seeds with a 95% CI band."""
    bases = sorted(curves["base"].unique())
    titles = base_titles(bases)
    fig, axes = new_figure(len(bases), 2, width, sharey=True)
    for row, base in zip(axes, bases, strict=True):
        for ax, removed in zip(row, REMOVED, strict=True):
            part = curves[(curves["base"] == base) & (curves["removed"] == removed)]
            for method in method_order(part["method"]):
                stats = (
                    part[part["method"] == method]
                    .groupby("fraction")["accuracy"]
                    .agg(["mean", "std", "count"])
                )
                half = np.nan_to_num(ci95(stats["std"], stats["count"]))
                colour = method_colour(method)
                ax.plot(stats.index, stats["mean"], color=colour, marker="o", markersize=2)
                ax.fill_between(
                    stats.index,
                    stats["mean"] - half,
                    stats["mean"] + half,
                    color=colour,
                    alpha=0.15,
                )
            ax.set_xlabel("fraction of training points removed")
            ax.set_ylabel("test accuracy")
            ax.set_title(_title(REMOVED[removed], titles[base]))
    for ax in fig.axes:  # after all lines: the panels share their y range
        _clip_to_unit(ax)
    _legend(fig, method_order(curves["method"]))
    return fig


def make_figures(frame: pd.DataFrame, removal: bool = True, width: str = "auto") -> dict:
    """{name: Figure} of every figure the table supports, drawn in the paper style (call inside
    `paper_style()`). Figures that need the job folders (rank correlation, removal) are left out
    with a warning when those are gone, and figures with nothing to show are left out."""
    summary = summarize(frame)
    jobs = label_jobs(frame)
    figures = {
        "quality": quality_figure(summary, width=width),
        "cost": tradeoff_figure(summary, "n_evals", width),
        "time": tradeoff_figure(summary, "seconds", width),
        "selection": selection_figure(summary, width),
        "budget": budget_figure(frame, width),
        "rank_correlation": rank_correlation_figure(jobs, width),
    }
    if removal:
        from .removal import removal_table

        curves = removal_table(largest_budget(jobs))
        figures["removal"] = removal_figure(curves, width) if not curves.empty else None
    for name in [n for n, fig in figures.items() if fig is None]:
        log.info("no %s figure: the results have nothing to show in it", name)
        del figures[name]
    return figures


def plot_all(
    frame: pd.DataFrame, out: Path, removal: bool = True, width: str = "auto"
) -> list[Path]:
    """Draw every figure of `make_figures`, save each as out/NAME.png and out/NAME.pdf and return
    the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with paper_style():
        for name, fig in make_figures(frame, removal, width).items():
            for suffix in (".png", ".pdf"):
                fig.savefig(out / f"{name}{suffix}")
                paths.append(out / f"{name}{suffix}")
    return paths
