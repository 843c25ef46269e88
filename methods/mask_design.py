"""The AME design matrix, never materialised: X_ji = a_j if column i's point is in S_j, else b_j.

Every AME feature is an affine function of one inclusion bit (Lin et al. 2022: a_j = 1/p_j,
b_j = -1/(1 - p_j); AME-SV: a_j = 1 - p_j, b_j = -p_j), so the design is its masks plus two numbers
per sample: X = diag(a - b) M + b 1', and

    X' r = M' ((a - b) * r) + (b' r) 1,        X beta = (a - b) * (M beta) + b (1' beta).

The columns are the real points' masks followed, with knockoffs, by the knockoff masks. A design
of at most `cache_mb` megabytes of features is built once in `dtype`, transposed (small problems:
one product each). A larger one keeps its masks as int8 bits, transposed (one contiguous row per
column, so that a working set's columns are a row gather), and forms products in blocks of
`block_mb` MB of features in `dtype`; its row subsets (the CV folds) are cached when they fit.
The full gradient X' r of the LASSO path's KKT checks also has a fast bounded form: in float32 on
a float64 cache, and on the bits r split into int8 digits, multiplied exactly in int32
(`torch._int_mm`), used where int8 products are measured to beat the float ones (CPUs with
AVX512-VNNI or AMX; on AVX2 alone torch's int8 kernel is ~30x slower than float32).
"""

from __future__ import annotations

import time
from functools import cache

import numpy as np
import torch

CACHE_MB = 128  # a design (or a row subset) of at most this many MB of features keeps them
THIN = 8  # columns of beta up to which products with the design are formed as (beta' X')'
DIGITS = 2  # int8 digits of the fast X' r: about 14 bits of the residuals, the rest in the bound


@cache
def int8_products_pay() -> bool:
    """Whether DIGITS int8 products (`torch._int_mm`) of 0/1 bits beat converting them to float32
    and one float product on this CPU, timed once per process on a (2048 x 1024) block."""
    bits = torch.randint(0, 2, (2048, 1024), dtype=torch.int8)
    digits = torch.randint(-127, 128, (1024, 64), dtype=torch.int8)
    floats = digits.float()

    def best(product) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            product()
            times.append(time.perf_counter() - start)
        return min(times)

    try:
        int8 = DIGITS * best(lambda: torch._int_mm(bits, digits))
    except (RuntimeError, AttributeError):  # no int8 products in this build
        return False
    return int8 < best(lambda: bits.float() @ floats)


