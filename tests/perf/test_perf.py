"""The engine benchmark runs end to end at toy size and writes its CSV (no timing is asserted)."""

from __future__ import annotations

import csv
import sys

import pytest

from valbench.perf import main
from valbench.perf.loops import grid_masks

TOY = ["--repeats", "1", "--threads", "1", "--device", "cpu", "--matmul-size", "256"]


def test_engine_benchmark_writes_a_row_with_the_machine(tmp_path, capsys):
    main(["engine", "--masks", "8", "--reference-masks", "4", "--jobs", "2", *TOY,
          "--out", str(tmp_path)])  # fmt: skip
    rows = list(csv.DictReader((tmp_path / "engine_logreg_cpu.csv").open()))
    assert [row["corruption"] for row in rows] == ["none", "mislabel"]
    for row in rows:
        assert row["device"].startswith("cpu (") and row["model"] == "logreg"
        assert int(row["masks"]) == 8 and int(row["reference_masks"]) == 4
        assert row["p"] == "0.2 0.4 0.6 0.8" and row["load_average_after"]
        assert float(row["engine_models_per_s"]) > 0 and 0 < float(row["flop_fraction"])
        assert (
            float(row["agreement_min"]) >= 0.99 and abs(float(row["accuracy_diff_points"])) <= 0.5
        )
        # the user's loops on the same 8 masks: same mean accuracy, speed-ups from the same timings
        assert abs(float(row["accuracy_diff"])) <= 0.005 and int(row["joblib_jobs"]) == 2
        engine_s = float(row["engine_median_seconds"])
        for rate, ratio in (("loop_models_per_s", "speedup_vs_loop"),
                            ("joblib_models_per_s", "speedup_vs_joblib")):  # fmt: skip
            expected = 8 / engine_s / float(row[rate])
            assert float(row[ratio]) == pytest.approx(expected, rel=0.01, abs=0.01)
        assert "LogisticRegression(max_iter=1000).fit(x, y).score(x_val, y_val)" in row["loop_code"]
        assert "Parallel(n_jobs=2)" in row["loop_code"]
    summary = (tmp_path / "engine_cpu.md").read_text()
    assert "| logreg | digits (1000) | no | 8 |" in summary
    assert "| logreg | digits (1000) | 10% | 8 |" in summary
    assert "wrote" in capsys.readouterr().out


def test_grid_masks_come_in_blocks_at_each_probability():
    masks = grid_masks(400, 2000, [0.2, 0.8], seed=0)
    assert masks.shape == (400, 2000)
    assert masks[:200].mean() == pytest.approx(0.2, abs=0.01)
    assert masks[200:].mean() == pytest.approx(0.8, abs=0.01)
    with pytest.raises(ValueError, match=r"must lie in \(0, 1\], got \[0.0\]"):
        grid_masks(4, 10, [0.0], seed=0)


def test_network_benchmarks_run_against_the_torch_loop(tmp_path, capsys):
    mlp = ["model.steps=5", "dataset.n_train=200"]
    main(["engine", "--model", "mlp", "--masks", "2", *TOY, "--out", str(tmp_path), *mlp])
    cnn = ["--n-train", "40", "model.steps=3", "model.batch_size=8", "model.channels=[4,4]"]
    main(["engine", "--model", "cnn", "--masks", "2", *TOY, "--out", str(tmp_path), *cnn])
    for model in ("mlp", "cnn"):
        (row,) = csv.DictReader((tmp_path / f"engine_{model}_cpu.csv").open())
        assert row["model"] == model and row["reference"] == "torch loop"
        assert float(row["engine_gflops"]) > 0 and float(row["speedup"]) > 0
        assert float(row["max_prob_diff"]) < 1e-4 and float(row["agreement_min"]) == 1.0
    assert row["dataset"] == "cifar_like" and row["peak"].startswith("conv")
    summary = (tmp_path / "engine_cpu.md").read_text()
    assert (
        "| mlp | digits (200) | no | 2 |" in summary and "| cnn | cifar_like (40) | no |" in summary
    )


