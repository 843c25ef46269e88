"""The engine benchmark runs end to end at toy size and writes its CSV (no timing is asserted)."""

from __future__ import annotations

import csv

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


def test_network_benchmark_counts_flops(tmp_path):
    overrides = ["model.steps=5", "dataset.n_train=200"]
    main(["engine", "--model", "mlp", "--masks", "2", *TOY, "--out", str(tmp_path), *overrides])
    (row,) = csv.DictReader((tmp_path / "engine_mlp_cpu.csv").open())
    assert row["model"] == "mlp" and row["n_train"] == "200" and "speedup" not in row
    assert float(row["engine_gflops"]) > 0
