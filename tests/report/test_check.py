"""The CI regression check: passes on the committed baseline, fails on doctored ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from valbench.engine.device import versions
from valbench.report.check import (
    BASELINE_COLUMNS,
    CHECKED_KEYS,
    MIN_SECONDS,
    baseline_rows,
    compare,
    read_baseline,
)
from valbench.report.cli import main
from valbench.report.collect import load_table
from valbench.report.tables import summarize
from valbench.store.records import SCHEMA_VERSION, write_record

BASELINE = Path(__file__).resolve().parents[2] / "results" / "baselines" / "ci.csv"


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    """The real CI check, run once: its sweep folder and its output. With VALBENCH_CI_SWEEP=DIR
    (.ci/run sets it after `make check` swept into DIR) the check compares that sweep, and the
    CI sweep runs once per CI run, not twice."""
    cmd = [sys.executable, "-m", "valbench.report", "check", "--baseline", str(BASELINE)]
    if os.environ.get("VALBENCH_CI_SWEEP"):
        folder = Path(os.environ["VALBENCH_CI_SWEEP"])
        args = ["--results", str(folder)]
    else:
        folder = tmp_path_factory.mktemp("ci")
        args = ["--sweep-dir", str(folder)]
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=600)
    return folder, done


def check(baseline: Path, *results: Path) -> int:
    return main(["check", "--baseline", str(baseline), "--results", *map(str, results)])


def doctor(tmp_path: Path, change) -> Path:
    baseline = read_baseline(BASELINE)
    path = tmp_path / "doctored.csv"
    change(baseline).to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_the_ci_sweep_passes_on_the_committed_baseline(ci_run):
    folder, done = ci_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == len(read_baseline(BASELINE))
    assert all(row.endswith("| ok |") for row in rows), rows


@pytest.mark.slow
def test_a_doctored_quality_fails_the_check(ci_run, tmp_path, capsys):
    def raise_loo(b):
        return b.assign(auroc=b["auroc"] + 0.1 * (b["method"] == "loo"))

    assert check(doctor(tmp_path, raise_loo), ci_run[0]) == 1
    out = capsys.readouterr().out
    assert out.count("REGRESSED: auroc -0.100 < -0.02") == 2


@pytest.mark.slow
def test_more_evaluations_than_the_baseline_fail_the_check(ci_run, tmp_path, capsys):
    def halve(b):
        return b.assign(n_evals=b["n_evals"] // 2)

    assert check(doctor(tmp_path, halve), ci_run[0]) == 1
    assert "n_evals 61 > 1.1 x 30" in capsys.readouterr().out


@pytest.mark.slow
def test_a_row_missing_from_the_baseline_is_new_not_a_failure(ci_run, tmp_path, capsys):
    assert check(doctor(tmp_path, lambda b: b.iloc[1:]), ci_run[0]) == 0
    assert "NEW: not in the baseline" in capsys.readouterr().out


@pytest.mark.slow
def test_a_baseline_row_the_sweep_no_longer_makes_fails(ci_run, tmp_path, capsys):
    def add_row(b):
        return pd.concat([b, b.iloc[:1].assign(method="gone")])

    assert check(doctor(tmp_path, add_row), ci_run[0]) == 1
    assert "MISSING: the sweep no longer produces it" in capsys.readouterr().out


@pytest.mark.slow
def test_a_failed_job_fails_the_check_and_blocks_an_update(ci_run, tmp_path, capsys):
    failed = tmp_path / "failed"
    record = {"schema": SCHEMA_VERSION, "status": "error", "method": "loo", "error": "boom"}
    write_record(failed, record)
    assert check(BASELINE, ci_run[0], failed) == 1
    assert "FAILED loo" in capsys.readouterr().out
    args = ["check", "--baseline", str(tmp_path / "new.csv"), "--update", "--results"]
    assert main([*args, str(ci_run[0]), str(failed)]) == 1
    assert not (tmp_path / "new.csv").exists()


@pytest.mark.slow
def test_update_rewrites_the_baseline_from_the_sweep(ci_run, tmp_path):
    new = tmp_path / "baselines" / "ci.csv"
    assert main(["check", "--baseline", str(new), "--update", "--results", str(ci_run[0])]) == 0
    fresh = read_baseline(new)
    sweep = baseline_rows(summarize(load_table([ci_run[0]]), metrics=CHECKED_KEYS))
    pd.testing.assert_frame_equal(fresh, sweep, rtol=1e-5)  # written with 6 significant digits
    assert (fresh["torch"] == versions()["torch"]).all()
    # the fresh quality and evaluations agree with the committed baseline within the check's own
    # tolerances (its seconds depend on the machine's load: test_the_ci_sweep_passes... checks them)
    statuses = compare(fresh, read_baseline(BASELINE), time_factor=float("inf"))["status"]
    assert statuses.isin(["ok", "improved"]).all()


@pytest.mark.slow
def test_version_drift_is_shown_and_the_tolerances_decide(ci_run, tmp_path, capsys):
    running = versions()

    def drift(b, **versions):  # seconds out of the way: the load of the machine is not tested here
        return b.assign(seconds=1e6, **versions)

    drifted = doctor(tmp_path, lambda b: drift(b, torch="2.13.0", numpy=running["numpy"]))
    assert check(drifted, ci_run[0]) == 0
    out = capsys.readouterr().out
    assert f"torch: baseline 2.13.0, running {running['torch']}  <- differs" in out
    assert f"numpy: baseline {running['numpy']}, running {running['numpy']}\n" in out
    unrecorded = doctor(tmp_path, lambda b: drift(b).drop(columns=["torch"]))
    assert check(unrecorded, ci_run[0]) == 0
    assert "torch: baseline not recorded, running" in capsys.readouterr().out
    worse = doctor(tmp_path, lambda b: drift(b, torch="2.13.0", auroc=b["auroc"] + 0.1))
    assert check(worse, ci_run[0]) == 1
    assert "torch: baseline 2.13.0" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no baseline {path}"),
        ("", "baseline {path} is empty"),
        (",".join(BASELINE_COLUMNS) + "\n", "baseline {path} has a header but no rows"),
        ("method,auroc\nloo,0.5\n", "baseline {path} lacks column(s)"),
        ('method,"auroc\n', "baseline {path} is not a CSV table"),
    ],
)
def test_a_bad_baseline_fails_before_any_job_runs(tmp_path, capsys, content, message):
    path, sweep = tmp_path / "ci.csv", tmp_path / "sweep"
    if content is not None:
        path.write_text(content)
    assert main(["check", "--baseline", str(path), "--sweep-dir", str(sweep)]) == 2
    out = capsys.readouterr()
    assert message.format(path=path) in out.err
    assert not sweep.exists() and "running" not in out.out


def _rows(**values) -> pd.DataFrame:
    row = {"method": "m", "setting": "s", "seeds": 3, "auroc": 0.8, "auroc_std": 0.0}
    row |= {"ap": 0.6, "ap_std": 0.0, "n_evals": 100, "seconds": 2.0}
    return pd.DataFrame([row | values])


@pytest.mark.parametrize(
    ("current", "status"),
    [
        ({}, "ok"),
        ({"auroc": 0.781}, "ok"),  # within the 0.02 tolerance
        ({"auroc": 0.77}, "REGRESSED"),
        ({"ap": 0.5}, "REGRESSED"),
        ({"ap": float("nan")}, "REGRESSED"),
        ({"auroc": 0.9}, "improved"),
        ({"n_evals": 110}, "ok"),
        ({"n_evals": 111}, "REGRESSED"),
        ({"seconds": 10.0}, "ok"),  # 5 x the baseline's 2 s
        ({"seconds": 10.1}, "REGRESSED"),
        ({"method": "other"}, "NEW"),
    ],
)
def test_compare_applies_the_stated_tolerances(current, status):
    result = compare(_rows(**current), _rows())
    assert result["status"].iloc[-1] == status


def test_time_below_the_floor_never_regresses():
    result = compare(_rows(seconds=5 * MIN_SECONDS), _rows(seconds=0.0))
    assert result["status"].tolist() == ["ok"]
