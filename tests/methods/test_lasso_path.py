"""The batched LASSO-CV path on the implicit mask design against the scikit-learn reference."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from valbench import games
from valbench.methods.ame import AME, AMESV, GridDesign, RangeDesign, ShapleyDesign, draw_samples
from valbench.methods.lasso import lasso_cv
from valbench.methods.lasso_path import lasso_cv_path
from valbench.methods.mask_design import MaskDesign
from valbench.methods.sampling import bernoulli_masks, rng_for

DESIGNS = {
    "grid": GridDesign([0.2, 0.4, 0.6, 0.8]),
    "range": RangeDesign(0.1, 0.9),
    "shapley": ShapleyDesign(0.05),
}


def both_fits(design, game, m, seed, knockoffs, rule, design_args=None, **path_args):
    """The reference on the dense design and the path on the masks, same samples and folds."""
    p, masks = draw_samples(design, seed, m, game.n_players)
    parts = [masks] + ([bernoulli_masks(rng_for(seed, 2), p, game.n_players)] if knockoffs else [])
    y = game(masks)
    y = y[:, None] if y.ndim == 1 else y
    a, b = design.coding(p)
    dense = np.hstack([np.where(part, a[:, None], b[:, None]) for part in parts])
    folds = rng_for(seed, 3).permutation(m) % 5
    reference = lasso_cv(dense, y, design.basis(p), folds, rule)
    x = MaskDesign(parts, a, b, **(design_args or {}))
    path = lasso_cv_path(x, y, design.basis(p), folds, rule, **path_args)
    return reference, path


def assert_same(reference, path, rel=1e-5, lam_rtol=1e-9):
    np.testing.assert_allclose(path.lam, reference.lam, rtol=lam_rtol)
    scale = np.abs(reference.coef).max()
    assert np.abs(path.coef - reference.coef).max() <= rel * scale


def test_threaded_and_serial_batches_are_separate_builds_with_the_same_result():
    """numba's disk cache keys a function by name and signature, not by `parallel`: one function
    compiled twice would load one build for both (the threaded batch once ran serially so)."""
    import numba

    from valbench.methods import lasso_cd

    assert lasso_cd._batch_threaded.py_func is not lasso_cd._batch_serial.py_func
    assert lasso_cd._batch_threaded.targetoptions.get("parallel")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 60))
    y = x[:, :5] @ rng.standard_normal((5, 6)) + rng.standard_normal((200, 6))
    h, c = (x.T @ x)[None], (x.T @ y).T.copy()
    alpha = 0.1 * np.abs(c).max(1)
    results = []
    for kernel in (lasso_cd._batch_serial, lasso_cd._batch_threaded):
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        b, g = np.zeros_like(c), c.copy()
        kernel(h, np.diagonal(h, axis1=1, axis2=2).copy(), np.zeros(6, np.int64), c, b, g,
               alpha, alpha, (y**2).sum(0), 1e-10, 5000)  # fmt: skip
        results.append(b)
    np.testing.assert_allclose(results[1], results[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("rule", ["1se", "min"])
@pytest.mark.parametrize("name", DESIGNS)
@pytest.mark.parametrize("knockoffs", [False, True])
@pytest.mark.parametrize("schedule", ["resident", "sequential"])
def test_compiled_gram_path_equals_the_reference(name, rule, knockoffs, schedule):
    """Every problem's full Gram, solved by the compiled kernel (methods/lasso_cd.py): all Grams
    at once, or one problem at a time with the early stop applied afterwards."""
    game = games.random_pairwise(60, n_pairs=40, seed=2)
    reference, path = both_fits(DESIGNS[name], game, 400, 1, knockoffs, rule, schedule=schedule)
    assert_same(reference, path)
    assert path.info["schedule"] == schedule and path.info["sweeps"] > 0


def test_auto_schedule_follows_the_memory_budget():
    """Resident Grams where (K + 1) p^2 float64 and the folds' copies of the design fit memory_mb
    (p = 120, m = 400: 1.07 MB), two Grams and one fold where those do (0.30 MB), working sets
    below that; a Gram schedule asked for by name that does not fit is refused with what it needs."""
    game = games.random_pairwise(60, n_pairs=40, seed=2)
    for memory_mb, schedule in [(1.1, "resident"), (0.5, "sequential"), (0.2, "sets")]:
        reference, path = both_fits(DESIGNS["grid"], game, 400, 1, True, "1se", memory_mb=memory_mb)
        assert path.info["schedule"] == schedule
        np.testing.assert_allclose(path.lam, reference.lam, rtol=1e-9)
    with pytest.raises(ValueError, match=r"'resident' schedule needs 1 MB .* memory_mb=0.5"):
        both_fits(DESIGNS["grid"], game, 400, 1, True, "1se", memory_mb=0.5, schedule="resident")


def test_compiled_kernel_equals_scikit_learn_coordinate_descent():
    """One LASSO on a Gram from a warm start, both solvers to a duality gap of 1e-10 ||y||^2: the
    same coefficients as scikit-learn's solver (the reference's) to 1e-8, and the gradient c - H b
    it keeps up to date is exact."""
    from sklearn.linear_model import _cd_fast

    from valbench.methods.lasso_cd import solve_batch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 120))
    y = x[:, :15] @ rng.standard_normal(15) + rng.standard_normal(300)
    h, c = x.T @ x, x.T @ y
    alpha = 0.05 * np.abs(c).max()
    start = np.where(rng.random(120) < 0.2, rng.standard_normal(120), 0.0)
    sklearn = start.copy()
    _cd_fast.enet_coordinate_descent_gram(
        sklearn, alpha, 0.0, h, c, y, 5000, 1e-10, np.random.RandomState(0), False, False
    )
    b, g = start[None].copy(), (c - h @ start)[None]
    sweeps = solve_batch(
        h[None], np.diag(h)[None], np.zeros(1, np.int64), c[None], b, g, np.array([alpha]),
        np.array([alpha]), np.array([y @ y]), 1e-10, 5000,
    )  # fmt: skip
    assert sweeps[0] > 0
    np.testing.assert_allclose(b[0], sklearn, rtol=0, atol=1e-8 * np.abs(sklearn).max())
    np.testing.assert_allclose(g[0], c - h @ b[0], rtol=0, atol=1e-9 * np.abs(c).max())


@pytest.mark.parametrize("rule", ["1se", "min"])
@pytest.mark.parametrize("grams", ["full", "full_bits", "bits", "bits32"])
def test_working_sets_equal_the_reference_on_many_queries(rule, grams):
    """More columns than samples: per-problem working sets with KKT checks, their Grams looked up
    in every problem's full Gram (the design cached, or kept as bits with its folds' features
    cached for the held-out fits) or (over the memory budget) computed from masks kept as bits,
    the KKT gradients then by the bounded int8 product with exact re-checks near the threshold;
    in float32 (as large designs run) within float32's precision."""
    parts = [games.random_pairwise(300, 60, seed=s) for s in range(2)] + [games.ThresholdGame(300)]
    game = games.MultiQueryGame(parts)
    args = {"design_args": {"cache_mb": 0, "int8": True}, "memory_mb": 12, "schedule": "sets"}
    if grams == "bits32":
        args["design_args"]["dtype"] = torch.float32
    if grams == "full_bits":  # the design 2.1 MB, a fold's 0.4 MB
        args = {"design_args": {"cache_mb": 1}, "schedule": "sets"}
    args = args if grams != "full" else {"schedule": "sets"}
    reference, path = both_fits(DESIGNS["grid"], game, 450, 6, True, rule, **args)
    if grams == "bits32":
        assert_same(reference, path, rel=1e-4, lam_rtol=1e-6)
    else:
        assert_same(reference, path)


