"""The paper style, set in one place: fonts, sizes, column widths and one fixed colour per method.

Widths follow the common two-column ML formats (ICML, NeurIPS-style two-column proceedings):
a single column is 3.25 in wide, the full text width 6.75 in. Fonts are serif at 8 pt (9 pt titles),
so a figure printed at its own size matches a 9-10 pt body text. PDFs embed TrueType fonts (type 42),
which publishers accept, instead of Type 3.
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager

SINGLE_COLUMN_IN = 3.25
DOUBLE_COLUMN_IN = 6.75
PANEL_ASPECT = 0.8  # panel height / panel width

PAPER_RC = {
    "font.family": "serif",
    "font.serif": ["DejaVu Serif", "Times New Roman", "Times"],
    "mathtext.fontset": "dejavuserif",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "errorbar.capsize": 2,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
}

# One colour per known method, the same in every figure (matplotlib's tab20 and tab10 hues).
METHOD_COLOURS = {
    "random": "#7f7f7f",
    "loo": "#8c564b",
    "exact_shapley": "#1f77b4",
    "mc_shapley": "#aec7e8",
    "tmc_shapley": "#17becf",
    "beta_shapley": "#9edae5",
    "exact_banzhaf": "#2ca02c",
    "banzhaf": "#98df8a",
    "ame": "#d62728",
    "ame_knockoff": "#7f0000",
    "ame_sv": "#ff9896",
    "knn_shapley": "#9467bd",
    "data_oob": "#c5b0d5",
    "grad_dot": "#ff7f0e",
    "grad_cos": "#ffbb78",
    "tracin": "#bcbd22",
    "influence": "#e377c2",
    "further_training": "#000000",
}
# Unknown methods draw from these, by a stable hash of their name.
FALLBACK_COLOURS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d")


def method_colour(method: str) -> str:
    """The fixed colour of `method`; unknown names get a colour chosen by a stable hash (CRC-32)."""
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    return FALLBACK_COLOURS[zlib.crc32(method.encode()) % len(FALLBACK_COLOURS)]


def figure_width(width: str, n_cols: int) -> float:
    """Inches: `single` or `double` column; `auto` takes one column per panel up to two panels."""
    if width == "auto":
        width = "single" if n_cols == 1 else "double"
    if width not in ("single", "double"):
        raise ValueError(f"width must be 'single', 'double' or 'auto', got {width!r}")
    return SINGLE_COLUMN_IN if width == "single" else DOUBLE_COLUMN_IN


def new_figure(n_rows: int, n_cols: int, width: str = "auto", sharey: bool = False):
    """A Figure (Agg canvas, no pyplot state) with an (n_rows, n_cols) grid of axes in the paper
    style; returns (figure, axes array of shape (n_rows, n_cols))."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    w = figure_width(width, n_cols)
    h = w / n_cols * PANEL_ASPECT * n_rows
    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharey=sharey)
    return fig, np.asarray(axes)


@contextmanager
def paper_style():
    """Apply PAPER_RC to every figure made inside the block."""
    import matplotlib

    with matplotlib.rc_context(PAPER_RC):
        yield
