"""The one Markdown table writer of the reports (GitHub-flavoured pipe tables)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence], align: str = "") -> str:
    """`header` and `rows` (cells formatted with str) as a pipe table; `align` has one letter per
    column, l (default) or r (right-aligned: `---:`)."""
    align = align.ljust(len(header), "l")
    if set(align) - {"l", "r"} or len(align) != len(header):
        raise ValueError(f"align must be one l or r per column ({len(header)}), got {align!r}")
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in align)
    lines = ["| " + " | ".join(map(str, header)) + " |", rule]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)
