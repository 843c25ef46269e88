"""A persistent store of game evaluations, so that submodel training can be sharded and resumed.

A store is a folder of files, one per writer (a shard of a sweep, or one job), each an NPZ with the
evaluations that writer made: `masks` (B, ceil(n / 8)) packed bits, `values` (B,) or (B, Q), and
the `fingerprint` of the problem that produced them (a hash of the dataset, corruption, model,
utility and seed configs: whatever decides a submodel's training and score). Readers take the union
of every file. A file that does not read back whole (truncated, not an NPZ) or that carries another
fingerprint is refused with its path, never silently mixed in. Writers replace their own file
atomically (store/records.py), so a killed job leaves its last complete file behind and a rerun
resumes from it.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from .keys import defines_problem
from .records import as_stored, flatten, write_atomic

SUFFIX = ".evals.npz"


def fingerprint(config: dict) -> str:
    """SHA-256 of the keys of a (nested) run config that fix the game (`defines_problem`)."""
    parts = {k: v for k, v in flatten(as_stored(config)).items() if defines_problem(k)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class EvalStore:
    """The evaluations of one problem (by `fingerprint`) under `folder`/<fingerprint[:16]>/."""

    def __init__(self, folder, fingerprint: str, n_players: int) -> None:
        self.fingerprint, self.n_players = fingerprint, int(n_players)
        self.folder = Path(folder) / fingerprint[:16]

    def path(self, name: str) -> Path:
        return self.folder / f"{name}{SUFFIX}"

    def read(self, path: Path) -> dict[bytes, np.ndarray]:
        """One file's evaluations {packed mask: value}; a ValueError naming the file when it is
        truncated or corrupt, from another problem, or of another number of players."""
        try:
            with np.load(path, allow_pickle=False) as data:
                fp, n = str(data["fingerprint"]), int(data["n_players"])
                masks, values = data["masks"], data["values"]
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as err:
            raise ValueError(
                f"evaluation file {path} is truncated or corrupt ({type(err).__name__}: {err}); "
                "delete it to recompute its evaluations"
            ) from err
        if fp != self.fingerprint:
            raise ValueError(
                f"evaluation file {path} was written for another problem (fingerprint {fp[:16]}, "
                f"this run's is {self.fingerprint[:16]}): dataset, corruption, model, utility or "
                "seed differ; move it out of the store"
            )
        if n != self.n_players or len(masks) != len(values) or masks.shape[1:] != (-(-n // 8),):
            raise ValueError(
                f"evaluation file {path} holds masks {masks.shape} and values {values.shape} for "
                f"{n} players; this problem has {self.n_players}: it is corrupt, delete it"
            )
        return {m.tobytes(): v for m, v in zip(masks, values, strict=True)}

    def load(self) -> dict[bytes, np.ndarray]:
        """Every file's evaluations, merged."""
        merged: dict[bytes, np.ndarray] = {}
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            merged.update(self.read(path))
        return merged

    def write(self, name: str, evaluations: dict[bytes, np.ndarray]) -> Path:
        """Replace file `name` with `evaluations` {packed mask: value}, atomically."""
        keys = list(evaluations)
        masks = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(
            len(keys), -(-self.n_players // 8)
        )
        buf = io.BytesIO()
        np.savez(
            buf,
            fingerprint=np.array(self.fingerprint),
            n_players=np.array(self.n_players),
            masks=masks,
            values=np.stack([evaluations[k] for k in keys]) if keys else np.zeros(0),
        )
        path = self.path(name)
        write_atomic(path, buf.getvalue())
        return path
