"""Which method is best across settings, by how much, and is the difference real?

From the job rows of a sweep (`valbench-report collect`): a *setting* is one problem (dataset,
corruption, model, utility and whatever else fixes the game, `evalstore.defines_problem`), a method's
*score* in a setting its mean AUROC over seeds. Following Demšar (2006, JMLR 7:1-30):

* ranks: in each setting the methods are ranked by score (1 = best, ties get the mean rank), and
  the mean rank R_j of method j over the N settings summarises it (Sec. 3.2.2);
* Friedman: chi2_F = 12N / (k(k+1)) [sum_j R_j^2 - k(k+1)^2 / 4] with k - 1 degrees of freedom,
  and Iman-Davenport's F_F = (N-1) chi2_F / (N(k-1) - chi2_F) with (k-1, (k-1)(N-1)) (eqs. 1-2);
* Nemenyi: two methods differ when their mean ranks differ by at least the critical difference
  CD = q_alpha sqrt(k(k+1) / (6N)), q_alpha the studentized range quantile / sqrt(2) (Table 5a).

Pairs of methods are also compared job by job: a two-sided Wilcoxon signed-rank test over the
(setting, seed) pairs where both ran, Holm-corrected over all pairs, gives a win, a tie or a loss.
A method x setting cell counts for the ranks only when every seed of that setting finished; settings
with an incomplete cell are left out of the rank statistics by name, never averaged over fewer seeds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ..store.keys import defines_problem
from .markdown import markdown_table
from .plots import method_order
from .tables import BASE_KEYS, largest_budget, setting_label

ALPHA = 0.05
SCORE = "auroc"
TABLE_METRICS = ("auroc", "ap", "sel_precision", "sel_recall")
COSTS = ("n_evals", "seconds")
OUTCOMES = {"win": "wins", "tie": "ties", "loss": "losses"}


def problem_columns(frame: pd.DataFrame) -> list[str]:
    """Config columns that fix the game (seed aside) and differ between jobs of one base setting,
    e.g. `config.dataset.class_sep` of two synthetic problems."""
    candidates = [
        c
        for c in frame
        if c.startswith("config.") and c != "config.seed" and defines_problem(c[len("config.") :])
    ]
    groups = frame.groupby(list(BASE_KEYS), dropna=False)
    return [c for c in candidates if (groups[c].nunique(dropna=False) > 1).any()]


def label_settings(frame: pd.DataFrame) -> pd.DataFrame:
    """Every job (finished or not) with a `setting` label: the base keys that differ in the table
    (the dataset when none do), then the problem columns that tell apart settings of one base."""
    frame = frame.copy()
    for key in BASE_KEYS:
        if key not in frame:
            frame[key] = np.nan
    differ = [k for k in BASE_KEYS if frame[k].nunique(dropna=False) > 1] or ["dataset"]
    extra = problem_columns(frame)
    labels = []
    for row in frame[differ + extra].to_dict("records"):
        base = " / ".join(str(row[k]) for k in differ if not pd.isna(row[k]))
        more = setting_label({k.split(".")[-1]: row[k] for k in extra})
        labels.append(f"{base} {more}".strip())
    frame["setting"] = labels
    return frame


@dataclass
class Leaderboard:
    """The statistics of one sweep; see the module docstring."""

    cells: pd.DataFrame  # method x setting: seeds, failed, complete, mean/std of metrics and costs
    scores: pd.DataFrame  # setting x method mean AUROC over the settings that enter the ranks
    ranks: pd.DataFrame  # same shape: rank within each setting (1 = best)
    left_out: dict[str, str]  # setting -> why it is not in the rank statistics
    friedman: dict | None  # chi2, p, F, p_F, k, N; None when no rank test is possible
    cd: float | None  # Nemenyi critical difference at ALPHA
    pairs: pd.DataFrame  # one row per ordered pair: n, wins, losses, p, p_holm, outcome
    table: pd.DataFrame  # one row per method: mean rank, means over settings, costs, W/T/L
    notes: list[str] = field(default_factory=list)


def cell_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Method x setting: finished `seeds`, `failed` jobs, `expected` seeds (all seeds any job of
    the setting ran with), `complete`, and the mean and std over seeds of each metric and cost (of
    a method's best-funded variant when it ran at several budgets)."""
    expected = jobs.groupby("setting")["seed"].agg(lambda s: s.dropna().nunique())
    ok = largest_budget(jobs[jobs["status"] == "ok"].assign(base=lambda f: f["setting"]))
    values = [c for c in (*TABLE_METRICS, *COSTS) if c in ok]
    grouped = ok.groupby(["method", "setting"])
    cells = pd.concat(
        [grouped[values].mean(), grouped[values].std(ddof=1).add_suffix("_std")], axis=1
    )
    cells.insert(0, "seeds", grouped["seed"].nunique())
    failed = jobs[jobs["status"] != "ok"].groupby(["method", "setting"]).size()
    cells = cells.join(failed.rename("failed"), how="outer").reset_index()
    cells["seeds"] = cells["seeds"].fillna(0).astype(int)
    cells["failed"] = cells["failed"].fillna(0).astype(int)
    cells["expected"] = cells["setting"].map(expected).astype(int)
    cells["complete"] = cells["seeds"] >= cells["expected"]
    return cells


