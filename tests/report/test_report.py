"""valbench-report collect and table on a synthetic record set, and on bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from fake_records import METHODS, write_sweep

from valbench.report.cli import main
from valbench.report.collect import collect, load_table
from valbench.report.tables import ci95, summarize, to_latex, to_markdown, variant_columns
from valbench.store.records import SCHEMA_VERSION, read_record, write_record


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    write_sweep(root)
    return root


def test_collect_gives_one_row_per_job_with_config_metric_and_cost_columns(sweep, tmp_path):
    frame = collect(sweep)
    assert len(frame) == 3 * len(METHODS)
    assert frame["path"].is_unique
    for col in ("auroc", "ap", "f1_2means", "n_evals", "seconds", "config.dataset.n_train"):
        assert col in frame
    assert (frame["config.dataset.n_train"] == 30).all()
    assert frame["auroc"].dtype == float
    oracle = frame[frame["method"] == "oracle"]
    assert (oracle["auroc"] == 1.0).all()

    assert main(["collect", str(sweep), "-o", str(tmp_path / "out" / "results")]) == 0
    for suffix in (".parquet", ".csv"):
        back = load_table([tmp_path / "out" / f"results{suffix}"])
        assert len(back) == len(frame)
        np.testing.assert_allclose(
            back.sort_values("path")["auroc"], frame.sort_values("path")["auroc"]
        )


def test_summary_is_mean_and_std_over_seeds_per_method_and_budget(sweep):
    frame = collect(sweep)
    assert variant_columns(frame) == ["config.method.budget"]
    summary = summarize(frame)
    assert len(summary) == len(METHODS)  # ame at two budgets gives two rows
    assert (summary["seeds"] == 3).all()
    ame = frame[(frame["method"] == "ame") & (frame["config.method.budget"] == 100)]
    row = summary[(summary["method"] == "ame") & (summary["config.method.budget"] == 100)].iloc[0]
    assert row["auroc"] == pytest.approx(ame["auroc"].mean())
    assert row["auroc_std"] == pytest.approx(ame["auroc"].std(ddof=1))
    assert row["setting"].endswith("method.budget=100")
    assert row["sel_recall"] == pytest.approx(ame["sel_recall"].mean())

    markdown = to_markdown(summary)
    assert markdown.splitlines()[0].startswith("| method.budget | method | seeds | auroc")
    assert "**1.000**" in markdown  # the oracle is the best of its setting
    assert " ± " in markdown
    latex = to_latex(summary)
    assert "\\toprule" in latex and "\\bottomrule" in latex
    assert "my\\_method" in latex and "$\\pm$" in latex


def test_ci95_matches_the_t_interval():
    from scipy import stats

    x = np.array([0.6, 0.7, 0.9])
    low, high = stats.t.interval(0.95, 2, loc=x.mean(), scale=stats.sem(x))
    assert ci95(x.std(ddof=1), 3) == pytest.approx((high - low) / 2)
    assert np.isnan(ci95(0.0, 1))


def test_table_cli_writes_markdown_and_latex_and_reports_failures(sweep, tmp_path, capsys):
    failed = tmp_path / "failed"
    write_record(
        failed,
        {"schema": SCHEMA_VERSION, "status": "error", "method": "loo", "error": "ValueError: x"},
    )
    out = tmp_path / "tables" / "summary"
    assert main(["table", str(sweep), str(failed), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| method |" in printed or "| method.budget |" in printed
    assert "FAILED loo" in printed and "ValueError: x" in printed
    assert out.with_suffix(".md").read_text().startswith("|")
    assert "\\begin{tabular}" in out.with_suffix(".tex").read_text()
    assert main(["table", str(sweep), "--latex"]) == 0
    assert "\\begin{tabular}" in capsys.readouterr().out


def test_a_folder_without_records_is_an_error(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no valbench result records"):
        collect(tmp_path)
    assert main(["table", str(tmp_path)]) == 2
    assert "no valbench result records" in capsys.readouterr().err
    assert main(["table", str(tmp_path / "missing.parquet")]) == 2


def test_commands_with_nothing_to_show_exit_non_zero(tmp_path, capsys):
    """A sweep in which no job finished: every command says so and exits non-zero."""
    for seed in (0, 1):
        record = {"schema": SCHEMA_VERSION, "status": "error", "method": "ame", "seed": seed}
        write_record(tmp_path / f"seed={seed}", record | {"error": "BudgetTooSmall: ame: 5"})
    out = tmp_path / "report" / "results"
    assert main(["collect", str(tmp_path), "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("FAILED ame") == 2 and "BudgetTooSmall: ame: 5" in captured.out
    assert "no job finished (status ok): nothing to show" in captured.err
    assert out.with_suffix(".parquet").exists()  # the failures are in the table
    for command in (["table"], ["plot", "--no-removal"], ["sv-error"]):
        assert main([command[0], str(out.with_suffix(".parquet")), *command[1:]]) == 2
        assert "no job finished" in capsys.readouterr().err
    assert main(["agreement", str(tmp_path)]) == 2
    assert "no records with info['agreement']" in capsys.readouterr().err


def test_table_metrics_are_checked_by_name(sweep, capsys):
    assert main(["table", str(sweep), "--metrics", "auroc,precision_at_k"]) == 0
    assert "| auroc | precision_at_k | n_evals |" in capsys.readouterr().out
    assert main(["table", str(sweep), "--metrics", "auroc,aucroc"]) == 2
    assert (
        "--metrics 'auroc,aucroc': unknown ['aucroc']; allowed: auroc, ap"
        in capsys.readouterr().err
    )


def test_corrupt_and_foreign_schema_records_are_skipped_by_name(sweep, tmp_path, caplog):
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "result.json").write_text('{"schema": 1, "status": "o')
    old = read_record(next(sweep.rglob("result.json")))
    write_record(tmp_path / "old", {**old, "schema": SCHEMA_VERSION + 1})
    good = tmp_path / "good"
    write_record(good, old)
    with caplog.at_level(logging.WARNING):
        frame = collect(tmp_path)
    assert list(frame["path"]) == [str(good / "result.json")]
    assert f"skipping corrupt record {tmp_path / 'corrupt' / 'result.json'}" in caplog.text
    assert (
        f"skipping {tmp_path / 'old' / 'result.json'}: schema {SCHEMA_VERSION + 1}" in caplog.text
    )

    (good / "result.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"skipped 1 corrupt, 1 schema 2"):
        collect(tmp_path)


def test_columns_of_mixed_types_still_write_to_parquet(sweep, tmp_path):
    paths = sorted(sweep.rglob("result.json"))[:2]
    for path, value in zip(paths, (3, "auto"), strict=True):
        record = json.loads(path.read_text())
        record["config"]["method.batch"] = value
        write_record(tmp_path / path.parent.name, record)
    frame = collect(tmp_path)
    assert sorted(frame["config.method.batch"]) == ["3", "auto"]
    frame.to_parquet(tmp_path / "t.parquet")
    assert len(pd.read_parquet(tmp_path / "t.parquet")) == 2


def test_collected_tables_of_another_schema_are_refused(sweep, tmp_path, caplog):
    frame = collect(sweep)
    mixed = frame.assign(schema=[SCHEMA_VERSION + 1] + [SCHEMA_VERSION] * (len(frame) - 1))
    mixed.to_csv(tmp_path / "mixed.csv", index=False)
    with caplog.at_level(logging.WARNING):
        assert len(load_table([tmp_path / "mixed.csv"])) == len(frame) - 1
    assert f"skipping {frame['path'].iloc[0]}: schema {SCHEMA_VERSION + 1}" in caplog.text
    frame.assign(schema=0).to_parquet(tmp_path / "old.parquet")
    with pytest.raises(ValueError, match=f"no rows of schema {SCHEMA_VERSION}"):
        load_table([tmp_path / "old.parquet"])
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "other.csv")
    with pytest.raises(ValueError, match="not a table made by"):
        load_table([tmp_path / "other.csv"])
