"""`valbench-report`: turn job records into tables.

valbench-report collect multirun/quickstart -o results.parquet
valbench-report table multirun/quickstart        # or a collected .parquet/.csv file
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .score import METRIC_KEYS
from .store import SCHEMA_VERSION, find_records, read_record

log = logging.getLogger("valbench.report")
COST_KEYS = ("n_evals", "seconds")
SETTING_KEYS = ("dataset", "corruption", "model", "utility")


def collect(*dirs) -> pd.DataFrame:
    """All records under `dirs` as one tidy table: one row per job, flattened config columns."""
    rows = []
    for path in find_records(*dirs):
        record = read_record(path)
        if record is None:
            continue
        if record.get("schema") != SCHEMA_VERSION:
            log.warning(
                "skipping %s: schema %s, this valbench reads %s",
                path,
                record.get("schema"),
                SCHEMA_VERSION,
            )
            continue
        config = {
            f"config.{k}": (str(v) if isinstance(v, (list, dict)) else v)
            for k, v in record.pop("config", {}).items()
        }
        record.pop("traceback", None)
        record.pop("info", None)
        versions = record.pop("versions", {}) or {}
        rows.append(
            {**record, **config, "valbench_version": versions.get("valbench"), "path": str(path)}
        )
    if not rows:
        raise FileNotFoundError(f"no valbench result records under {', '.join(map(str, dirs))}")
    frame = pd.DataFrame(rows)
    for key in (*METRIC_KEYS, *COST_KEYS):
        if key in frame:
            frame[key] = pd.to_numeric(frame[key], errors="coerce")
    return frame


def load_table(sources) -> pd.DataFrame:
    """A collected table from a .parquet/.csv file, or collected on the fly from record folders."""
    if len(sources) == 1 and Path(sources[0]).suffix in (".parquet", ".csv"):
        path = Path(sources[0])
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return collect(*sources)


def summarize(frame: pd.DataFrame, metrics=("auroc", "ap", "f1_2means")) -> pd.DataFrame:
    """Mean and std over seeds of each metric and cost, per method x setting (ok jobs only)."""
    ok = frame[frame["status"] == "ok"]
    keys = [k for k in SETTING_KEYS if k in ok and ok[k].nunique() > 1] + ["method"]
    cols = [c for c in (*metrics, *COST_KEYS) if c in ok]
    grouped = ok.groupby(keys, dropna=False)[cols]
    out = grouped.mean().join(grouped.std(ddof=1), rsuffix="_std")
    out.insert(0, "seeds", grouped.size())
    return out.sort_values(metrics[0], ascending=False)


def to_markdown(summary: pd.DataFrame, metrics=("auroc", "ap", "f1_2means")) -> str:
    """The summary as a Markdown table with mean ± std cells."""
    index_names = list(summary.index.names)
    header = [*index_names, "seeds", *metrics, *COST_KEYS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for idx, row in summary.iterrows():
        idx = idx if isinstance(idx, tuple) else (idx,)
        cells = [str(i) for i in idx] + [str(int(row["seeds"]))]
        for col in (*metrics, *COST_KEYS):
            mean, std = row.get(col, np.nan), row.get(f"{col}_std", np.nan)
            fmt = "{:.0f}" if col == "n_evals" else "{:.2f}" if col == "seconds" else "{:.3f}"
            cell = fmt.format(mean) if np.isfinite(mean) else "–"
            if np.isfinite(std) and std > 0:
                cell += " ± " + fmt.format(std)
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cmd_collect(args) -> int:
    frame = collect(*args.dirs)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out.with_suffix(".parquet"), index=False)
    frame.to_csv(out.with_suffix(".csv"), index=False)
    print(f"{len(frame)} records -> {out.with_suffix('.parquet')} and {out.with_suffix('.csv')}")
    return 0


def _cmd_table(args) -> int:
    frame = load_table(args.sources)
    print(to_markdown(summarize(frame)))
    failed = frame[frame["status"] != "ok"]
    for _, row in failed.iterrows():
        print(f"FAILED {row['method']} ({row['path']}): {row.get('error')}")
    return 0


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = argparse.ArgumentParser(
        prog="valbench-report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("collect", help="job records -> one table (parquet and CSV)")
    p.add_argument("dirs", nargs="+")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=_cmd_collect)
    p = sub.add_parser("table", help="mean ± std per method x setting, as Markdown")
    p.add_argument("sources", nargs="+", help="record folders or a collected .parquet/.csv")
    p.set_defaults(func=_cmd_table)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"valbench-report: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
