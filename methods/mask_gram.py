"""The Gram X_R' X_R of a mask design over rows R by counting bits, where its rows take few codings.

Row j of the design is X_j = b_j + d_j M_j (d = a - b, M the 0/1 masks; methods/mask_design.py).
Where the rows take G distinct codings (a_g, b_g) (AME's p_grid: one per grid value), grouping R
by them gives, with C_g = M_g' M_g the co-occurrence counts of the rows of group g, N_g = diag(C_g)
their column counts and n_g their number,

    X_R' X_R = sum_g d_g^2 C_g + u 1' + 1 u' + s,    u = sum_g b_g d_g N_g,  s = sum_g n_g b_g^2,

and, where the basis rows (the unpenalised columns B) are constant in each group too,
X_R' B_R = sum_g (d_g N_g + b_g n_g) B_g'. Every C_g[i, l] is a popcount of the AND of two packed
bit columns: 64 rows per machine word instead of 64 multiply-adds, exact in integers (mislabel
n = 4,000: 7.7 s of float32 products on one core, 0.5 s counted). Grams with many codings (p_range,
AME-SV's continuous p) stay float products (methods/lasso_sets.rows_gram).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import types
from numba.extending import intrinsic

numba.config.THREADING_LAYER = "workqueue"  # as methods/lasso_cd.py, which says why

TILE = 64  # Gram rows and columns per tile: a tile's packed words stay in the L1/L2 caches
PACK_ROWS = 8192  # rows whose bits are gathered unpacked at a time (a multiple of 8)


@intrinsic
def _popcount(typingctx, word):
    """The number of set bits of a uint64 (LLVM's ctpop: one POPCNT instruction)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@numba.njit(cache=True, nogil=True)
def _tile_row(words, weights, u, s, out, t):
    """The tiles (t, t2 >= t) of out: see weighted_counts."""
    n_groups, p, n_words = words.shape
    for k0 in range(t * TILE, p, TILE):
        for i in range(t * TILE, min(p, (t + 1) * TILE)):
            for k in range(max(k0, i), min(p, k0 + TILE)):
                acc = 0.0
                for g in range(n_groups):
                    x, y = words[g, i], words[g, k]
                    count = np.uint64(0)
                    for w in range(n_words):  # vectorised by LLVM (AVX2: 4 words at a time)
                        count += _popcount(x[w] & y[w])
                    acc += weights[g] * count
                value = acc + u[i] + u[k] + s
                out[i, k] = value
                out[k, i] = value


@numba.njit(cache=True, nogil=True, parallel=True)
def weighted_counts(words, weights, u, s, out):
    """out[i, k] = sum_g weights[g] popcount(words[g, i] & words[g, k]) + u[i] + u[k] + s, by
    tiles of the upper triangle, mirrored below; threads over rows of tiles, paired from both
    ends (row t has n_tiles - t tiles) so that each thread gets as many tiles."""
    n_tiles = (words.shape[1] + TILE - 1) // TILE
    for t in numba.prange((n_tiles + 1) // 2):
        _tile_row(words, weights, u, s, out, t)
        if n_tiles - 1 - t != t:
            _tile_row(words, weights, u, s, out, n_tiles - 1 - t)


def row_codes(design, rows: torch.Tensor, basis: torch.Tensor):
    """The distinct (a, b, basis row) of the rows R and each row's group, or None where they are
    too many for counting to pay: a group of under 16 rows on average (then a pair of columns
    costs over ~4 popcounts of 64 rows against 16 multiply-adds)."""
    if design.device.type != "cpu":  # the counting kernel runs on the CPU
        return None
    keys = torch.cat([design.a[rows, None], design.b[rows, None], basis[rows]], 1).cpu().numpy()
    codes, group = np.unique(keys, axis=0, return_inverse=True)
    if 16 * len(codes) > len(rows):
        return None
    return codes, group.reshape(-1)


def counted_gram(design, rows: torch.Tensor, basis: torch.Tensor, out: torch.Tensor, codes, group):
    """X_R' X_R into `out` (p, p) and X_R' B_R (p, G) float64, from the counts of the rows' bits
    grouped by `codes` (row_codes): see the module docstring."""
    rows_np = rows.cpu().numpy()
    members = [rows_np[group == g] for g in range(len(codes))]
    n_words = -(-max(len(mine) for mine in members) // 64)
    words = np.zeros((len(codes), design.p, 8 * n_words), dtype=np.uint8)  # groups' bits, packed
    counts = np.zeros((design.p, len(codes)))  # N (p, G)
    for g, mine in enumerate(members):
        for lo in range(0, len(mine), PACK_ROWS):  # bits unpacked for PACK_ROWS rows at a time
            part = torch.as_tensor(mine[lo : lo + PACK_ROWS], device=design.device)
            bits = design.bits_at(part).cpu().numpy()
            counts[:, g] += bits.sum(1, dtype=np.int64)
            packed = np.packbits(bits, axis=1, bitorder="little")
            words[g, :, lo // 8 : lo // 8 + packed.shape[1]] = packed
    words = words.view(np.uint64)  # (G, p, n_words): 64 rows a word
    a, b, basis_g = codes[:, 0], codes[:, 1], codes[:, 2:]
    d, n_g = a - b, np.array([len(mine) for mine in members], dtype=np.float64)
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    weighted_counts(words, d**2, counts @ (b * d), float(n_g @ b**2), out.numpy())
    cross = (counts * d[None, :] + (b * n_g)[None, :]) @ basis_g
    return torch.as_tensor(cross, device=design.device)
