"""README and docs/ tables from committed results files, so that no number in them is typed by hand.

A generated block in README.md or a page of docs/ names the Markdown table file it shows, a path
under results/ (relative to the repository root) written by the script that measured the numbers:

    <!-- valbench-table: results/quickstart/table.md -->
    | method | seeds | auroc | ... |
    <!-- /valbench-table -->

`render` replaces the body of every block with its file's content; `valbench-report readme` rewrites
README.md and the docs/ pages with blocks in place (and docs/methods.md, see `method_docs`), and
`valbench-report readme --check` only reports what differs.
"""

from __future__ import annotations

import re
from pathlib import Path

OPEN = re.compile(r"<!-- valbench-table: (?P<path>\S+) -->\n")
CLOSE = "<!-- /valbench-table -->"
RESULTS = "results"


def blocks(text: str, readme: Path) -> list[tuple[str, int, int]]:
    """(path, start, end) of every block body in `text`: text[start:end] sits between the markers.
    A ValueError names the README line of a block that is not closed or opens inside another."""
    out = []
    for match in OPEN.finditer(text):
        end = text.find(CLOSE, match.end())
        nested = OPEN.search(text, match.end())
        line = text.count("\n", 0, match.start()) + 1
        if end < 0 or (nested is not None and nested.start() < end):
            raise ValueError(
                f"{readme}:{line}: block for {match['path']} has no {CLOSE} before the next block or the end"
            )
        out.append((match["path"], match.end(), end))
    return out


def repository_root(page: Path) -> Path:
    """The nearest folder at or above `page`'s own that holds results/ (its own folder if none)."""
    page = Path(page).resolve()
    for folder in page.parents:
        if (folder / RESULTS).is_dir():
            return folder
    return page.parent


def pages(root: Path) -> list[Path]:
    """README.md and every docs/*.md page of the repository at `root` that holds a block."""
    found = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return [p for p in found if p.is_file() and OPEN.search(p.read_text())]


def table_file(path: str, root: Path, readme: Path) -> Path:
    """The committed results file a block names (relative to the repository root `root`)."""
    if Path(path).is_absolute() or Path(path).parts[:1] != (RESULTS,) or ".." in Path(path).parts:
        raise ValueError(f"{readme}: block path {path!r} must be a file under {RESULTS}/")
    file = root / path
    if not file.is_file():
        raise FileNotFoundError(f"{readme}: block names {path}, which does not exist")
    return file


def render(readme: Path) -> tuple[str, list[str]]:
    """The README with every block's body replaced by its file's content, and the paths of the
    blocks whose body changed (empty when the README is up to date)."""
    readme = Path(readme)
    text = readme.read_text()
    found = blocks(text, readme)
    if not found:
        raise ValueError(f"{readme} has no <!-- valbench-table: PATH --> blocks: nothing to render")
    pieces, changed, last = [], [], 0
    for path, start, end in found:
        content = table_file(path, repository_root(readme), readme).read_text().strip("\n") + "\n"
        if text[start:end] != content:
            changed.append(path)
        pieces += [text[last:start], content]
        last = end
    return "".join(pieces) + text[last:], changed