def friedman(mean_ranks, n: int) -> dict:
    """Friedman's chi2_F and Iman-Davenport's F_F (Demšar 2006, eqs. 1-2) from the k methods'
    mean ranks over n settings, with their p-values."""
    mean = np.asarray(mean_ranks, dtype=float)
    k = len(mean)
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(mean**2) - k * (k + 1) ** 2 / 4)
    denominator = n * (k - 1) - chi2
    f = (n - 1) * chi2 / denominator if denominator > 0 else np.inf
    return {
        "k": k,
        "N": n,
        "chi2": float(chi2),
        "p": float(stats.chi2.sf(chi2, k - 1)),
        "F": float(f),
        "p_F": float(stats.f.sf(f, k - 1, (k - 1) * (n - 1))) if np.isfinite(f) else 0.0,
    }


def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """q_alpha of the Nemenyi test for k methods: the studentized range quantile (infinite degrees
    of freedom) over sqrt(2) (Demšar 2006, Table 5a: 2.343 for k = 3 at alpha = 0.05)."""
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2))


def critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """CD = q_alpha sqrt(k(k+1) / (6N)) for k methods over N settings (Demšar 2006, Sec. 3.2.2)."""
    return nemenyi_q(k, alpha) * float(np.sqrt(k * (k + 1) / (6 * n)))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values: sorted p_(i) times (m - i + 1), running maximum, capped
    at 1 (Holm 1979)."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    adjusted = np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p))))
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def pair_tests(jobs: pd.DataFrame, methods: list[str], alpha: float = ALPHA) -> pd.DataFrame:
    """For each ordered pair (a, b): the (setting, seed) pairs where both finished, how often a
    scored higher / lower, the two-sided Wilcoxon signed-rank p (zero differences dropped; 1 when
    all differences are zero), its Holm-adjusted value over the unordered pairs, and the outcome
    for a: win / loss when p_holm < alpha (by the sign of W+ - W-, the signed-rank sum), else tie."""
    ok = largest_budget(jobs[jobs["status"] == "ok"].assign(base=lambda f: f["setting"]))
    wide = ok.pivot_table(index=["setting", "seed"], columns="method", values=SCORE)
    rows = []
    for a, b in itertools.combinations(methods, 2):
        both = wide[[a, b]].dropna()
        diff = (both[a] - both[b]).to_numpy()
        nonzero = diff[diff != 0]
        p = float(stats.wilcoxon(nonzero).pvalue) if len(nonzero) else 1.0
        signed = np.sign(nonzero) * stats.rankdata(np.abs(nonzero))
        rows.append(
            {
                "method": a,
                "other": b,
                "n": len(diff),
                "higher": int((diff > 0).sum()),
                "lower": int((diff < 0).sum()),
                "median_diff": float(np.median(diff)) if len(diff) else np.nan,
                "rank_sum": float(signed.sum()),  # W+ - W-: the direction the test measures
                "p": p,
            }
        )
    columns = ["method", "other", "n", "higher", "lower", "median_diff", "rank_sum", "p"]
    pairs = pd.DataFrame(rows, columns=columns)
    pairs["p_holm"] = holm(pairs["p"].to_numpy()) if len(pairs) else []
    mirrored = pairs.rename(
        columns={"method": "other", "other": "method", "higher": "lower", "lower": "higher"}
    ).assign(median_diff=-pairs["median_diff"], rank_sum=-pairs["rank_sum"])
    pairs = pd.concat([pairs, mirrored], ignore_index=True)
    significant = pairs["p_holm"] < alpha
    pairs["outcome"] = np.where(significant, np.where(pairs["rank_sum"] > 0, "win", "loss"), "tie")
    return pairs


