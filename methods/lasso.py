"""LASSO with unpenalised columns, lambda chosen by K-fold cross-validation, for Q responses at once.

Model: for each response y_q (a column of Y), minimise over b (penalised) and c (unpenalised)

    1/(2m) ||y_q - X b - B c||^2 + lambda ||b||_1,

B the basis of unpenalised columns (per-p indicators or a polynomial in p). Minimising over c first
leaves the plain LASSO on the residualised design (I - H_B) X, (I - H_B) y (Frisch-Waugh-Lovell), so
every fit here residualises on B and runs scikit-learn's coordinate descent with no intercept. Inside
cross-validation the residualisation is fitted on the training folds only and applied to the held-out
fold, as a fit of c would be.

Lambda grid (per response, as glmnet): `n_lambdas` values spaced evenly in log from
lambda_max = max_i |x_i' y| / m (the smallest lambda that zeroes every coefficient) down to
`min_ratio` * lambda_max. Rules:

- "min": the lambda of least mean held-out squared error.
- "1se": the largest lambda whose mean held-out error exceeds the minimum by at most one standard
  error of the *paired* difference: SE_l = sd_j(e_j(lambda_l) - e_j(lambda_min)) / sqrt(m), e_j the
  held-out squared error of sample j (every sample is held out once). The classical rule's SE, the
  spread of the K fold means, carries the variance of U itself, which every lambda shares; with many
  small effects it exceeds the whole gain of the fit, and the rule then zeroes every coefficient at
  common budgets. The paired SE measures only the uncertainty of the comparison itself.

Cost: the Gram matrix X'X of each training fold (and of all samples) is computed once and shared by
all Q responses; each response runs its own path (warm-started along the grid) with that Gram.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import enet_path

RULES = ("1se", "min")


@dataclass
class LassoCV:
    """coef (Q, p); lam, cv_error (Q,) at the chosen lambda; lambdas and cv_curve (Q, L)."""

    coef: np.ndarray
    lam: np.ndarray
    cv_error: np.ndarray
    lambdas: np.ndarray
    cv_curve: np.ndarray


def residualise(basis: np.ndarray, z: np.ndarray, fit: np.ndarray, apply: np.ndarray) -> np.ndarray:
    """z[apply] minus its least-squares fit on basis, the fit computed from the rows `fit` only."""
    coef = np.linalg.pinv(basis[fit]) @ z[fit]
    return z[apply] - basis[apply] @ coef


def lambda_grid(x: np.ndarray, y: np.ndarray, n_lambdas: int, min_ratio: float) -> np.ndarray:
    """(Q, L) decreasing grids from lambda_max = max_i |x_i' y_q| / m to min_ratio * lambda_max."""
    top = np.abs(x.T @ y).max(0) / len(x)
    top = np.where(top > 0, top, 1.0)  # a constant response: any grid gives b = 0
    return top[:, None] * np.geomspace(1.0, min_ratio, n_lambdas)[None, :]


def lasso_paths(x: np.ndarray, y: np.ndarray, lambdas) -> list[np.ndarray]:
    """Coefficient paths (p, L_q) for each column y_q of y along lambdas[q], sharing one Gram matrix."""
    x = np.asfortranarray(x, dtype=np.float64)
    gram = x.T @ x
    xy = x.T @ y
    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for q in range(y.shape[1]):
            _, coefs, _ = enet_path(
                x,
                np.ascontiguousarray(y[:, q]),
                l1_ratio=1.0,
                alphas=lambdas[q],
                precompute=gram,
                Xy=np.ascontiguousarray(xy[:, q]),
                check_input=False,
                max_iter=5000,
            )
            paths.append(coefs)
    return paths


def choose(errors: np.ndarray, rule: str) -> int:
    """Index of the chosen lambda from held-out squared errors (m, L), grid decreasing."""
    curve = errors.mean(0)
    best = int(np.argmin(curve))
    if rule == "min":
        return best
    diff = errors - errors[:, best : best + 1]
    se = diff.std(0, ddof=1) / np.sqrt(len(errors))
    ok = np.flatnonzero(curve - curve[best] <= se)
    return int(ok[0])


def lasso_cv(
    x: np.ndarray,
    y: np.ndarray,
    basis: np.ndarray,
    folds: np.ndarray,
    rule: str = "1se",
    n_lambdas: int = 100,
    min_ratio: float = 1e-3,
) -> LassoCV:
    """Fit the LASSO of each column of y (m, Q) on x (m, p) with unpenalised `basis` (m, G).

    `folds` (m,) holds each sample's fold id; lambda is chosen per response by `rule`.
    """
    if rule not in RULES:
        raise ValueError(f"cv_rule must be one of {RULES}, got {rule!r}")
    m = len(x)
    everything = np.arange(m)
    xr = residualise(basis, x, everything, everything)
    yr = residualise(basis, y, everything, everything)
    lambdas = lambda_grid(xr, yr, n_lambdas, min_ratio)
    errors = np.empty((y.shape[1], m, n_lambdas))
    for fold in np.unique(folds):
        train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        x_test = residualise(basis, x, train, test)
        y_test = residualise(basis, y, train, test)
        paths = lasso_paths(
            residualise(basis, x, train, train), residualise(basis, y, train, train), lambdas
        )
        for q, path in enumerate(paths):
            errors[q, test] = (y_test[:, q : q + 1] - x_test @ path) ** 2
    chosen = np.array([choose(errors[q], rule) for q in range(y.shape[1])])
    # The final fit follows the path only down to the chosen lambda (warm starts, fewer steps).
    paths = lasso_paths(xr, yr, [grid[: k + 1] for grid, k in zip(lambdas, chosen, strict=True)])
    coef = np.stack([path[:, -1] for path in paths])
    rows = np.arange(len(chosen))
    curve = errors.mean(1)
    return LassoCV(coef, lambdas[rows, chosen], curve[rows, chosen], lambdas, curve)
