"""Random draws for the methods: seeded generators, Bernoulli coalitions, permutation prefixes."""

from __future__ import annotations

import numpy as np

MAX_ROWS = 4096  # masks handed to the game per call by the samplers (the engine chunks further)


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator for `seed` (and an optional stream id)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed), *stream])


def bernoulli_masks(rng: np.random.Generator, p: np.ndarray, n: int) -> np.ndarray:
    """Masks (len(p), n): row j includes each point independently with probability p[j].

    The uniforms are drawn row after row, so the first m rows depend only on the generator's state
    and p[:m]: a larger budget with the same seed starts with the smaller budget's masks.
    """
    masks = np.empty((len(p), n), dtype=bool)
    step = max(1, (1 << 22) // max(n, 1))
    for start in range(0, len(p), step):
        stop = min(start + step, len(p))
        masks[start:stop] = rng.random((stop - start, n)) < p[start:stop, None]
    return masks


def prefix_masks(perms: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Masks (G * len(sizes), n) of the prefixes of sizes `sizes` of each permutation in perms (G, n)."""
    ranks = np.argsort(perms, axis=1)  # ranks[g, i] = position of player i in permutation g
    return (ranks[:, None, :] < sizes[None, :, None]).reshape(-1, perms.shape[1])
