"""The Gram of a mask design from bit counts (methods/mask_gram.py) against the dense product."""

import numpy as np
import pytest
import torch

from valbench.methods.lasso_sets import rows_gram
from valbench.methods.mask_design import MaskDesign
from valbench.methods.mask_gram import row_codes


def _design(m, p, probs, cache_mb, dtype=torch.float64, seed=0):
    rng = np.random.default_rng(seed)
    pj = rng.choice(probs, m)
    masks = rng.random((m, p)) < pj[:, None]
    a, b = 1 / pj, -1 / (1 - pj)
    basis = (pj[:, None] == np.unique(probs)[None, :]).astype(np.float64)
    design = MaskDesign(
        [masks[:, : p // 3], masks[:, p // 3 :]], a, b, dtype=dtype, cache_mb=cache_mb
    )
    return design, np.where(masks, a[:, None], b[:, None]), torch.as_tensor(basis), rng


@pytest.mark.parametrize("cache_mb", [1e-3, 128])  # masks kept as bits / features cached
@pytest.mark.parametrize("m,p", [(700, 130), (1500, 67)])  # p not a multiple of the tile
def test_counted_gram_equals_the_dense_product(cache_mb, m, p):
    design, x, basis, rng = _design(m, p, [0.2, 0.4, 0.6, 0.8], cache_mb)
    rows = np.sort(rng.choice(m, 4 * m // 5, replace=False))
    assert row_codes(design, torch.as_tensor(rows), basis) is not None  # counted, 4 codings
    out = torch.full((p, p), np.nan, dtype=torch.float64)
    cross = rows_gram(design, torch.as_tensor(rows), basis, out)
    x_r = x[rows]
    np.testing.assert_allclose(out.numpy(), x_r.T @ x_r, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(cross.numpy(), x_r.T @ basis.numpy()[rows], rtol=1e-12, atol=1e-9)


def test_counted_gram_in_float32_is_one_rounding_from_exact():
    design, x, basis, _ = _design(2000, 90, [0.3, 0.7], 1e-3, dtype=torch.float32)
    rows = torch.arange(2000)
    out = torch.empty((90, 90), dtype=torch.float32)
    rows_gram(design, rows, basis, out)
    exact = x.T @ x
    assert np.abs(out.numpy() - exact).max() <= 2**-24 * np.abs(exact).max()


def test_many_codings_stay_float_products():
    rng = np.random.default_rng(1)
    pj = rng.uniform(0.1, 0.9, 600)
    masks = rng.random((600, 40)) < pj[:, None]
    design = MaskDesign([masks], 1 / pj, -1 / (1 - pj), cache_mb=1e-3)
    basis = torch.as_tensor(np.c_[np.ones(600), pj])
    assert row_codes(design, torch.arange(600), basis) is None
    out = torch.empty((40, 40), dtype=torch.float64)
    rows_gram(design, torch.arange(600), basis, out)
    x = np.where(masks, 1 / pj[:, None], -1 / (1 - pj[:, None]))
    np.testing.assert_allclose(out.numpy(), x.T @ x, rtol=1e-10)


def test_groups_packed_in_several_pieces(monkeypatch):
    """A group's rows gathered and packed PACK_ROWS at a time give the same Gram."""
    from valbench.methods import mask_gram

    design, x, basis, _ = _design(1200, 50, [0.3, 0.7], 1e-3)
    monkeypatch.setattr(mask_gram, "PACK_ROWS", 72)
    out = torch.empty((50, 50), dtype=torch.float64)
    rows_gram(design, torch.arange(1200), basis, out)
    np.testing.assert_allclose(out.numpy(), x.T @ x, rtol=1e-12, atol=1e-9)
