"""The batched L-BFGS pieces against plain references: autograd, the dense BFGS recursion."""

from __future__ import annotations

import pytest
import torch

from valbench.engine.convex import BLOCK, LogregObjective, Preconditioner, nonzero_features
from valbench.engine.lbfgs import CurvatureMemory, lbfgs_logreg


def test_objective_and_gradient_match_autograd():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=gen)
    masks = (torch.rand(5, 30, generator=gen) < 0.6).double()
    theta = torch.randn(5, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    C = 0.7
    objective = LogregObjective(x, y, 3)
    sizes = masks.sum(1)
    f, grad = objective(theta.detach(), masks / sizes[:, None], 1 / (C * sizes))
    # scikit-learn's objective, C sum_i m_i CE_i + ||W||^2 / 2, divided by C S_b
    logits = torch.einsum("bkd,nd->bnk", theta[..., :-1], x) + theta[:, None, :, -1]
    ce = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), y.repeat(5), reduction="none"
    ).view(5, 30)
    expected = ((masks * ce).sum(1) * C + theta[..., :-1].square().sum((1, 2)) / 2) / (C * sizes)
    expected.sum().backward()
    assert torch.allclose(f, expected.detach())
    assert torch.allclose(grad, theta.grad)
    assert objective.n_evals == 5


def test_objective_over_several_blocks_is_exact_and_the_same_in_any_batch():
    """Over more points than one BLOCK, f and grad still match autograd (float64), and in float32
    each model's values are bitwise the same whatever models share its batch."""
    gen = torch.Generator().manual_seed(7)
    n = 2 * BLOCK + 100
    x = torch.randn(n, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (n,), generator=gen)
    masks = (torch.rand(24, n, generator=gen) < 0.5).double()
    theta = torch.randn(24, 4, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    sizes = masks.sum(1)
    f, grad = LogregObjective(x, y, 4)(theta.detach(), masks / sizes[:, None], 1 / sizes)
    logits = torch.einsum("bkd,nd->bnk", theta[..., :-1], x) + theta[:, None, :, -1]
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat(24), reduction="none")
    expected = (masks * ce.view(24, n)).sum(1) / sizes + theta[..., :-1].square().sum((1, 2)) / (
        2 * sizes
    )
    expected.sum().backward()
    assert torch.allclose(f, expected.detach()) and torch.allclose(grad, theta.grad)
    single = LogregObjective(x.float(), y, 4)
    args = (theta.detach().float(), (masks / sizes[:, None]).float(), (1 / sizes).float())
    f_all, grad_all = single(*args)
    for rows in (slice(0, 1), slice(3, 20), slice(7, 24)):
        f_part, grad_part = single(*(a[rows] for a in args))
        assert torch.equal(f_part, f_all[rows]) and torch.equal(grad_part, grad_all[rows])


