"""The batched submodel engine: one submodel per coalition mask, B of them trained together.

`Engine` is the facade: it checks a conf/model dict, puts the training data on its device, cuts the
B masks into chunks that fit `memory_mb` (bench/engine/chunks.py; a chunk that runs out of memory is
retried at half size) and hands each chunk to the trainer it picked at construction:

- logreg (convex): `ConvexTrainer` (bench/engine/convex_trainer.py) solves scikit-learn's objective
  C sum_i m_i CE_i + ||W||^2 / 2 (mask = per-sample weights) to a gradient tolerance by L-BFGS
  batched over the models (bench/engine/lbfgs.py), optionally warm-started from the full-data fit.
- networks (mlp, cnn, resnet9): `NetworkTrainer` (bench/engine/network_trainer.py) takes a fixed
  number of minibatch SGD/Adam steps per submodel, all B models' parameters stacked, each model
  drawing its minibatches from its own coalition.

Instead of bool masks, rows may be non-negative sample weights w_b (e.g. bootstrap counts): each
model then minimises its w_b-weighted objective (see the trainers). `fit` returns the trained
parameters instead of predictions.

A submodel's randomness (initialisation, minibatches) is a function of (seed, mask) alone, and on CPU
its arithmetic too: every chunk runs on one thread (one chunk per core at a time) and logreg's
matmuls are row-invariant (`convex.rowwise_mm`), so a submodel's result is bitwise the same whatever
the batch, the chunk size, the thread count or the machine's load.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Protocol

import numpy as np
import torch

from ..types import check_masks
from .chunks import one_thread_on_cpu, run_chunks
from .convex import LogregObjective
from .convex_trainer import ConvexTrainer
from .models import ARCH_KEYS, IMAGE_MODELS, build_model, check_fits
from .network_trainer import NetworkTrainer
from .randomness import mask_keys
from .specs import DTYPES, ConvexSpec, NetworkSpec, Options, keys_of

log = logging.getLogger(__name__)
CPU_CHUNK_MB = 32  # default CPU chunk's training state: an L3 cache's size (results/perf/chunks.md)


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` -> CUDA when available, else CPU; an explicit CUDA device must exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:INDEX")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available; use auto or cpu")
    count = torch.cuda.device_count() if dev.type == "cuda" else 0
    if dev.type == "cuda" and dev.index is not None and dev.index >= count:
        raise ValueError(
            f"device {device!r} does not exist: this machine has {count} CUDA device(s), "
            f"cuda:0 to cuda:{count - 1}"
        )
    return dev


def check_weights(weights, n: int) -> np.ndarray:
    """Bool masks as `check_masks` gives them, or non-negative finite sample weights (B, n) as
    float64, each row with a positive sum; a ValueError naming what is wrong otherwise."""
    weights = np.asarray(weights)
    if weights.dtype == bool or weights.dtype.kind in "iu" and np.isin(weights, (0, 1)).all():
        return check_masks(weights, n)
    if weights.dtype.kind not in "iuf":
        raise ValueError(f"weights must be bool masks or numbers (B, {n}), got {weights.dtype}")
    weights = np.atleast_2d(weights).astype(np.float64)
    if weights.ndim != 2 or weights.shape[1] != n:
        raise ValueError(f"weights must have shape (B, {n}), got {weights.shape}")
    if not np.all(np.isfinite(weights)) or (weights < 0).any() or (weights.sum(1) <= 0).any():
        raise ValueError("sample weights must be finite, non-negative, with a positive sum per row")
    return np.ascontiguousarray(weights)


class Trainer(Protocol):
    """What the Engine delegates to its trainer (`ConvexTrainer` or `NetworkTrainer`). Masks are
    bool or float weight rows (b, n), keys the per-mask seeds (b,), both on the engine's device."""

    min_batch: int  # fewer models at once would run other kernels (another rounding)

    def bytes_per_model(self, n_eval: int) -> int: ...

    def prepare(self) -> None: ...  # shared state, built before chunks run in parallel threads

    def fit(self, masks: torch.Tensor, keys: torch.Tensor, on_step=None) -> dict: ...

    def fit_predict(
        self, masks: torch.Tensor, keys: torch.Tensor, x_eval: torch.Tensor
    ) -> np.ndarray: ...


