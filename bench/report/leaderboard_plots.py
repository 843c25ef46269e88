"""The leaderboard's figures, in the paper style of `style.py`.

cd            critical-difference diagram (Demšar 2006, Fig. 1): mean ranks on an axis with the best
              on the right, a bar of length CD, and thick lines joining methods whose mean ranks
              differ by less than CD (the Nemenyi test finds no difference between them)
cost_quality  mean AUROC over settings vs. mean seconds per job (log x), the Pareto front marked
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .leaderboard import Leaderboard, pareto_front
from .style import method_colour, new_figure

ROW = 0.32  # vertical distance between two method labels, in axis units
SECONDS_FLOOR = 1e-4  # methods faster than this are drawn at it on the log axis


def cliques(ranks: np.ndarray, cd: float) -> list[tuple[int, int]]:
    """Maximal runs (i, j), i < j, of the sorted mean ranks with ranks[j] - ranks[i] < cd."""
    out, last = [], -1
    for i in range(len(ranks)):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] - ranks[i] < cd:
            j += 1
        if j > i and j > last:
            out.append((i, j))
            last = j
    return out


def cd_figure(mean_ranks: pd.Series, cd: float, alpha: float, width: str = "double"):
    """The critical-difference diagram of `mean_ranks` (method -> mean rank)."""
    ranks = mean_ranks.sort_values()
    names, values, k = list(ranks.index), ranks.to_numpy(), len(ranks)
    groups = cliques(values, cd)
    half = (k + 1) // 2
    top = 0.9
    first = -0.35 - 0.12 * len(groups)  # y of the first label row
    bottom = first - ROW * (max(half, k - half) - 1) - 0.2
    fig, axes = new_figure(1, 1, width)
    fig.set_size_inches(fig.get_size_inches()[0], 0.32 * (top - bottom) + 0.3)
    ax = axes[0, 0]
    ax.set_axis_off()
    span = max(k - 1, 1)
    ax.set_xlim(k + 0.6 * span, 1 - 0.6 * span)  # best (rank 1) on the right; labels outside
    ax.set_ylim(bottom, top + 0.25)
    ax.plot([1, k], [0, 0], color="black", linewidth=0.8)
    for r in range(1, k + 1):
        ax.plot([r, r], [0, 0.1], color="black", linewidth=0.8)
        ax.text(r, 0.15, str(r), ha="center", va="bottom", fontsize=7)
    for r in np.arange(1.5, k, 1.0):
        ax.plot([r, r], [0, 0.05], color="black", linewidth=0.5)
    ax.plot([k, k - cd], [top, top], color="black", linewidth=1.2)
    for x in (k, k - cd):
        ax.plot([x, x], [top - 0.06, top + 0.06], color="black", linewidth=0.8)
    ax.text(k - cd / 2, top + 0.08, f"CD = {cd:.2f} (α = {alpha:g})", ha="center", va="bottom")
    for level, (i, j) in enumerate(groups):
        y = -0.2 - 0.12 * level
        ax.plot([values[i] - 0.03, values[j] + 0.03], [y, y], color="black", linewidth=2.5)
    for i, (name, rank) in enumerate(zip(names, values, strict=True)):
        right = i < half
        y = first - ROW * (i if right else k - 1 - i)
        end = 1 - 0.05 * span if right else k + 0.05 * span
        ax.plot([rank, rank, end], [0, y, y], color=method_colour(name), linewidth=0.8)
        label = f"{name} ({rank:.2f})" if right else f"({rank:.2f}) {name}"
        ax.text(end, y, " " + label + " ", ha="left" if right else "right", va="center")
    return fig


def _label_heights(x: np.ndarray, y: np.ndarray, gap: float) -> np.ndarray:
    """Label y positions near `y`, moved down where two labels would overlap (points within half
    a decade of each other on the log x axis and closer than `gap` in y)."""
    placed: list[tuple[float, float]] = []
    out = np.empty_like(y)
    for i in np.argsort(-y):
        height = y[i]
        while any(abs(np.log10(x[i] / px)) < 0.5 and abs(height - py) < gap for px, py in placed):
            height -= gap / 2
        placed.append((x[i], height))
        out[i] = height
    return out


def cost_quality_figure(table: pd.DataFrame, width: str = "double"):
    """Each method's mean AUROC over settings against its mean seconds per job (log x); the
    Pareto front (no method is both faster and better) joined by a dashed staircase."""
    seconds = table["seconds"].clip(lower=SECONDS_FLOOR).to_numpy()
    quality = table["auroc"].to_numpy()
    front = pareto_front(seconds, quality)
    fig, axes = new_figure(1, 1, width)
    fig.set_size_inches(fig.get_size_inches()[0], 3.0)
    ax = axes[0, 0]
    order = np.argsort(seconds[front])
    ax.step(
        seconds[front][order],
        quality[front][order],
        where="post",
        color="0.4",
        linestyle="--",
        linewidth=0.8,
        label="Pareto front",
    )
    gap = 0.05 * (np.nanmax(quality) - np.nanmin(quality) + 0.05)
    heights = _label_heights(seconds, quality, gap)
    points = zip(table["method"], seconds, quality, heights, front, strict=True)
    for name, x, y, height, best in points:
        ax.scatter(
            x,
            y,
            color=method_colour(name),
            edgecolor="black" if best else "none",
            linewidth=0.8,
            zorder=3,
        )
        ax.annotate(
            name,
            (x, y),
            xytext=(x * 1.25, height),
            fontsize=6,
            va="center",
            arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.4}
            if height != y
            else None,
        )
    ax.set_xscale("log")
    ax.set_xlabel(f"seconds per job (mean; below {SECONDS_FLOOR:g} s drawn at it)")
    ax.set_ylabel("AUROC (mean over settings)")
    ax.set_title("Cost and quality")
    ax.legend(loc="lower right")
    return fig


def leaderboard_figures(board: Leaderboard, width: str = "double", alpha: float = 0.05) -> dict:
    """{name: Figure} of the figures the leaderboard supports (no CD diagram without a rank test)."""
    figures = {"cost_quality": cost_quality_figure(board.table, width)}
    if board.cd is not None:
        figures["cd"] = cd_figure(
            board.table.set_index("method")["mean_rank"], board.cd, alpha, width
        )
    return figures