class MaskDesign:
    """X (m, p) with p = the summed widths of `masks` (each (m, n_i) bool), rows coded by a, b (m,).
    `int8`: whether a design kept as bits forms the bounded X' r by int8 products (None: where
    `int8_products_pay`)."""

    def __init__(
        self,
        masks: list[np.ndarray],
        a: np.ndarray,
        b: np.ndarray,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
        block_mb: float = 64,
        cache_mb: float = CACHE_MB,
        int8: bool | None = None,
    ) -> None:
        self.m = len(a)
        if any(mk.shape[0] != self.m for mk in masks):
            raise ValueError("every mask block needs one row per sample")
        self.p = int(sum(mk.shape[1] for mk in masks))
        self.device, self.dtype = torch.device(device), dtype
        self.a = torch.as_tensor(a, dtype=torch.float64, device=device)
        self.b = torch.as_tensor(b, dtype=torch.float64, device=device)
        self.diff = self.a - self.b
        self.block_bytes = int(block_mb * 2**20)
        self.cache_bytes = cache_mb * 2**20
        self.cache, self.bits = None, None
        self._scratch = [None, None]  # float buffers the bits are converted into (_floats)
        # the masks transposed, (p, m) int8, kept by every design: rows are gathered from them (one
        # byte an entry) for the counted Grams and the folds' features
        self.mask_bits = torch.from_numpy(_transposed(masks, self.p)).to(device)
        if self._fits_cache(self.m):
            self.cache = self._coded(self.mask_bits, self.a, self.b)  # (p, m): a column is a row
        else:
            self.bits = self.mask_bits
        # a float64 cache's float32 copy for the bounded X' r, used while float32 products sum in
        # IEEE float32 (torch's "highest" matmul precision: not TF32 or bf16)
        self.single, self.single_error = None, 0.0  # and its factor gamma_(m+2) max|X|
        if self.cache is not None and dtype == torch.float64 and self.m < 2**20:
            self.single = self.cache.float()
            n_u = (self.m + 2) * 2.0**-24
            largest = float(torch.maximum(self.a.abs(), self.b.abs()).max())
            self.single_error = n_u / (1 - n_u) * largest
        self.fast = (  # int8 products: bits on the CPU, where they pay (timed only if asked)
            self.bits is not None
            and self.device.type == "cpu"
            and (int8_products_pay() if int8 is None else int8)
        )

    def _floats(self, bits: torch.Tensor, slot: int = 0) -> torch.Tensor:
        """0/1 `bits` (int8) in dtype, copied into scratch buffer `slot` and valid until its next
        use: a fresh tensor per block would cost page faults (about half of X' r's time)."""
        buf = self._scratch[slot]
        if buf is None or buf.numel() < bits.numel():
            buf = self._scratch[slot] = torch.empty(
                bits.numel(), dtype=self.dtype, device=self.device
            )
        return buf[: bits.numel()].view(bits.shape).copy_(bits)

    def _coded(self, bits: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Features (p, r) in dtype from the 0/1 bits (p, r) of samples coded a, b (r,): lerp is
        exact at both ends (b + 0 (a - b) = b, a - (a - b) (1 - 1) = a) and in float32 3x where's
        speed."""
        shape = bits.shape
        a, b = a.to(self.dtype)[None, :].expand(shape), b.to(self.dtype)[None, :].expand(shape)
        return torch.lerp(b, a, bits.to(self.dtype))

    def _block_width(self) -> int:
        return max(1, self.block_bytes // (self.m * torch.finfo(self.dtype).bits // 8))

    def _blocks(self):
        for start in range(0, self.p, self._block_width()):
            yield slice(start, min(start + self._block_width(), self.p))

    def features(self, cols) -> torch.Tensor:
        """X[:, cols]' (len(cols), m) in dtype."""
        cols = torch.as_tensor(cols, device=self.device)
        if self.cache is not None:
            return self.cache[cols]
        bits = self.bits[cols].to(self.dtype)
        return bits * self.diff.to(self.dtype)[None, :] + self.b.to(self.dtype)[None, :]

    def matmul_cols(self, cols, beta: torch.Tensor) -> torch.Tensor:
        """X[:, cols] beta for beta (len(cols), R) float64: (m, R) float64, from the 0/1 bits on a
        large design (X_W beta = d * (M_W beta) + b sum(beta))."""
        cols = torch.as_tensor(cols, device=self.device)
        # many columns: the whole design, no gather (from bits, from half of them: 17,545 x 2,000,
        # a quarter 14 ms gathered vs 24 ms whole, three quarters 40 vs 25 ms)
        if len(cols) >= self.p / (4 if self.cache is not None else 2):
            full = torch.zeros((self.p, beta.shape[1]), dtype=torch.float64, device=self.device)
            full[cols] = beta
            return self.matmul(full)
        if self.cache is not None:
            return _times_rows(beta, self.cache[cols])
        out = _times_rows(beta, self._floats(self.bits[cols]))
        return self.diff[:, None] * out + self.b[:, None] * beta.sum(0)[None, :]

    def _fits_cache(self, m: int) -> bool:
        """Whether m rows of features in dtype fit `cache_mb`."""
        return m * self.p * torch.finfo(self.dtype).bits // 8 <= self.cache_bytes

    @staticmethod
    def stored_bytes(m: int, p: int, dtype: torch.dtype, cache_mb: float = CACHE_MB) -> int:
        """Bytes a design (or row subset) of m rows and p columns holds: its 0/1 bits, one byte
        each, and its features in dtype where they fit cache_mb."""
        features = m * p * torch.finfo(dtype).bits // 8
        return m * p + (features if features <= cache_mb * 2**20 else 0)

    def row_subset(self, rows: torch.Tensor) -> MaskDesign:
        """The design of the samples `rows` only: a copy of their features when those fit
        `cache_mb` (a design kept as bits too: its folds' fits then need no conversions), else of
        their bits. The scratch buffers are shared, as both are used from one thread."""
        sub = object.__new__(MaskDesign)
        sub.__dict__.update(self.__dict__)
        sub.m = len(rows)
        sub.a, sub.b, sub.diff = self.a[rows], self.b[rows], self.diff[rows]
        sub.single = None  # the float32 copy is of all rows; a subset's X' r is the exact one
        sub.mask_bits = _take_columns(self.mask_bits, rows)
        if self._fits_cache(sub.m):
            sub.cache, sub.bits, sub.fast = self._coded(sub.mask_bits, sub.a, sub.b), None, False
        else:
            sub.bits = sub.mask_bits
        return sub

    def cross(self, cols, new, w: torch.Tensor, basis: torch.Tensor):
        """X[:, cols]' diag(w) X[:, new] (len(cols), len(new)) and X[:, new]' diag(w) basis, float64.
        On the bits, with x_i = d m_i + b (d = a - b): x_i' W x_l = m_i' (W d^2) m_l + m_i' (W d b)
        + (W d b)' m_l + b' W b, so the features are never formed, only the 0/1 bits converted."""
        if self.cache is not None:
            x, x_new = self.cache[torch.as_tensor(cols)], self.cache[torch.as_tensor(new)]
            x_new = x_new * w.to(self.dtype)[None, :]
            return (x @ x_new.T).double(), x_new.double() @ basis
        bits = self._floats(self.bits[torch.as_tensor(cols, device=self.device)])
        bits_new = self._floats(self.bits[torch.as_tensor(new, device=self.device)], slot=1)
        wdb = (w * self.diff * self.b).to(self.dtype)
        main = (bits @ (bits_new * (w * self.diff**2).to(self.dtype)[None, :]).T).double()
        mv = (bits @ wdb).double()
        mv_new = (bits_new @ wdb).double()
        gram = main + mv[:, None] + mv_new[None, :] + float(w @ self.b**2)
        wb = w[:, None] * basis
        basis_new = (bits_new @ (self.diff[:, None] * wb).to(self.dtype)).double() + self.b @ wb
        return gram, basis_new

    def bits_at(self, rows: torch.Tensor) -> torch.Tensor:
        """M[rows]' (p, len(rows)) uint8: the 0/1 masks of the samples `rows`."""
        return _take_columns(self.mask_bits, rows).view(torch.uint8)

    def columns_at(self, rows: torch.Tensor) -> torch.Tensor:
        """X[rows]' (p, len(rows)) in dtype."""
        return self._coded(_take_columns(self.mask_bits, rows), self.a[rows], self.b[rows])

    def block_rows(self, width: int) -> int:
        """How many rows of features at `width` columns fit one block."""
        return max(1, self.block_bytes // (max(width, 1) * torch.finfo(self.dtype).bits // 8))

    def rmatmul(self, r: torch.Tensor) -> torch.Tensor:
        """X' r for r (m, R) float64: (p, R) float64, the products in dtype."""
        if self.cache is not None:
            return (self.cache @ r.to(self.dtype)).double()
        w = (self.diff[:, None] * r).to(self.dtype)
        out = torch.empty((self.p, r.shape[1]), dtype=torch.float64, device=self.device)
        for cols in self._blocks():
            out[cols] = (self._floats(self.bits[cols]) @ w).double()
        return out + (self.b @ r)[None, :]

    def rmatmul_bounded(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """X' r (p, R) and a bound (R,) on each column's absolute error. On a float64 cache: in
        float32 (twice as fast), the error of an m-term dot product with its operands rounded,
        <= gamma_(m+2) sum_j |x_ji r_j| <= gamma_(m+2) max|X| ||r||_1, gamma_n = n u / (1 - n u)
        (Higham 2002, Sec. 3.1), u = 2^-24. On the bits: the weighted residuals w = (a - b) * r in
        DIGITS int8 digits, M' w exact in int32 per digit; the error is at most (number of ones
        in the column) x (half the last digit's step) <= m x that."""
        if self.single is not None and torch.get_float32_matmul_precision() == "highest":
            bound = self.single_error * r.abs().sum(0)
            return (self.single @ r.to(torch.float32)).double(), bound
        if not self.fast:
            return self.rmatmul(r), torch.zeros(r.shape[1], dtype=torch.float64, device=self.device)
        w = self.diff[:, None] * r
        step = w.abs().amax(0).clamp_min(1e-300) / 127
        out = (self.b @ r)[None, :].expand(self.p, -1).clone()
        for _ in range(DIGITS):
            digit = torch.round(w / step).clamp_(-127, 127)
            w = w - digit * step
            try:
                out += torch._int_mm(self.bits, digit.to(torch.int8)).double() * step
            except (RuntimeError, AttributeError):  # no int8 products here: exact float blocks
                self.fast = False
                return self.rmatmul(r), torch.zeros_like(step)
            step = step / 254
        return out, self.m * step * 127  # |w remaining| <= the last step / 2 = (step / 254) 127

    def matmul(self, beta: torch.Tensor) -> torch.Tensor:
        """X beta for beta (p, R) float64: (m, R) float64."""
        if self.cache is not None:
            return _times_rows(beta, self.cache)
        out = torch.zeros((self.m, beta.shape[1]), dtype=torch.float64, device=self.device)
        for cols in self._blocks():
            out += _times_rows(beta[cols], self._floats(self.bits[cols]))
        return self.diff[:, None] * out + self.b[:, None] * beta.sum(0)[None, :]


def _take_columns(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x[:, rows], contiguous; on the CPU by numpy's take, 5x torch's indexing of the second axis
    (int8 bits, 4,000 x 38,291, 7,658 rows: 24 vs 122 ms)."""
    if x.device.type != "cpu":
        return x[:, rows].contiguous()
    return torch.from_numpy(np.take(x.numpy(), rows.cpu().numpy(), axis=1))


def _transposed(masks: list[np.ndarray], p: int) -> np.ndarray:
    """The masks side by side, transposed: (p, m) int8, copied by blocks of rows (each block's
    transpose stays in cache: m = 38,291, p = 4,000 in 0.1 s, against 0.5 s by columns)."""
    m = masks[0].shape[0]
    out = np.empty((p, m), dtype=np.int8)
    start = 0
    for mk in masks:
        for lo in range(0, m, 256):
            out[start : start + mk.shape[1], lo : lo + 256] = mk[lo : lo + 256].T
        start += mk.shape[1]
    return out


def _times_rows(beta: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """rows' beta (m, R) float64 for rows (p, m) in their dtype. For a thin beta (R <= THIN) as
    (beta' rows)': BLAS runs rows' @ beta, a transposed operand against a thin one, 2-15x slower
    there (measured at R = 2 and 6), and 10-30% faster from R = 12 on."""
    beta = beta.to(rows.dtype)
    if beta.shape[1] > THIN:
        return (rows.T @ beta).double()
    if rows.device.type == "cpu":  # numpy's BLAS (OpenBLAS) runs this shape ~2x torch's here
        # (5 x 4,000 by 4,000 x 7,658 float32: 13.5 vs 25 ms on 2 cores)
        return torch.from_numpy(beta.T.contiguous().numpy() @ rows.numpy()).T.contiguous().double()
    return (beta.T @ rows).T.contiguous().double()
