"""`valbench-report html`: one self-contained page per collected sweep, on bad input too."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pytest
from fake_records import write_sweep

from valbench.report.cli import main
from valbench.report.collect import collect
from valbench.report.html import render
from valbench.store.records import read_record, write_record

RESULTS = Path(__file__).parents[2] / "results"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The fake wine sweep, two copies of it relabelled (three settings), and a failed job that
    leaves the third setting out of the ranks."""
    root = tmp_path_factory.mktemp("html_sweep")
    write_sweep(root / "wine")
    for dataset in ("breast_cancer", "digits"):
        for path in (root / "wine").rglob("result.json"):
            record = read_record(path)
            record["dataset"] = record["config"]["dataset.name"] = dataset
            job = root / dataset / path.parent.name
            shutil.copytree(path.parent, job)
            write_record(job, record)
    failed = root / "digits" / "method=oracle,seed=2"  # failed instead of finishing
    record = read_record(failed / "result.json")
    write_record(failed, {**record, "status": "error", "error": "ValueError: boom"})
    return root


def images(page: str) -> list[bytes]:
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    return [base64.b64decode(s.split(",", 1)[1]) for s in sources]


def test_the_page_is_self_contained_and_lists_every_job(sweep):
    frame = collect(sweep)
    page = render(frame, "test sweep")
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<link" not in page and "<script src" not in page and "@import" not in page
    pngs = images(page)
    assert len(pngs) >= 5 and all(p.startswith(b"\x89PNG") for p in pngs)
    assert 'id="fig-cd"' in page and 'id="fig-cost_quality"' in page  # two complete settings
    assert "Left out of the ranks: digits (incomplete: oracle)" in page
    jobs = page.split("<h2>Jobs</h2>")[1]
    assert jobs.count("<tr") == 1 + len(frame)  # header + one row per job
    assert jobs.count('<tr class="failed">') == 1 and "ValueError: boom" in jobs
    shared = page.split("<h2>Shared by every job</h2>")[1].split("<h2>")[0]
    assert "versions.numpy" in shared and "device" in shared
    assert "dataset.n_train" in shared  # 30 in every job


def test_one_setting_and_collected_tables_render(sweep, tmp_path):
    page = render(collect(sweep / "wine"), "wine only")
    assert "no rank test possible" in page and 'id="fig-cd"' not in page
    poison = RESULTS / "poison_digits" / "results.csv"
    assert main(["html", str(poison), "-o", str(tmp_path / "poison.html")]) == 0
    page = (tmp_path / "poison.html").read_text()
    assert "ame_knockoff" in page and len(images(page)) >= 4


@pytest.mark.slow  # 770 jobs
def test_the_committed_leaderboard_renders(tmp_path):
    jobs = RESULTS / "leaderboard" / "jobs.csv"
    assert main(["html", str(jobs), "-o", str(tmp_path / "leaderboard.html")]) == 0
    page = (tmp_path / "leaderboard.html").read_text()
    assert 'id="fig-cd"' in page and "Friedman test over N = 11 settings" in page
    assert page.split("<h2>Jobs</h2>")[1].count("<tr") == 1 + 770


def test_html_command_makes_a_missing_folder_and_prints_the_path(sweep, tmp_path, capsys):
    out = tmp_path / "new" / "folder" / "report.html"
    assert main(["html", str(sweep), "-o", str(out), "--title", "my sweep"]) == 0
    assert out.exists() and "<title>my sweep</title>" in out.read_text()
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"report -> {out.resolve()}"


def test_html_of_a_folder_without_records_is_a_clear_error(tmp_path, capsys):
    assert main(["html", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 2
    assert "no valbench result records" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
