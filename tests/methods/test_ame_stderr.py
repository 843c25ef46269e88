"""Calibration of AME's stderr on additive games, whose AME is exactly the weights a_i.

Each check values one game with 20 seeds (fresh samples and noise each) and compares the stderr with
what the values actually do: the nominal 95% intervals value +/- 1.96 stderr must cover the truth in
90-99% of the (seed, point) cases, and the values' spread over the seeds must match the stderr (their
ratio in [0.85, 1.2]). A stderr half the right size covers about 66%, twice the right size 100%.

The weights are dense and strong (|a_i| in [1, 2], random signs, none zero) and lambda is chosen by
least CV error: every coefficient stays in the model (no zero value whose interval covers a zero
truth trivially) and the LASSO's shrinkage of each value (about info["threshold"]) is small beside
its stderr, so the value is close to the unpenalised estimate whose standard error stderr is
(methods/ame.py). The tests assert that regime before they judge the intervals.
"""

from __future__ import annotations

import numpy as np

from valbench import games
from valbench.methods.ame import AME

N, BUDGET, SEEDS = 50, 1000, 20


class NoisyAdditive(games.AdditiveGame):
    """U(S) = sum_{i in S} a_i + e, e ~ N(0, sigma^2) i.i.d. per call, from a generator seeded by
    `seed`. Its AME is a_i for every P."""

    def __init__(self, weights: np.ndarray, sigma: float, seed: int) -> None:
        super().__init__(weights)
        self.sigma, self.rng = sigma, np.random.default_rng([seed, 7])

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        return super().__call__(masks) + self.sigma * self.rng.standard_normal(len(masks))


def strong_dense_weights(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([seed, 11])
    return (1 + rng.random(n)) * rng.choice([-1.0, 1.0], size=n)


def repeat(method: AME, weights: np.ndarray, sigma: float, seeds=range(SEEDS)):
    """Values and stderr (seeds, n) of `method` on one noisy additive game, seed by seed; also
    checks that every value is nonzero and returns the largest threshold / median stderr."""
    values, stderr, shrinkage = [], [], []
    for seed in seeds:
        valuation = method.value(NoisyAdditive(weights, sigma, seed), seed=seed)
        assert valuation.info["n_nonzero"] == [len(weights)]
        values.append(valuation.values)
        stderr.append(valuation.stderr)
        shrinkage.append(valuation.info["threshold"][0] / np.median(valuation.stderr))
    return np.array(values), np.array(stderr), max(shrinkage)


def coverage(values, stderr, truth) -> float:
    """The fraction of (seed, point) cases whose interval value +/- 1.96 stderr holds the truth."""
    return float(np.mean(np.abs(values - truth) <= 1.96 * stderr))


def spread_ratio(values, stderr) -> float:
    """RMS over points of the values' standard deviation over seeds, over the RMS stderr: 1 when
    stderr is the standard deviation of the value."""
    return float(np.sqrt(values.var(0, ddof=1).mean() / (stderr**2).mean()))


def test_default_design_intervals_cover():
    """The default grid P = {0.2, 0.4, 0.6, 0.8} with i.i.d. N(0, 1) noise, about the size of the
    effects' own misfit (the linear model's a_i / v stands for a_i p (1 - p)). A shrinkage of 0.3
    stderr alone would lower an exact 95% interval's coverage to 93.6%; measured below 0.2."""
    weights = strong_dense_weights(N)
    values, stderr, shrinkage = repeat(AME(budget=BUDGET, cv_rule="min"), weights, sigma=1.0)
    assert shrinkage <= 0.3
    assert 0.90 <= coverage(values, stderr, weights) <= 0.99
    assert 0.85 <= spread_ratio(values, stderr) <= 1.2


def test_stderr_follows_an_error_variance_that_depends_on_p():
    """P = {0.05, 0.5, 0.95} and no utility noise: the error is the linear model's misfit
    sum_k a_k (p (1 - p) - 1/v) X_k, which is largest at p = 0.5, while X_i^2 = 1/p^2 or
    1/(1 - p)^2 weights p = 0.05 and 0.95 most. A homoscedastic sigma^2 / sum_j X_ji^2 is 1.5 times
    too large here; the sandwich stderr is not. The check is the spread over seeds, which the
    shrinkage (about 0.35 stderr in this design, lowering coverage by 2-3 points) does not move."""
    weights = strong_dense_weights(N)
    method = AME(budget=BUDGET, p_grid=[0.05, 0.5, 0.95], cv_rule="min")
    values, stderr, _ = repeat(method, weights, sigma=0.0)
    assert 0.85 <= spread_ratio(values, stderr) <= 1.2


def test_path_and_reference_solvers_give_the_same_stderr():
    """The path computes sum_j X_ji^2 r_j^2 from the design's bits (X^2 = (a + b) X - a b); the
    reference from the dense design."""
    weights = strong_dense_weights(30)
    grid = [0.1, 0.5, 0.9]
    path = AME(budget=400, p_grid=grid).value(NoisyAdditive(weights, 1.0, 0), seed=3)
    reference = AME(budget=400, p_grid=grid, solver="reference")
    reference = reference.value(NoisyAdditive(weights, 1.0, 0), seed=3)
    np.testing.assert_allclose(path.stderr, reference.stderr, rtol=1e-4)
    assert path.stderr.std() > 0.05 * path.stderr.mean()  # one per point, not one number
