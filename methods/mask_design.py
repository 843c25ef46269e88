"""The AME design matrix, never materialised: X_ji = a_j if column i's point is in S_j, else b_j.

Every AME feature is an affine function of one inclusion bit (Lin et al. 2022: a_j = 1/p_j,
b_j = -1/(1 - p_j); AME-SV: a_j = 1 - p_j, b_j = -p_j), so the design is its bool masks plus two
numbers per sample. The columns are the real points' masks followed, with knockoffs, by the knockoff
masks. Products are formed in blocks of at most `block_mb` megabytes of features, built from the
masks on the fly in `dtype` on `device`; the masks stay bool (one byte per entry). A design of at
most `cache_mb` megabytes of features is built once and kept (small problems: one product each).
"""

from __future__ import annotations

import numpy as np
import torch


class MaskDesign:
    """X (m, p) with p = the summed widths of `masks` (each (m, n_i) bool), rows coded by a, b (m,)."""

    def __init__(
        self,
        masks: list[np.ndarray],
        a: np.ndarray,
        b: np.ndarray,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
        block_mb: float = 64,
        cache_mb: float = 128,
    ) -> None:
        self.parts = [
            torch.as_tensor(np.ascontiguousarray(mk, dtype=bool), device=device) for mk in masks
        ]
        self.m = len(a)
        if any(part.shape[0] != self.m for part in self.parts):
            raise ValueError("every mask block needs one row per sample")
        self.starts = np.cumsum([0] + [part.shape[1] for part in self.parts])
        self.p = int(self.starts[-1])
        self.device, self.dtype = torch.device(device), dtype
        self.a = torch.as_tensor(a, dtype=dtype, device=device)
        self.b = torch.as_tensor(b, dtype=dtype, device=device)
        self.block_bytes = int(block_mb * 2**20)
        self.cache = None
        if self.m * self.p * self.a.element_size() <= cache_mb * 2**20:
            self.cache = torch.cat([self.code(part) for part in self.parts], dim=1)

    def _columns(self, start: int, stop: int) -> torch.Tensor:
        """Bool masks of columns [start, stop) (one part)."""
        part = int(np.searchsorted(self.starts, start, side="right") - 1)
        offset = self.starts[part]
        return self.parts[part][:, start - offset : stop - offset]

    def _gather(self, rows: slice, cols: torch.Tensor) -> torch.Tensor:
        """Bool masks of `rows` at global column ids `cols` (any order)."""
        out = torch.empty(
            (len(range(*rows.indices(self.m))), len(cols)), dtype=torch.bool, device=self.device
        )
        for part, (lo, hi) in enumerate(zip(self.starts[:-1], self.starts[1:], strict=True)):
            inside = (cols >= lo) & (cols < hi)
            if inside.any():
                out[:, inside] = self.parts[part][rows][:, cols[inside] - int(lo)]
        return out

    def code(self, bits: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """Features from bool masks of the given rows: a where the bit is set, b elsewhere."""
        return torch.where(bits, self.a[rows, None], self.b[rows, None])

    def _col_blocks(self):
        """(start, stop) column ranges of full-height blocks, none crossing a part boundary."""
        width = max(1, self.block_bytes // (self.m * self.a.element_size()))
        for lo, hi in zip(self.starts[:-1], self.starts[1:], strict=True):
            for start in range(int(lo), int(hi), width):
                yield start, min(start + width, int(hi))

    def row_blocks(self, width: int):
        """Row slices whose features at `width` columns fit one block."""
        height = max(1, self.block_bytes // (max(width, 1) * self.a.element_size()))
        for start in range(0, self.m, height):
            yield slice(start, min(start + height, self.m))

    def rmatmul(self, r: torch.Tensor) -> torch.Tensor:
        """X' r for r (m, R): (p, R) in r's dtype."""
        rr = r.to(self.dtype)
        if self.cache is not None:
            return (self.cache.T @ rr).to(r.dtype)
        out = torch.empty((self.p, r.shape[1]), dtype=r.dtype, device=self.device)
        for start, stop in self._col_blocks():
            out[start:stop] = (self.code(self._columns(start, stop)).T @ rr).to(r.dtype)
        return out

    def matmul(self, beta: torch.Tensor) -> torch.Tensor:
        """X beta for beta (p, R): (m, R) in beta's dtype."""
        if self.cache is not None:
            return (self.cache @ beta.to(self.dtype)).to(beta.dtype)
        out = torch.zeros((self.m, beta.shape[1]), dtype=beta.dtype, device=self.device)
        for start, stop in self._col_blocks():
            out += (self.code(self._columns(start, stop)) @ beta[start:stop].to(self.dtype)).to(
                beta.dtype
            )
        return out

    def rows(self, rows: slice) -> torch.Tensor:
        """Features of every column at `rows` (rows, p)."""
        if self.cache is not None:
            return self.cache[rows]
        return torch.cat([self.code(part[rows], rows) for part in self.parts], dim=1)

    def features(self, rows: slice, cols: torch.Tensor) -> torch.Tensor:
        """Features (rows, len(cols)) of chosen columns: small working sets only."""
        if self.cache is not None:
            return self.cache[rows][:, cols]
        return self.code(self._gather(rows, cols), rows)

    def squared_norms(self) -> torch.Tensor:
        """sum_j X_ji^2 per column (p,), float64: M'(a^2 - b^2) + sum(b^2)."""
        diff = (self.a.double() ** 2 - self.b.double() ** 2)[:, None]
        base = float((self.b.double() ** 2).sum())
        cols = [
            (self._columns(start, stop).double() * diff).sum(0) + base
            for start, stop in self._col_blocks()
        ]
        return torch.cat(cols)
