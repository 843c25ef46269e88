"""Sharded, resumable submodel training for subset methods that sample their coalitions up front.

With `evals.dir` set, a run's utility keeps its evaluations in an `EvalStore` under that folder
(bench/store/evals.py). With `evals.shard=i` and `evals.n_shards=M` a job trains only shard i of M
of its method's samples (rows i B / M to (i + 1) B / M of `method.samples(n, seed)`, in blocks of
`evals.block`, each block written to the store before the next starts), so M jobs on M machines
train one experiment between them and a killed shard resumes where it stopped. A later job with `evals.train=false`
values the data from whatever shards exist: AME leaves out the samples that have no evaluation.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from ..types import PresampledMethod, TrainableGame
from .evals import EvalStore, fingerprint


def check_evals(evals: dict) -> tuple[int, int] | None:
    """Check the `evals` config before any training; (shard, n_shards) for a shard job, else None."""
    shard, n_shards = evals.get("shard"), evals.get("n_shards", 1)
    block = evals.get("block", 256)
    if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
        raise ValueError(f"evals.n_shards must be a positive integer, got {n_shards!r}")
    if shard is not None and (
        isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < n_shards
    ):
        raise ValueError(
            f"evals.shard must be an integer in [0, {n_shards - 1}] (evals.n_shards={n_shards}), "
            f"got {shard!r}"
        )
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"evals.block must be a positive integer, got {block!r}")
    if evals.get("dir") is None and (shard is not None or not evals.get("train", True)):
        raise ValueError("evals.shard and evals.train=false need a store: set evals.dir=FOLDER")
    if shard is not None and not evals.get("train", True):
        raise ValueError("a shard trains its evaluations: evals.shard needs evals.train=true")
    return None if shard is None else (shard, n_shards)


def attach_store(game, config: dict, evals: dict, job_dir: Path) -> None:
    """Keep `game`'s evaluations in the store of `evals.dir`: shard jobs write
    shard-IIII-of-MMMM, other jobs a file named by their folder."""
    if not isinstance(game, TrainableGame):
        raise ValueError(f"evals.dir needs a utility game that trains submodels, not {game!r}")
    store = EvalStore(evals["dir"], fingerprint(config), game.n_players)
    shard = check_evals(evals)
    if shard is not None:
        name = f"shard-{shard[0]:04d}-of-{shard[1]:04d}"
    else:
        name = "job-" + hashlib.sha1(str(Path(job_dir).resolve()).encode()).hexdigest()[:12]
    game.persist(store, name, train=evals.get("train", True))


def train_shard(method, game, seed: int, shard: tuple[int, int], block: int) -> int:
    """Evaluate shard `shard` = (i, M) of `method.samples(n, seed)` on `game`, `block` rows at a
    time (each stored before the next); returns the number of samples in the shard."""
    if not isinstance(method, PresampledMethod):
        raise ValueError(
            f"evals.shard: {type(method).__name__} does not draw its samples up front; "
            "shard ame or ame_sv (or ame_knockoff)"
        )
    masks = method.samples(game.n_players, seed)
    rows = np.array_split(np.arange(len(masks)), shard[1])[shard[0]]
    for part in np.array_split(rows, max(1, math.ceil(len(rows) / block))):
        if len(part):
            game(masks[part])
    return len(rows)