class Engine:
    """Trains one submodel per mask and predicts class probabilities; see the module docstring.

    `model` is a conf/model/*.yaml dict: `name`, architecture keys, trainer keys (ConvexSpec for
    logreg, NetworkSpec otherwise) and Options. Every key is checked here, before any training.
    """

    def __init__(
        self,
        model: dict,
        x_train: np.ndarray,
        y_train: np.ndarray,
        n_classes: int,
        device: str = "auto",
        seed: int = 0,
    ) -> None:
        cfg = dict(model)
        self.name = cfg.pop("name", None)
        if self.name not in ARCH_KEYS:
            raise ValueError(f"unknown model {self.name!r}; available: {', '.join(ARCH_KEYS)}")
        self.convex = self.name == "logreg"
        spec_cls = ConvexSpec if self.convex else NetworkSpec
        allowed = (*ARCH_KEYS[self.name], *keys_of(spec_cls), *keys_of(Options))
        unknown = sorted(set(cfg) - set(allowed))
        if unknown:
            raise ValueError(
                f"model {self.name!r} has no key(s) {unknown}; its keys: {sorted(allowed)}"
            )
        self.spec = spec_cls(**{k: cfg[k] for k in keys_of(spec_cls) if k in cfg})
        self.options = Options(**{k: cfg[k] for k in keys_of(Options) if k in cfg})
        self.arch = {k: cfg[k] for k in ARCH_KEYS[self.name] if k in cfg}
        self.device, self.dtype = resolve_device(device), DTYPES[self.options.dtype]
        self.seed, self.n_classes = int(seed), int(n_classes)
        self.input_shape = tuple(np.shape(x_train)[1:])
        self._lock = threading.Lock()  # chunks may run in parallel threads (CPU)
        template = self.new_model(0)
        self.activations = check_fits(template, self.input_shape, self.n_classes)
        self.n_params = sum(p.numel() for p in template.parameters())
        self.x = torch.as_tensor(np.asarray(x_train), dtype=self.dtype, device=self.device)
        self.y = torch.as_tensor(np.asarray(y_train), dtype=torch.long, device=self.device)
        self.stats = {"models": 0, "seconds": 0.0, "iterations": 0, "not_converged": 0}
        self.trainer: Trainer = self._new_trainer(template)

    def _new_trainer(self, template: torch.nn.Module) -> Trainer:
        """`ConvexTrainer` for logreg, `NetworkTrainer` for the networks: with the spec class in
        `__init__`, the only places the facade tells them apart."""
        data = {"x": self.x, "y": self.y, "n_classes": self.n_classes, "n_params": self.n_params}
        if self.convex:
            return ConvexTrainer(self.spec, **data, record=self._count)
        return NetworkTrainer(
            self.spec, template=template, new_model=self.new_model, **data,
            activations=self.activations, name=self.name,
        )  # fmt: skip

    # ---- public -----------------------------------------------------------------------------
    @property
    def fast(self) -> bool:
        """Networks: trained by batched matmuls (MLPs), not by `vmap(functional_call)`."""
        return self.trainer.fast

    @property
    def objective(self) -> LogregObjective:
        """logreg: the L-BFGS objective, with its counts of evaluations and FLOPs."""
        return self.trainer.objective

    def new_model(self, key: int) -> torch.nn.Module:
        """A freshly initialised model, seeded by `key` (without touching the global RNG)."""
        with self._lock, torch.random.fork_rng(devices=[]):  # the global RNG, briefly
            torch.manual_seed(int(key))
            model = build_model(self.name, self.input_shape, self.n_classes, **self.arch)
        return model.to(self.dtype)

    def bytes_per_model(self, n_eval: int) -> int:
        """Estimated peak memory of one submodel's training and prediction."""
        return self.trainer.bytes_per_model(n_eval)

    def chunk_size(self, n_masks: int, n_eval: int, workers: int = 1) -> int:
        """Submodels per chunk: as many as fit `memory_mb`; on CPU also at most `cpu_chunk` or, by
        default, as many as keep a chunk's training state within CPU_CHUNK_MB (small problems run
        in large chunks, large ones stay cache-sized), cut into equal chunks, a multiple of
        `workers` of them. The chunk size never changes a result (module docstring), only speed."""
        per_model = self.bytes_per_model(n_eval)
        chunk = min(n_masks, int(self.options.memory_mb * 2**20 // per_model))
        if self.device.type == "cpu":
            cap = self.options.cpu_chunk or CPU_CHUNK_MB * 2**20 // self.bytes_per_model(0)
            rounds = -(-n_masks // (workers * max(1, min(chunk, int(cap)))))
            chunk = -(-n_masks // (workers * rounds))  # equal chunks, every round fills each core
        chunk = max(chunk, min(self.trainer.min_batch, n_masks))  # smaller ones: trained twice
        return max(chunk, 1)

    def fit(
        self, masks: np.ndarray, on_step: Callable[[int, dict], object] | None = None
    ) -> dict[str, torch.Tensor]:
        """Train one submodel per mask or weight row (B, n_train), all in one chunk, and return their
        parameters stacked (B, ...) under the names of `new_model()`'s parameters. For logreg those
        of a one-layer MLP with the objective's rows: K, or 1 for two classes (class 0's logit is
        0). Networks call `on_step(step, params)` after every optimiser step."""
        masks = check_weights(masks, len(self.y))
        keys = torch.as_tensor(mask_keys(masks, self.seed), device=self.device)
        masks_t = torch.as_tensor(masks, device=self.device)
        with self._precision():
            return self.trainer.fit(masks_t, keys, on_step)

    def fit_predict(
        self, masks: np.ndarray, x_eval: np.ndarray, on_chunk: Callable[[int], object] = None
    ) -> np.ndarray:
        """Class probabilities (B, m, K) on `x_eval` of one submodel per mask or weight row, in the
        engine's dtype (float32 by default: a float64 array would only widen them, 1.06 GB at
        83,000 masks x 800 points x 2 classes)."""
        masks = check_weights(masks, len(self.y))
        x_eval_t = self._eval_inputs(x_eval)
        keys = mask_keys(masks, self.seed)
        per_model = self.bytes_per_model(len(x_eval_t))
        budget = self.options.memory_mb * 2**20
        if per_model > budget:
            raise MemoryError(
                f"one {self.name} submodel needs about {per_model / 2**20:.1f} MiB, more than "
                f"model.memory_mb={self.options.memory_mb}; raise it or shrink the model/batch"
            )
        workers = torch.get_num_threads() if self.device.type == "cpu" else 1
        chunk = self.chunk_size(len(masks), len(x_eval_t), workers)
        self.trainer.prepare()  # once, before chunks run in parallel
        dtype = torch.empty(0, dtype=self.dtype).numpy().dtype
        out = np.empty((len(masks), len(x_eval_t), self.n_classes), dtype=dtype)
        # smallest coalitions first: logreg's take the most iterations, and chunks of like sizes
        # stop together (a chunk's L-BFGS runs as long as its slowest model)
        order = np.argsort(masks.sum(1), kind="stable")

        def fit(a: int, b: int) -> np.ndarray:
            rows = order[a:b]
            with one_thread_on_cpu(self.device):  # see the module docstring
                return self.fit_predict_chunk(masks[rows], keys[rows], x_eval_t)

        t0 = time.perf_counter()
        with self._precision():
            run_chunks(
                fit,
                out,
                max(chunk, 1),
                workers,
                f"one {self.name} submodel does not fit in memory on {self.device}: it needs "
                f"about {per_model / 2**20:.1f} MiB",
                on_chunk,
                torch.cuda.empty_cache if self.device.type == "cuda" else None,
                order,
            )
        seconds = time.perf_counter() - t0
        self._count(models=len(masks), seconds=seconds)
        log.info("%s: %d submodels on %s in %.2fs", self.name, len(masks), self.device, seconds)
        return out

    def fit_predict_chunk(
        self, masks: np.ndarray, keys: np.ndarray, x_eval: torch.Tensor
    ) -> np.ndarray:
        """One chunk: train its submodels together and predict; (b, m, K) probabilities."""
        copies = self.trainer.min_batch
        if 0 < len(masks) < copies:  # too few to batch as the others: train copies, keep one
            again = self.fit_predict_chunk(
                np.repeat(masks, copies, 0), np.repeat(keys, copies), x_eval
            )
            return again[::copies]
        masks_t = torch.as_tensor(masks, device=self.device)
        keys_t = torch.as_tensor(keys, device=self.device)
        return self.trainer.fit_predict(masks_t, keys_t, x_eval)

    # ---- helpers ----------------------------------------------------------------------------
    def _eval_inputs(self, x_eval: np.ndarray) -> torch.Tensor:
        """Evaluation inputs shaped as the model's, on its device and in its dtype."""
        x_eval = np.asarray(x_eval, dtype=np.float32)
        if x_eval.ndim < 2 or x_eval[0].size != int(np.prod(self.input_shape)):
            raise ValueError(
                f"evaluation inputs shaped {x_eval.shape} do not fit the model's inputs "
                f"{self.input_shape}"
            )
        x_eval_t = torch.as_tensor(x_eval.reshape(len(x_eval), *self.input_shape))
        return x_eval_t.to(self.device, self.dtype)

    def _count(self, **counts) -> None:
        """Add to `stats`, under the lock: chunks may run in parallel threads."""
        with self._lock:
            for key, value in counts.items():
                self.stats[key] += value

    @contextmanager
    def _precision(self):
        """TF32 on or off for CUDA matmuls and convolutions while the engine runs (then restored)."""
        if self.device.type != "cuda":
            yield
            return
        old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.options.tf32
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def engine_for(model: dict, split, device: str = "auto", seed: int = 0) -> Engine:
    """The Engine of `model` (a conf/model dict) on a datasets.Split's training points: the one step
    from a split to engine inputs (image models see `split.as_images()`, the others `as_flat()`)."""
    data = split.as_images() if model.get("name") in IMAGE_MODELS else split.as_flat()
    return Engine(model, data.x_train, data.y_train, split.n_classes, device, seed)
