"""The engine with sample weights instead of masks, and `Engine.fit` returning trained parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call

from valbench.engine.engine import Engine, check_weights

MLP = {"name": "mlp", "widths": [8], "steps": 30, "batch_size": 16, "lr": 0.01}


def data(split):
    return split.x_train, split.y_train, split.n_classes


def test_logreg_counts_equal_duplicated_points(digits_split):
    """Integer weights are scikit-learn sample weights: weight 2 = the point twice in the data.
    From zero and unpreconditioned, both runs take the same L-BFGS path (a warm start or
    preconditioner from each data set's own full fit would differ within the tolerance)."""
    x, y, k = data(digits_split)
    counts = np.random.default_rng(0).integers(0, 3, (2, len(y)))
    model = {"name": "logreg", "tol": 1e-6, "dtype": "float64"}
    model |= {"warm_start": False, "precondition": False}
    got = Engine(model, x, y, k, "cpu").fit_predict(counts, digits_split.x_val)
    for b in range(2):
        rows = np.repeat(np.arange(len(y)), counts[b])
        ones = np.ones((1, len(rows)), bool)
        want = Engine(model, x[rows], y[rows], k, "cpu").fit_predict(ones, digits_split.x_val)
        assert got[b] == pytest.approx(want[0], abs=1e-6)


def test_network_weights_are_normalised_over_their_support(digits_split):
    """A network sees w_i / mean(w over the support): equal weights train exactly like the mask."""
    x, y, k = data(digits_split)
    mask = np.random.default_rng(1).random((2, len(y))) < 0.7
    engine = Engine(MLP, x, y, k, "cpu", seed=3)
    keys = np.array([11, 12])  # the same randomness for every variant
    xv = torch.as_tensor(digits_split.x_val)
    as_mask = engine.fit_predict_chunk(mask, keys, xv)
    for weights in (1.0 * mask, 2.5 * mask):
        assert engine.fit_predict_chunk(weights, keys, xv) == pytest.approx(as_mask, abs=1e-6)
    uneven = engine.fit_predict_chunk(mask * np.arange(1.0, len(y) + 1), keys, xv)
    assert np.abs(uneven - as_mask).max() > 1e-3


@pytest.mark.parametrize("model", [{"name": "logreg"}, MLP])
def test_fit_returns_the_parameters_fit_predict_uses(digits_split, model):
    x, y, k = data(digits_split)
    masks = np.random.default_rng(2).random((3, len(y))) < 0.8
    engine = Engine(model, x, y, k, "cpu", seed=4)
    params = engine.fit(masks)
    module = engine.new_model(0)
    assert set(params) == {name for name, _ in module.named_parameters()}
    xv = torch.as_tensor(digits_split.x_val)
    probs = torch.stack(
        [
            torch.softmax(functional_call(module, {n: p[b] for n, p in params.items()}, xv), -1)
            for b in range(3)
        ]
    )
    assert probs.double().numpy() == pytest.approx(
        engine.fit_predict(masks, digits_split.x_val), abs=1e-4
    )  # float32: chunks that run in parallel stop L-BFGS at slightly different points


def test_fit_reports_every_step_of_a_network(digits_split):
    engine = Engine(MLP, *data(digits_split), "cpu")
    seen = []
    engine.fit(np.ones((1, digits_split.n_train), bool), on_step=lambda s, p: seen.append(s))
    assert seen == list(range(MLP["steps"]))
    logreg = Engine({"name": "logreg"}, *data(digits_split), "cpu")
    with pytest.raises(ValueError, match="L-BFGS"):
        logreg.fit(np.ones((1, digits_split.n_train), bool), on_step=print)


@pytest.mark.parametrize(
    "weights, message",
    [
        (np.full((2, 5), 1.0), r"shape \(B, 120\)"),
        (np.full((1, 120), -1.0), "non-negative"),
        (np.zeros((1, 120)), "positive sum"),
        (np.full((1, 120), np.nan), "finite"),
    ],
)
def test_bad_weights(weights, message):
    with pytest.raises(ValueError, match=message):
        check_weights(weights, 120)
