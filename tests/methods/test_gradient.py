"""Per-sample gradients, Grad-Dot, Grad-Cos and TracIn against plain autograd, one point at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import valbench
from valbench.methods.final_model import checkpoint_steps, train_final_model
from valbench.methods.gradients import GradCos, GradDot, TracIn, as_vector, cosine, loss_grads

SMALL = ["dataset.n_train=60", "dataset.n_val=12", "dataset.n_test=40", "progress=false"]
MLP = ["model.widths=[8]", "model.steps=30", "model.batch_size=16", "model.lr=0.01"]


@pytest.fixture(scope="module")
def mlp():
    return valbench.load_problem("digits", "mislabel", model="mlp", overrides=[*SMALL, *MLP])


def autograd_grads(final, params, x, y) -> torch.Tensor:
    """Per-sample gradients by one backward pass per point (the reference for torch.func)."""
    rows = []
    for xj, yj in zip(x, y, strict=True):
        leaves = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
        F.cross_entropy(final.logits(leaves, xj[None]), yj[None]).backward()
        rows.append(as_vector({k: v.grad for k, v in leaves.items()}))
    return torch.stack(rows)


@pytest.fixture(scope="module")
def reference(mlp):
    final = train_final_model(mlp, checkpoints=3)
    train = autograd_grads(final, final.params, final.x, final.y)
    xv, yv = final.inputs(mlp.split.x_val), final.labels(mlp.split.y_val)
    val = autograd_grads(final, final.params, xv, yv)
    return final, train.numpy(), val.numpy()


def test_per_sample_gradients_match_autograd(reference):
    final, train, _ = reference
    assert loss_grads(final, final.params, final.x, final.y).numpy() == pytest.approx(train)


def test_grad_dot_every_target(mlp, reference):
    final, train, val = reference
    method = GradDot()
    queries = method.attribute_final(final, mlp, "queries", seed=0)
    assert queries == pytest.approx(val @ train.T)
    assert method.attribute_final(final, mlp, "val", 0) == pytest.approx(val.mean(0) @ train.T)
    assert method.attribute_final(final, mlp, "self", 0) == pytest.approx(-(train**2).sum(1))


def test_grad_cos_is_the_scale_invariant_cosine(mlp, reference):
    final, train, val = reference
    got = GradCos().attribute_final(final, mlp, "queries", seed=0)
    unit = lambda g: g / np.linalg.norm(g, axis=1, keepdims=True)  # noqa: E731
    assert got == pytest.approx(unit(val) @ unit(train).T)
    assert np.abs(got).max() <= 1 + 1e-12
    gq, g = torch.as_tensor(val), torch.as_tensor(train)
    scales = torch.rand(len(g), 1, dtype=g.dtype) * 100 + 1e-3  # any positive rescaling per point
    assert cosine(7.0 * gq, scales * g).numpy() == pytest.approx(cosine(gq, g).numpy())
    with pytest.raises(ValueError, match="grad_cos: unknown target 'self'"):
        GradCos(target="self").value(mlp.game, seed=0, problem=mlp)


def test_tracin_sums_learning_rate_weighted_checkpoints(mlp, reference):
    final, _, _ = reference
    assert len(final.checkpoints) == 3 and checkpoint_steps(30, 3) == [9, 19, 29]
    last, lr = final.checkpoints[-1]
    assert lr == 0.01 and all(torch.equal(last[k], final.params[k]) for k in last)
    want = 0.0
    xv, yv = final.inputs(mlp.split.x_val), final.labels(mlp.split.y_val)
    for params, rate in final.checkpoints:
        want = want + rate * (
            autograd_grads(final, params, xv, yv)
            @ autograd_grads(final, params, final.x, final.y).T
        )
    got = TracIn(checkpoints=3).attribute_final(final, mlp, "queries", seed=0)
    assert got == pytest.approx(want.numpy())
    full = TracIn(checkpoints=3).value(mlp.game, seed=0, problem=mlp)
    assert full.values.shape == (60,) and full.info["target"] == "self"


def test_self_values_find_flipped_labels():
    sizes = ["dataset.n_train=300", "dataset.n_val=100", "progress=false"]
    problem = valbench.load_problem("digits", "mislabel", overrides=sizes)
    valuation = GradDot().value(problem.game, seed=0, problem=problem)
    assert valbench.score(valuation, problem.truth)["auroc"] > 0.9  # measured 0.96


def test_bad_inputs_fail_before_training(mlp, monkeypatch):
    monkeypatch.setattr("valbench.methods.gradients.train_final_model", None)  # no training
    logreg = valbench.load_problem("digits", "mislabel", overrides=SMALL)
    with pytest.raises(ValueError, match="logreg is solved by L-BFGS"):
        TracIn().value(logreg.game, seed=0, problem=logreg)
    with pytest.raises(ValueError, match="checkpoints must be an integer >= 1, got 0"):
        TracIn(checkpoints=0).value(mlp.game, seed=0, problem=mlp)
    with pytest.raises(ValueError, match="grad_dot is model-based"):
        GradDot().value(mlp.game, seed=0)
    knn_model = valbench.types.Problem(mlp.split, mlp.truth, {"name": "knn"}, mlp.game)
    with pytest.raises(ValueError, match="needs a differentiable torch model"):
        GradDot().value(mlp.game, seed=0, problem=knn_model)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_and_cpu_agree():
    def values(device: str) -> np.ndarray:
        problem = valbench.load_problem(
            "digits", "mislabel", overrides=[*SMALL, f"utility.device={device}"]
        )
        return GradDot(target="val").value(problem.game, seed=0, problem=problem).values

    assert np.corrcoef(values("cpu"), values("cuda"))[0, 1] > 0.999