def test_logits_beyond_the_exponents_range_are_evaluated_max_shifted():
    """A model whose logits exceed its labels' by more than exp's range gets the max-shifted
    cross-entropy; the others in its batch keep their values, bitwise."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(40, 4, generator=gen)
    y = torch.randint(0, 3, (40,), generator=gen)
    weights = torch.full((2, 40), 1 / 40.0)
    theta = torch.randn(2, 3, 5, generator=gen)
    theta[1] *= 200  # float32: e^(z - z_y) overflows for some points
    objective = LogregObjective(x, y, 3)
    f, grad = objective(theta, weights, torch.full((2,), 0.1))
    f0, grad0 = objective(theta[:1], weights[:1], torch.full((1,), 0.1))
    assert torch.equal(f[:1], f0) and torch.equal(grad[:1], grad0)
    big = theta[1:].double().requires_grad_()
    logits = torch.einsum("bkd,nd->bnk", big[..., :-1], x.double()) + big[:, None, :, -1]
    ce = torch.nn.functional.cross_entropy(logits[0], y)
    expected = ce + 0.05 * big[..., :-1].square().sum()
    expected.backward()
    assert torch.isfinite(f).all() and f[1].item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(grad[1].double(), big.grad[0], rtol=1e-4, atol=1e-4)


def test_two_classes_use_one_weight_vector_as_scikit_learns_binomial_loss():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (20,), generator=gen)
    theta = torch.randn(4, 1, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    objective = LogregObjective(x, y, 2)
    f, grad = objective(
        theta.detach(), torch.full((4, 20), 1 / 20.0).double(), torch.full((4,), 0.05)
    )
    margin = x @ theta[:, 0, :-1].T + theta[:, 0, -1]  # (20, 4)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        margin, y[:, None].double().expand(-1, 4), reduction="none"
    ).mean(0)
    expected = bce + 0.025 * theta[:, 0, :-1].square().sum(1)
    expected.sum().backward()
    assert torch.allclose(f, expected.detach()) and torch.allclose(grad, theta.grad)
    logits = objective.logits(theta.detach(), objective.xt)  # class 0 fixed at 0
    assert torch.allclose(logits[1] - logits[0], margin.T.detach())


def test_compact_memory_is_the_bfgs_recursion():
    """H g from the compact form equals the product of m inverse-BFGS updates of gamma I."""
    gen = torch.Generator().manual_seed(1)
    b, p, m = 3, 6, 4
    g = torch.randn(b, p, generator=gen, dtype=torch.float64)
    memory = CurvatureMemory(g, m)
    a = torch.randn(b, p, p, generator=gen, dtype=torch.float64)
    hessians = a @ a.mT + torch.eye(p, dtype=torch.float64)  # a convex quadratic per model
    pairs = []
    for step in range(6):  # more pairs than slots: the ring drops the oldest
        s = torch.randn(b, p, generator=gen, dtype=torch.float64)
        y = (hessians @ s[..., None])[..., 0]
        if step == 4:
            y[1] = -s[1]  # negative curvature for model 1: skipped
        memory.push(s, y)
        pairs.append((s, y))
    for model in range(b):
        in_ring = [(s[model], y[model]) for s, y in pairs[-m:]]  # the last m steps
        kept = [(s, y) for s, y in in_ring if s @ y > 0]  # a skipped update leaves its slot empty
        s_new, y_new = kept[-1]
        h = (s_new @ y_new) / (y_new @ y_new) * torch.eye(p, dtype=torch.float64)
        for s, y in kept:
            rho = 1 / (s @ y)
            left = torch.eye(p, dtype=torch.float64) - rho * torch.outer(s, y)
            h = left @ h @ left.T + rho * torch.outer(s, s)
        assert torch.allclose(memory.apply(g)[model], h @ g[model])


def test_lbfgs_reaches_the_tolerance_and_counts_iterations():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(80, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (80,), generator=gen)
    masks = torch.rand(6, 80, generator=gen) < 0.7
    objective = LogregObjective(x, y, 4)
    result = lbfgs_logreg(objective, masks.double(), 1.0, torch.zeros(6, 4, 6).double(), tol=1e-8)
    sizes = masks.sum(1).double()
    _, grad = objective(result.theta, masks / sizes[:, None], 1 / sizes)
    assert result.converged.all() and grad.abs().amax((1, 2)).max() <= 1e-8
    assert torch.all(result.n_iter > 0)
    capped = lbfgs_logreg(objective, masks.double(), 1.0, torch.zeros(6, 4, 6).double(), 1e-8, 3)
    assert torch.all(capped.n_iter == 3) and not capped.converged.any()


def test_all_zero_features_are_left_out_without_changing_the_fit():
    """An all-zero column keeps weight 0 on every L-BFGS iterate: the fit without it is the same."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(60, 4, generator=gen, dtype=torch.float64)
    padded = torch.cat([torch.zeros(60, 1, dtype=torch.float64), x, torch.zeros(60, 2).double()], 1)
    assert nonzero_features(padded).tolist() == [1, 2, 3, 4]
    y = torch.randint(0, 3, (60,), generator=gen)
    masks = (torch.rand(4, 60, generator=gen) < 0.7).double()
    full = lbfgs_logreg(LogregObjective(padded, y, 3), masks, 1.0, torch.zeros(4, 3, 8).double())
    kept = lbfgs_logreg(LogregObjective(x, y, 3), masks, 1.0, torch.zeros(4, 3, 5).double())
    assert torch.all(full.theta[..., [0, 5, 6]] == 0)
    assert torch.allclose(full.theta[..., [1, 2, 3, 4, 7]], kept.theta, atol=1e-10)
    assert torch.equal(full.n_iter, kept.n_iter)


def test_preconditioned_lbfgs_stops_on_the_gradient_in_theta_at_the_same_optimum():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(80, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (80,), generator=gen)
    masks = torch.rand(6, 80, generator=gen) < 0.6
    objective = LogregObjective(x, y, 4)
    start = lbfgs_logreg(objective, torch.ones(1, 80).double(), 1.0, torch.zeros(1, 4, 6).double())
    pre = Preconditioner(objective, start.theta[0])
    theta0 = start.theta.expand(6, 4, 6)
    plain = lbfgs_logreg(objective, masks.double(), 1.0, torch.zeros(6, 4, 6).double(), tol=1e-9)
    fast = lbfgs_logreg(objective, masks.double(), 1.0, theta0, 1e-9, preconditioner=pre)
    sizes = masks.sum(1).double()
    _, grad = objective(fast.theta, masks / sizes[:, None], 1 / sizes)
    assert fast.converged.all() and grad.abs().amax((1, 2)).max() <= 1e-9
    # fewer iterations is a property of real data (digits: ~11 vs ~28), not of random labels
    logits = lambda t: objective.logits(t, objective.xt)  # noqa: E731  (intercepts: up to a shift)
    assert torch.allclose(
        torch.softmax(logits(fast.theta), 0), torch.softmax(logits(plain.theta), 0), atol=1e-7
    )
