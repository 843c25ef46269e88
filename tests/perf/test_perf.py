"""The engine benchmark runs end to end at toy size and writes its CSV (no timing is asserted)."""

from __future__ import annotations

import csv

import pytest

from valbench.perf import main

TOY = ["--repeats", "1", "--threads", "1", "--device", "cpu", "--matmul-size", "256"]


def test_engine_benchmark_writes_a_row_with_the_machine(tmp_path, capsys):
    main(["engine", "--masks", "8", "--reference-masks", "4", *TOY, "--out", str(tmp_path)])
    (row,) = csv.DictReader((tmp_path / "engine_logreg_cpu.csv").open())
    assert row["device"].startswith("cpu (") and row["model"] == "logreg"
    assert int(row["masks"]) == 8 and int(row["reference_masks"]) == 4
    assert float(row["engine_models_per_s"]) > 0 and 0 < float(row["flop_fraction"])
    assert float(row["agreement_min"]) >= 0.99 and abs(float(row["accuracy_diff_points"])) <= 0.5
    assert "wrote" in capsys.readouterr().out


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
    assert "| mlp | digits (200) | 2 |" in summary and "| cnn | cifar_like (40) |" in summary


def test_unknown_model_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["engine", "--model", "vit", *TOY, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "unknown --model 'vit'; available: logreg, mlp, cnn, resnet9" in capsys.readouterr().err
