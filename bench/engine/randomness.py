"""A submodel's randomness as a function of (seed, mask) alone: a key per mask, and minibatch
positions drawn by a counter-based hash of (key, step, slot), so that a submodel trains the same in
any batch, chunk or device."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

_M32 = 0xFFFFFFFF


def mask_keys(masks: np.ndarray, seed: int) -> np.ndarray:
    """A 63-bit key per mask (or weight row), a hash of (seed, row): the seed of that submodel's
    randomness."""
    head = int(seed).to_bytes(8, "little")
    rows = (np.packbits(m) if m.dtype == bool else m for m in masks)
    digests = (hashlib.blake2b(head + r.tobytes(), digest_size=8).digest() for r in rows)
    return np.array([int.from_bytes(d, "little") >> 1 for d in digests], dtype=np.int64)


def _mul32(h: torch.Tensor, c: int) -> torch.Tensor:
    """(h * c) mod 2^32 for 0 <= h < 2^32, in 16-bit halves so int64 never overflows."""
    return (h * (c & 0xFFFF) + (((h * (c >> 16)) & 0xFFFF) << 16)) & _M32


def _mix32(h: torch.Tensor) -> torch.Tensor:
    """The `lowbias32` integer hash (C. Wellons, 2018) on values in [0, 2^32)."""
    h = _mul32(h ^ (h >> 16), 0x7FEB352D)
    h = _mul32(h ^ (h >> 15), 0x846CA68B)
    return h ^ (h >> 16)


def draw_positions(keys: torch.Tensor, step: int, size: int, sizes: torch.Tensor) -> torch.Tensor:
    """Positions (B, size), uniform in [0, sizes_b): a counter-based hash of (key_b, step, slot),
    so the same numbers come out on any device and in any chunk."""
    base = _mix32(_mix32(keys >> 32) ^ (keys & _M32))
    base = _mix32(base ^ (step & _M32))
    slots = torch.arange(size, device=keys.device) * 0x9E3779B9
    h = _mix32((base[:, None] + slots) & _M32)
    return (h * sizes[:, None]) >> 32