def test_dense_mode_chooses_the_same_lambda():
    """Grams over the memory budget: every column, FISTA with products with X."""
    game = games.random_pairwise(80, n_pairs=40, seed=3)
    reference, path = both_fits(
        DESIGNS["grid"], game, 600, 2, False, "1se", memory_mb=0.01, schedule="sets"
    )
    np.testing.assert_allclose(path.lam, reference.lam, rtol=1e-9)
    assert np.abs(path.coef - reference.coef).max() <= 1e-3 * np.abs(reference.coef).max()


def test_a_large_design_over_the_budget_stops_the_path_with_a_warning():
    """Working sets over memory_mb on a design kept as bits: glmnet's pmax stop, lambda chosen
    among the lambdas reached, every unreached one at infinite CV error."""
    game = games.random_pairwise(300, n_pairs=60, seed=1)
    with pytest.warns(UserWarning, match="lasso path stopped at lambda .* over memory_mb=0.1"):
        _, path = both_fits(
            DESIGNS["grid"], game, 450, 6, True, "min", design_args={"cache_mb": 0}, memory_mb=0.1,
            schedule="sets",
        )  # fmt: skip
    reached = np.isfinite(path.cv_curve[0]).sum()
    assert 0 < reached < 100 and np.isinf(path.cv_curve[0, reached:]).all()
    assert path.lam[0] >= path.lambdas[0, reached - 1]


