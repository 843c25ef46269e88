"""README and docs/ tables come from committed results files, docs/methods.md from conf/method/
(valbench-report readme)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from valbench.report.cli import main
from valbench.report.method_docs import PAGE, page, parse
from valbench.report.readme import blocks, pages, render

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MEASURED = re.compile(r"[\s*±/–,-]*\d*\.\d+[\s*±/–,.\d-]*")  # '0.983', '**0.19** / 0.09 ± 0.1'


def test_every_table_equals_its_results_file():
    for readme in pages(ROOT):
        _, changed = render(readme)
        assert changed == [], (
            f"{readme} blocks differ from their files (run `make readme`): {changed}"
        )


def test_the_method_reference_is_generated_from_the_configs():
    assert (ROOT / PAGE).read_text() == page(), f"{PAGE} is stale: run `make readme`"


def test_the_numbers_are_generated():
    """The result tables of the README and docs/ (quickstart, estimators, poisons,
    final-model-only, ...) are blocks; outside them no table row has a cell that is a measured
    number such as 0.983."""
    texts = {p: p.read_text() for p in PAGES}
    paths = [path for p, text in texts.items() for path, _, _ in blocks(text, p)]
    assert {
        "results/quickstart/table.md",
        "results/perf/estimators.md",
        "results/poison_digits/summary.md",
        "results/final_model_only/spearman.md",
        "results/leaderboard/leaderboard.md",
        "results/perf/engine_cpu.md",
    } <= set(paths)
    outside = []
    for p, text in texts.items():
        last = 0
        for _, start, end in blocks(text, p):
            outside.append(text[last:start])
            last = end
        outside.append(text[last:])
    numeric_rows = [
        line
        for part in outside
        for line in part.splitlines()
        if line.startswith("|") and any(MEASURED.fullmatch(cell) for cell in line.split("|"))
    ]
    assert numeric_rows == [], numeric_rows


def _repo(tmp_path: Path, body: str, table: str = "| a |\n|---|\n| 1 |\n") -> Path:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "t.md").write_text(table)
    readme = tmp_path / "README.md"
    readme.write_text(body)
    return readme


BLOCK = "intro\n<!-- valbench-table: results/t.md -->\n{}<!-- /valbench-table -->\nend\n"


def test_readme_rewrites_a_stale_block_and_check_fails_until_then(tmp_path, capsys):
    readme = _repo(tmp_path, BLOCK.format("| a |\n|---|\n| 0.9 |\n"))
    assert main(["readme", "--readme", str(readme), "--check"]) == 1
    assert "STALE" in capsys.readouterr().out and "0.9" in readme.read_text()
    assert main(["readme", "--readme", str(readme)]) == 0
    assert readme.read_text() == BLOCK.format("| a |\n|---|\n| 1 |\n")
    assert main(["readme", "--readme", str(readme), "--check"]) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("no blocks\n", "nothing to render"),
        ("<!-- valbench-table: results/t.md -->\n| a |\n", "has no <!-- /valbench-table -->"),
        (BLOCK.format("").replace("t.md", "gone.md"), "results/gone.md, which does not exist"),
        (BLOCK.format("").replace("results/t.md", "../t.md"), "must be a file under results/"),
        (BLOCK.format("<!-- valbench-table: results/t.md -->\n"), "no <!-- /valbench-table -->"),
    ],
)
def test_bad_readmes_are_named(tmp_path, capsys, body, message):
    readme = _repo(tmp_path, body)
    assert main(["readme", "--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(readme) in err
    assert readme.read_text() == body  # nothing written


def test_the_derived_tables_match_their_committed_data(tmp_path):
    """The Markdown tables made from committed CSVs are what their commands make of them now."""
    import pandas as pd

    from valbench.perf.estimators import error_markdown

    estimators = pd.read_csv(ROOT / "results" / "perf" / "estimators.csv")
    assert (ROOT / "results/perf/estimators.md").read_text() == error_markdown(estimators) + "\n"
    metrics = "auroc,ap,precision_at_k,sel_precision,sel_recall"
    source = ROOT / "results" / "poison_digits" / "results.csv"
    out = tmp_path / "summary"
    assert main(["table", str(source), "--metrics", metrics, "-o", str(out)]) == 0
    assert (ROOT / "results/poison_digits/summary.md").read_text() == out.with_suffix(
        ".md"
    ).read_text()


def test_readme_over_a_repository_covers_docs_pages_and_the_method_reference(
    tmp_path, capsys, monkeypatch
):
    readme = _repo(tmp_path, "front page, no blocks\n")
    (tmp_path / "docs").mkdir()
    stale = BLOCK.format("| a |\n|---|\n| 0.9 |\n")
    (tmp_path / "docs" / "results.md").write_text(stale)
    (tmp_path / "docs" / "plain.md").write_text("no blocks here\n")
    monkeypatch.chdir(tmp_path)
    assert main(["readme", "--check"]) == 1
    out = capsys.readouterr().out
    assert "STALE docs/results.md: the block of results/t.md" in out
    assert f"STALE {PAGE}" in out and "plain.md" not in out and "README" not in out
    assert main(["readme"]) == 0
    assert (tmp_path / "docs" / "results.md").read_text() == BLOCK.format("| a |\n|---|\n| 1 |\n")
    assert (tmp_path / PAGE).read_text() == page()
    assert main(["readme", "--check"]) == 0
    assert readme.read_text() == "front page, no blocks\n"


def test_the_method_page_shows_each_key_its_default_and_meaning():
    base = parse(
        "base",
        "# What it does.\n_target_: pkg.Cls\nbudget: 10  # evaluations\ntol: 0.1  # a\n  # b | c\n",
    )
    variant = parse("variant", "# Fewer.\ndefaults:\n  - base\n  - _self_\n\nbudget: 5\n")
    text = page({"base": base, "variant": variant})
    assert "| [`base`](#base) | What it does. | `pkg.Cls` |" in text
    assert "| `tol` | `0.1` | a b \\| c |" in text
    assert "`_target_: pkg.Cls` (every key of `base`; * marks this config's changes)" in text
    assert "| `budget` * | `5` | evaluations |" in text.split("## variant")[1]