def test_unknown_model_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["engine", "--model", "vit", *TOY, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "unknown --model 'vit'; available: logreg, mlp, cnn, resnet9" in capsys.readouterr().err


@pytest.mark.slow  # every GPU step at toy size: ~15 s quiet
def test_gpu_command_runs_its_tiny_mode_on_cpu(tmp_path, capsys):
    main(["gpu", "--device", "cpu", "--out", str(tmp_path)])
    rows = list(csv.DictReader((tmp_path / "gpu_tiny.csv").open()))
    targets = " ".join(row["target"] for row in rows)
    for part in ("CPU per-mask loop, B = 32", "matmul FLOP/s", "MLP engine vs per-model torch loop",
                 "ResNet-9: seconds per submodel", "ResNet-9: clean accuracy",
                 "AME estimator, backdoor game n = 300"):  # fmt: skip
        assert part in targets
    assert all(row["tiny"] == "True" and row["met"] == "" for row in rows)  # nothing judged
    assert all(float(row["value"]) > 0 for row in rows)
    assert "tiny mode: toy sizes, not a measurement" in (tmp_path / "gpu_tiny.md").read_text()
    assert not (tmp_path / "gpu.csv").exists()


def test_gpu_command_names_a_device_it_cannot_use(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["gpu", "--device", "cuda:7", "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "'cuda:7'" in capsys.readouterr().err


FAKE_ODV = """import sys
print("RESULT TMC DataShapley: wall=3.0s fits=400 per_fit=1ms noisy_label_kmeans_f1=0.5 "
      "top10%_precision_on_flipped=0.45 nonzero_values=200")
print(f"RESULT AME: wall=2.0s fits={4 * int(sys.argv[2])} per_fit=1ms "
      "noisy_label_kmeans_f1=0.1 top10%_precision_on_flipped=0.05 nonzero_values=3")
"""


@pytest.mark.slow  # two methods on the anchors' task
def test_anchors_run_both_libraries_side_by_side(tmp_path):
    anchors = tmp_path / "anchors"
    (anchors / "odv_stub").mkdir(parents=True)
    (anchors / "odv_bench.py").write_text(FAKE_ODV)
    args = ["--odv-python", sys.executable, "--anchors", str(anchors), "--ame-models", "20"]
    main(["anchors", *args, "--threads", "1", "--out", str(tmp_path)])
    tmc, ame = csv.DictReader((tmp_path / "anchors.csv").open())
    assert tmc["run"] == "`tmc_shapley` at 400 evaluations" and int(tmc["valbench_evals"]) <= 400
    assert ame["run"] == "`ame` at 80 evaluations" and int(ame["valbench_evals"]) == 80
    wall = float(tmc["valbench_s"])  # rounded to 0.01 s in the file: the speed-up is within that
    low, high = 3.0 / (wall + 0.005) - 0.05, 3.0 / max(wall - 0.005, 1e-3) + 0.05
    assert low <= float(tmc["speedup"]) <= high
    assert ame["hit20_opendataval"] == "0.05" and 0 <= float(ame["hit20_valbench"]) <= 1
    assert "OpenDataVal 1.3" in (tmp_path / "anchors.md").read_text()
    with pytest.raises(SystemExit):
        main(["anchors", "--odv-python", sys.executable, "--anchors", str(tmp_path / "none")])


@pytest.mark.slow
def test_ame_scale_quick_mode_writes_its_table_and_figure(tmp_path, capsys):
    """Each configuration in its own process: rows with time, memory and selection quality."""
    main(["ame-scale", "--quick", "--out", str(tmp_path)])
    table = list(csv.DictReader((tmp_path / "ame_scale.csv").open()))
    assert [(row["regime"], row["n"]) for row in table] == [
        ("backdoor", "1000"),
        ("backdoor", "2000"),
        ("mislabel", "300"),
    ]
    assert all(not row.get("error") for row in table), table
    backdoor = table[0]
    assert float(backdoor["sel_recall"]) >= 0.8 and float(backdoor["sel_precision"]) >= 0.8
    assert float(backdoor["peak_rss_gb"]) > 0 and float(backdoor["estimate_s"]) > 0
    assert (tmp_path / "ame_scale.png").stat().st_size > 0
    assert "| regime | n |" in (tmp_path / "ame_scale.md").read_text()

    main(["ame-scale", "--only", "mislabel:300", "--update", "--out", str(tmp_path)])
    again = list(csv.DictReader((tmp_path / "ame_scale.csv").open()))
    assert [(row["regime"], row["n"]) for row in again] == [
        (row["regime"], row["n"]) for row in table
    ]
    assert [row["estimate_s"] for row in again[:2]] == [row["estimate_s"] for row in table[:2]]
    assert again[2]["date"] >= table[2]["date"] and not again[2].get("error")