@pytest.mark.parametrize("schedule", ["resident", "sequential", "sets"])
def test_float32_products_on_a_larger_design(schedule):
    """A float32 design (as large ones run) keeps its Grams in float32 too: within float32's
    precision of the float64 fit."""
    game = games.random_pairwise(300, n_pairs=100, seed=4)
    p, masks = draw_samples(DESIGNS["grid"], 0, 900, 300)
    a, b = DESIGNS["grid"].coding(p)
    folds = rng_for(0, 3).permutation(900) % 5
    y = game(masks)[:, None]
    exact = lasso_cv_path(MaskDesign([masks], a, b), y, DESIGNS["grid"].basis(p), folds)
    single = lasso_cv_path(
        MaskDesign([masks], a, b, dtype=torch.float32), y, DESIGNS["grid"].basis(p), folds,
        schedule=schedule,
    )  # fmt: skip
    np.testing.assert_allclose(single.lam, exact.lam, rtol=1e-6)
    assert np.abs(single.coef - exact.coef).max() <= 1e-4 * np.abs(exact.coef).max()


def test_bounded_products_on_a_cached_design_hold_their_bound():
    """A float64 cache forms the KKT gradient X' r in float32: every column within the bound of
    the float64 product, the bound tight enough to re-check few columns exactly."""
    p, masks = draw_samples(DESIGNS["grid"], 0, 900, 300)
    a, b = DESIGNS["grid"].coding(p)
    x = MaskDesign([masks], a, b)
    scale = np.array([1e-3, 1.0, 1e3])
    r = torch.as_tensor(np.random.default_rng(0).standard_normal((900, 3)) * scale)
    fast, bound = x.rmatmul_bounded(r)
    exact = x.rmatmul(r)
    assert ((fast - exact).abs() <= bound).all()
    assert (fast != exact).any() and (bound < 1e-2 * exact.abs().amax(0)).all()


def test_ame_solvers_agree_and_report_the_estimator_time():
    game = games.random_pairwise(100, n_pairs=50, seed=5)
    path = AME(budget=600, knockoffs="knockoff+").value(game, seed=1)
    reference = AME(budget=600, knockoffs="knockoff+", solver="reference").value(game, seed=1)
    np.testing.assert_allclose(path.values, reference.values, atol=1e-5 * np.abs(path.values).max())
    np.testing.assert_array_equal(path.selected, reference.selected)
    assert 0 < path.info["seconds_estimate"] <= path.seconds
    assert AMESV().cv_rule == "min" and AME().cv_rule == "1se"