def pareto_front(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Bool mask of the points no other point dominates (cost <= and quality >=, one strictly)."""
    cost, quality = np.asarray(cost, float), np.asarray(quality, float)
    out = np.ones(len(cost), bool)
    for i in range(len(cost)):
        better = (cost <= cost[i]) & (quality >= quality[i])
        strictly = (cost < cost[i]) | (quality > quality[i])
        out[i] = not (better & strictly).any()
    return out


def leaderboard(frame: pd.DataFrame, alpha: float = ALPHA) -> Leaderboard:
    """All the statistics of a collected sweep; a ValueError when no job finished."""
    if "status" not in frame or not (frame["status"] == "ok").any():
        raise ValueError("no job finished (status ok): no leaderboard")
    jobs = label_settings(frame)
    cells = cell_table(jobs)
    notes = []
    ran = cells.groupby("method")["seeds"].sum()
    for method in ran.index[ran == 0]:
        notes.append(f"{method}: no job finished; left out of the ranks")
    methods = method_order(ran.index[ran > 0])
    wide = cells.pivot(index="setting", columns="method", values=SCORE).reindex(columns=methods)
    full = cells.pivot(index="setting", columns="method", values="complete")
    full = full.reindex(index=wide.index, columns=methods).fillna(False).astype(bool)
    left_out = {}
    for setting in wide.index:
        missing = [m for m in methods if not full.loc[setting, m] or pd.isna(wide.loc[setting, m])]
        if missing:
            left_out[setting] = "incomplete: " + ", ".join(missing)
    scores = wide.drop(index=list(left_out))
    ranks = scores.rank(axis=1, ascending=False, method="average")
    test = cd = None
    if len(methods) < 2:
        notes.append(f"only one method ({', '.join(methods)}): no rank test possible")
    elif len(scores) < 2:
        notes.append(
            f"{len(scores)} complete setting(s) with all {len(methods)} methods: no rank test "
            "possible (the Friedman test needs at least 2)"
        )
    else:
        test = friedman(ranks.mean(axis=0), len(ranks))
        cd = critical_difference(len(methods), len(scores), alpha)
    pairs = pair_tests(jobs, methods, alpha)
    table = _method_table(cells, ranks, pairs, methods)
    return Leaderboard(cells, scores, ranks, left_out, test, cd, pairs, table, notes)


def _method_table(cells, ranks, pairs, methods) -> pd.DataFrame:
    grouped = cells.groupby("method")
    table = pd.DataFrame(index=pd.Index(methods, name="method"))
    table["mean_rank"] = ranks.mean(axis=0) if len(ranks) else np.nan
    for col in (*TABLE_METRICS, *COSTS):
        if col in cells:
            table[col] = grouped[col].mean()
    table["settings"] = grouped["seeds"].apply(lambda s: int((s > 0).sum()))
    table["incomplete"] = grouped["complete"].apply(lambda c: int((~c).sum()))
    counts = pairs.groupby(["method", "outcome"]).size().unstack(fill_value=0)
    counts = counts.reindex(index=table.index, columns=list(OUTCOMES), fill_value=0)
    table[list(OUTCOMES.values())] = counts.fillna(0).astype(int).to_numpy()
    order = table["mean_rank"].fillna(np.inf).to_numpy(), -table[SCORE].fillna(-1).to_numpy()
    return table.iloc[np.lexsort(order[::-1])].reset_index()


HEADERS = {
    "auroc": "AUROC",
    "ap": "AP",
    "sel_precision": "sel. precision",
    "sel_recall": "sel. recall",
    "n_evals": "evaluations",
    "seconds": "seconds",
}
FORMATS = {"n_evals": "{:.0f}", "seconds": "{:.2f}", "mean_rank": "{:.2f}"}


def _number(value, key: str) -> str:
    return FORMATS.get(key, "{:.3f}").format(value) if np.isfinite(value) else "–"


def settings_markdown(cells: pd.DataFrame) -> str:
    """Method x setting: mean ± std over seeds, the best AUROC and AP of a setting in bold; `seeds`
    says `4/5 (1 failed)` where a method did not finish every seed of the setting."""
    metrics = [m for m in TABLE_METRICS if m in cells and cells[m].notna().any()]
    columns = [*metrics, *COSTS]
    best = {m: cells.groupby("setting")[m].transform("max") for m in ("auroc", "ap") if m in cells}
    order = cells.assign(
        _o=cells["setting"].map({s: i for i, s in enumerate(sorted(set(cells["setting"])))})
    )
    rows = []
    for i, row in order.sort_values(["_o", "auroc"], ascending=[True, False]).iterrows():
        seeds = str(row["seeds"])
        if not row["complete"]:
            seeds = f"{row['seeds']}/{row['expected']}" + (
                f" ({row['failed']} failed)" if row["failed"] else ""
            )
        cells_ = [row["setting"], row["method"], seeds]
        for col in columns:
            text = _number(row[col], col)
            if col in best and np.isfinite(row[col]) and row[col] == best[col][i]:
                text = f"**{text}**"
            std = row.get(f"{col}_std", np.nan)
            cells_.append(
                text + (f" ± {_number(std, col)}" if np.isfinite(std) and std > 0 else "")
            )
        rows.append(cells_)
    header = ["setting", "method", "seeds", *(HEADERS[c] for c in columns)]
    return markdown_table(header, rows, "lll" + "r" * len(columns))


def leaderboard_markdown(table: pd.DataFrame) -> str:
    """One row per method, best mean rank first: mean rank, means over settings of AUROC and AP
    (and selection precision/recall where a method selects), wins / ties / losses, mean costs."""
    metrics = [m for m in TABLE_METRICS if m in table and table[m].notna().any()]
    header = ["method", "mean rank", *(HEADERS[m] for m in metrics), "W / T / L"]
    header += [HEADERS[c] for c in COSTS]
    rows = []
    for _, row in table.iterrows():
        name = row["method"] + (" †" if row["incomplete"] else "")
        cells = [name, _number(row["mean_rank"], "mean_rank")]
        cells += [_number(row[m], m) for m in metrics]
        cells.append(f"{row['wins']} / {row['ties']} / {row['losses']}")
        cells += [_number(row[c], c) for c in COSTS]
        rows.append(cells)
    return markdown_table(header, rows, "l" + "r" * (len(header) - 1))


def pairs_markdown(pairs: pd.DataFrame, methods: list[str]) -> str:
    """Row method vs. column method: W (significantly higher AUROC), L (lower) or T (no
    significant difference), Holm-corrected Wilcoxon over (setting, seed) pairs."""
    letter = {"win": "W", "tie": "T", "loss": "L"}
    outcome = pairs.set_index(["method", "other"])["outcome"]
    rows = [[a] + ["·" if a == b else letter[outcome[(a, b)]] for b in methods] for a in methods]
    return markdown_table(["vs.", *methods], rows)


def statistics_markdown(board: Leaderboard, alpha: float = ALPHA) -> str:
    """The rank tests in words: Friedman and Iman-Davenport, the critical difference, the settings
    left out, the notes."""
    lines = []
    if board.friedman:
        t = board.friedman
        lines.append(
            f"Friedman test over N = {t['N']} settings and k = {t['k']} methods (Demšar 2006): "
            f"chi2_F = {t['chi2']:.2f}, p = {t['p']:.3g}; Iman-Davenport F_F = {t['F']:.2f}, "
            f"p = {t['p_F']:.3g}."
        )
        lines.append(
            f"Nemenyi critical difference at alpha = {alpha:g}: CD = {board.cd:.2f} "
            f"(q = {nemenyi_q(t['k'], alpha):.3f}); mean ranks closer than CD are not "
            "significantly different."
        )
    lines += [f"{note}." for note in board.notes]
    for setting, why in board.left_out.items():
        lines.append(f"Left out of the ranks: {setting} ({why}).")
    lines.append(
        f"W / T / L: two-sided Wilcoxon signed-rank tests of AUROC over the (setting, seed) pairs "
        f"where both methods finished, Holm-corrected over all pairs, alpha = {alpha:g}."
    )
    return "\n\n".join(lines)
