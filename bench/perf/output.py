"""What every benchmark writes: a CSV of its rows and a Markdown table (for the README's generated
blocks, `<!-- valbench-table: PATH -->`), both with the machine's load average at measurement time."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ..report.markdown import markdown_table
from ..store.records import write_atomic


def load_average() -> str:
    """The 1/5/15-minute load averages, as `uptime` shows them ('n/a' where unknown)."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def write_csv(rows: list[dict], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(Path(path), buf.getvalue().encode())


def write_markdown(rows: list[dict], keys: list[str], path: Path, caption: str) -> None:
    """A pipe table of `keys` from each row, under a one-line caption (numbers right-aligned)."""
    table = markdown_table(
        keys,
        [[row[k] for k in keys] for row in rows],
        "".join("r" if isinstance(rows[0][k], (int, float)) and not isinstance(rows[0][k], bool)
                else "l" for k in keys),
    )  # fmt: skip
    write_atomic(Path(path), f"{caption}\n\n{table}\n".encode())
