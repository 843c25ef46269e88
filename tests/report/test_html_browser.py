"""The HTML report in a real browser: headless Chromium renders it, takes a screenshot, and a probe
script checks that tables and images rendered and that a click on a header sorts the rows.

Needs Debian's `chromium` package (`apt-get install -y chromium`; .ci/run installs it).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from fake_records import write_sweep

from valbench.report.collect import collect
from valbench.report.html import render

CHROMIUM = shutil.which("chromium")
MISSING = "chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it)"
if CHROMIUM is None and os.environ.get("VALBENCH_REQUIRE_CHROMIUM"):
    raise RuntimeError(f"VALBENCH_REQUIRE_CHROMIUM is set but {MISSING}")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# Runs after the page's own script, once everything (images included) has loaded.
PROBE = """<script>
window.addEventListener("load", () => {
  const tables = Array.from(document.querySelectorAll("table.sortable"));
  const jobs = tables[tables.length - 1], header = jobs.tHead.rows[0];
  const col = Array.from(header.cells).findIndex(c => c.textContent.trim() === "auroc");
  const column = () => Array.from(jobs.tBodies[0].rows).map(r => Number(r.cells[col].dataset.sort));
  const out = {rows: tables.map(t => t.tBodies[0].rows.length),
               images: Array.from(document.images).map(i => i.naturalWidth), before: column()};
  header.cells[col].click(); out.ascending = column();
  header.cells[col].click(); out.descending = column();
  const pre = document.createElement("pre");
  pre.id = "probe"; pre.textContent = JSON.stringify(out); document.body.append(pre);
});
</script>"""


def chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def test_chromium_renders_the_tables_images_and_sorts_on_click(tmp_path):
    write_sweep(tmp_path / "sweep")
    frame = collect(tmp_path / "sweep")
    page = render(frame, "browser test")
    n_images = page.count("<img ")
    (tmp_path / "report.html").write_text(page)
    (tmp_path / "probed.html").write_text(page.replace("</body>", PROBE + "</body>"))

    shot = tmp_path / "screenshot.png"
    url = (tmp_path / "report.html").as_uri()
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1600", url)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1600, 1280) and pixels[..., :3].std() > 0.05  # not a blank page

    dom = chromium(
        tmp_path, "--virtual-time-budget=10000", "--dump-dom", (tmp_path / "probed.html").as_uri()
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"the probe did not run; chromium said: {dom.stderr[-2000:]}"
    probe = json.loads(html.unescape(found.group(1)))
    methods = frame["method"].nunique()
    assert probe["rows"][0] == methods  # the leaderboard
    assert probe["rows"][-1] == len(frame)  # one row per job
    assert len(probe["images"]) == n_images >= 5 and min(probe["images"]) > 0
    before, ascending, descending = (
        np.array(probe[k]) for k in ("before", "ascending", "descending")
    )
    assert not np.array_equal(before, ascending)
    assert np.array_equal(ascending, np.sort(before))
    assert np.array_equal(descending, np.sort(before)[::-1])