def test_harmful_side_selects_the_negative_effects():
    rng = np.random.default_rng(0)
    weights = 0.01 * rng.standard_normal(200)
    bad = rng.choice(200, size=10, replace=False)
    weights[bad] = -1.0
    game = games.AdditiveGame(weights)
    helpful = AME(budget=800, knockoffs="knockoff", select="helpful").value(game, seed=0)
    harmful = AME(budget=800, knockoffs="knockoff", select="harmful").value(game, seed=0)
    assert not helpful.selected[bad].any()
    assert harmful.selected[bad].mean() >= 0.9 and harmful.selected.sum() <= 12


def test_auto_side_follows_the_truth_on_a_mislabel_problem():
    import valbench

    problem = valbench.load_problem(
        "breast_cancer", "mislabel", overrides=["dataset.n_train=150", "progress=false"]
    )
    method = valbench.make_method("ame_knockoff", budget=1500, p_grid=[0.2, 0.4, 0.6, 0.8])
    valuation = method.value(problem.game, seed=0, problem=problem)
    assert valuation.info["select"] == "harmful"
    metrics = valbench.score(valuation, problem.truth)
    assert metrics["sel_precision"] >= 0.5 and metrics["sel_recall"] > 0


MEMORY_PROBE = """
import json, resource, numpy as np
from valbench import games
from valbench.methods.ame import AME
game = games.BackdoorGame(20000, 20, n_queries=2, seed=0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
valuation = AME(budget=2000).value(game, seed=0)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grown_mb": (after - before) / 1024, "n": int(valuation.values.shape[1])}))
"""


@pytest.mark.slow
def test_paper_shaped_fit_never_holds_a_dense_float64_design():
    """n = 20,000 players, m = 2,000 samples: the dense float64 design is 2000 x 20000 x 8 B = 320 MB
    and the reference holds it plus a residualised copy per fold and the full fit (>= 7 of them,
    2.2 GB). The path keeps the masks as int8 bits (40 MB) and the working sets' float32 Grams,
    which near the end of this path (supports approaching m) take a few hundred MB: the process
    must grow by less than two dense designs."""
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["n"] == 20000
    assert probe["grown_mb"] < 2 * 2000 * 20000 * 8 / 2**20, probe


def test_bad_inputs_get_clear_errors_before_any_fit(recording):
    game = recording(games.ThresholdGame(30))
    with pytest.raises(ValueError, match="minimum of 50 evaluations"):
        AME(budget=40).value(game, seed=0)  # 5 folds x 10 samples
    assert game.masks == []
    with pytest.raises(ValueError, match="select must be one of"):
        AME(select="bad").value(game, seed=0)
    with pytest.raises(ValueError, match="solver must be one of"):
        AME(solver="bad").value(game, seed=0)
    with pytest.raises(ValueError, match=r"ame: the lasso path's 'resident' schedule needs .* MB"):
        AME(budget=600, schedule="resident", memory_mb=0.01).value(game, seed=0)
    with pytest.raises(ValueError, match="memory_mb must be a positive number of MB, got -1"):
        AME(memory_mb=-1).value(game, seed=0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        AME(schedule="fast").value(game, seed=0)
    assert game.masks == []


class _Broken:
    n_players = 20

    def __init__(self, kind):
        self.kind = kind

    def __call__(self, masks):
        if self.kind == "no queries":
            return np.zeros((len(masks), 0))
        values = np.ones(len(masks))
        values[[3, 7]] = [np.nan, np.inf]
        return values


def test_games_without_queries_or_with_non_finite_values_are_named():
    with pytest.raises(ValueError, match="no queries"):
        AME(budget=100).value(_Broken("no queries"), seed=0)
    with pytest.raises(ValueError, match=r"2 of 100 .*masks \[3, 7\]"):
        AME(budget=100).value(_Broken("nan"), seed=0)
