"""The batched submodel engine: one submodel per coalition mask, B of them trained together.

- logreg (convex): each submodel minimises scikit-learn's objective C sum_i m_i CE_i + ||W||^2 / 2
  (mask = per-sample weights) to a gradient tolerance, by L-BFGS batched over the B models
  (bench/engine/convex.py), optionally warm-started from the full-data fit.
- networks (mlp, cnn, resnet9): a fixed number of minibatch SGD/Adam steps per submodel, as the AME
  paper trains its submodels (Lin et al., ICML 2022, Sec. 5). Parameters are stacked (B, ...) by
  `torch.func.stack_module_state`; each step is one forward/backward for all B models, by batched
  matmuls for MLPs (fast path) or `vmap(functional_call)` for any nn.Module (generic path). Model b
  draws its minibatches uniformly, with replacement, from its own coalition.

Instead of bool masks, rows may be non-negative sample weights w_b (e.g. bootstrap counts): logreg
then minimises C sum_i w_bi CE_i + ||W||^2 / 2 (scikit-learn's `sample_weight`), and a network draws
its minibatches from the points with w_bi > 0 and weighs each sampled loss by w_bi / mean_{w_bj > 0}
w_bj, so that it descends its weighted mean loss sum_i w_bi l_i / sum_i w_bi (for a mask: the plain
mean over its coalition). `fit` returns the trained parameters instead of predictions.

A submodel's randomness (initialisation, minibatches) is a function of (seed, mask) alone, and on CPU
its arithmetic too: every chunk runs on one thread (one chunk per core at a time) and logreg's
matmuls are row-invariant (`convex.rowwise_mm`), so a submodel's result is bitwise the same whatever
the batch, the chunk size, the thread count or the machine's load. B is cut into chunks that fit
`memory_mb` (bench/engine/chunks.py); a chunk that runs out of memory is retried at half size.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from ..types import check_masks
from .chunks import one_thread, run_chunks
from .convex import (
    PAD,
    LbfgsResult,
    LogregObjective,
    Preconditioner,
    lbfgs_logreg,
    nonzero_features,
    pad_rows,
)
from .models import ARCH_KEYS, IMAGE_MODELS, MLP, build_model, check_fits
from .randomness import draw_positions, mask_keys
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
        self._local = threading.local()
        template = self.new_model(0)
        self.activations = check_fits(template, self.input_shape, self.n_classes)
        self.n_params = sum(p.numel() for p in template.parameters())
        if not self.convex:
            fast = isinstance(template, MLP)
            if self.spec.path == "fast" and not fast:
                raise ValueError(f"model.path=fast needs an MLP (mlp, logreg); {self.name} is not")
            self.fast = fast if self.spec.path == "auto" else self.spec.path == "fast"
            self._template = template
        self.x = torch.as_tensor(np.asarray(x_train), dtype=self.dtype, device=self.device)
        self.y = torch.as_tensor(np.asarray(y_train), dtype=torch.long, device=self.device)
        if self.convex:  # all-zero features (constant, standardised) keep weight 0: left out
            self.features = nonzero_features(self.x.flatten(1))
            self.objective = LogregObjective(
                self.x.flatten(1)[:, self.features], self.y, self.n_classes
            )
            self._full_fit: torch.Tensor | None = None
            self._preconditioner: Preconditioner | None = None
        self.stats = {"models": 0, "seconds": 0.0, "iterations": 0, "not_converged": 0}

    # ---- public -----------------------------------------------------------------------------
    def new_model(self, key: int) -> torch.nn.Module:
        """A freshly initialised model, seeded by `key` (without touching the global RNG)."""
        with self._lock, torch.random.fork_rng(devices=[]):  # the global RNG, briefly
            torch.manual_seed(int(key))
            model = build_model(self.name, self.input_shape, self.n_classes, **self.arch)
        return model.to(self.dtype)

    def bytes_per_model(self, n_eval: int) -> int:
        """Estimated peak memory of one submodel's training and prediction."""
        item = torch.finfo(self.dtype).bits // 8
        n, k, p = len(self.y), self.n_classes, self.n_params
        if self.convex:
            return item * (n * (k + 6) + p * (2 * self.spec.history + 10) + n_eval * (k + 2))
        slots = {"adam": 2, "sgd": 1 if self.spec.momentum else 0}[self.spec.optimizer]
        per_sample = 3 * self.activations + int(np.prod(self.input_shape))
        return item * (p * (2 + slots) + self.spec.batch_size * per_sample + 2 * n_eval * k)

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
        if not self.convex and not self.fast:  # a chunk of one would be trained twice
            chunk = max(chunk, min(2, n_masks))
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
            if self.convex:
                if on_step is not None:
                    raise ValueError(
                        "logreg is solved by L-BFGS: it has no optimiser steps to report"
                    )
                with self._one_thread():
                    theta = self._train_convex(masks_t)
                return {"layers.0.weight": theta[..., :-1], "layers.0.bias": theta[..., -1]}
            params, _ = self._train_networks(masks_t, keys, on_step)
        return {k: v.detach() for k, v in params.items()}

    def fit_predict(
        self, masks: np.ndarray, x_eval: np.ndarray, on_chunk: Callable[[int], object] = None
    ) -> np.ndarray:
        """Class probabilities (B, m, K) on `x_eval` of one submodel per mask or weight row."""
        masks = check_weights(masks, len(self.y))
        x_eval = np.asarray(x_eval, dtype=np.float32)
        if x_eval.ndim < 2 or x_eval[0].size != int(np.prod(self.input_shape)):
            raise ValueError(
                f"evaluation inputs shaped {x_eval.shape} do not fit the model's inputs "
                f"{self.input_shape}"
            )
        x_eval_t = torch.as_tensor(x_eval.reshape(len(x_eval), *self.input_shape))
        x_eval_t = x_eval_t.to(self.device, self.dtype)
        keys = mask_keys(masks, self.seed)
        per_model = self.bytes_per_model(len(x_eval))
        budget = self.options.memory_mb * 2**20
        if per_model > budget:
            raise MemoryError(
                f"one {self.name} submodel needs about {per_model / 2**20:.1f} MiB, more than "
                f"model.memory_mb={self.options.memory_mb}; raise it or shrink the model/batch"
            )
        workers = torch.get_num_threads() if self.device.type == "cpu" else 1
        chunk = self.chunk_size(len(masks), len(x_eval), workers)
        if self.convex:
            with self._one_thread():
                self._start()  # once, before chunks run in parallel
        out = np.empty((len(masks), len(x_eval), self.n_classes))

        def fit(a: int, b: int) -> np.ndarray:
            with self._one_thread():
                return self.fit_predict_chunk(masks[a:b], keys[a:b], x_eval_t)

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
            )
        seconds = time.perf_counter() - t0
        with self._lock:
            self.stats["models"] += len(masks)
            self.stats["seconds"] += seconds
        log.info("%s: %d submodels on %s in %.2fs", self.name, len(masks), self.device, seconds)
        return out

    def fit_predict_chunk(
        self, masks: np.ndarray, keys: np.ndarray, x_eval: torch.Tensor
    ) -> np.ndarray:
        """One chunk: train its submodels together and predict; (b, m, K) probabilities."""
        if not self.convex and not self.fast and len(masks) == 1:
            # vmap over a single model runs other kernels (another rounding): train it twice
            return self.fit_predict_chunk(np.repeat(masks, 2, 0), np.repeat(keys, 2), x_eval)[:1]
        masks_t = torch.as_tensor(masks, device=self.device)
        if self.convex:
            return self._convex_chunk(masks_t, x_eval)
        return self._network_chunk(masks_t, torch.as_tensor(keys, device=self.device), x_eval)

    # ---- logreg -----------------------------------------------------------------------------
    def _solve(self, masks: torch.Tensor, theta0: torch.Tensor, pre=None) -> LbfgsResult:
        spec = self.spec
        return lbfgs_logreg(
            self.objective, masks.to(self.dtype), spec.C, theta0, spec.tol, spec.max_iter,
            spec.history, pre,
        )  # fmt: skip

    def _shape(self, b: int) -> tuple[int, int, int]:
        """Solver parameters of b models: (b, R, D), over the features kept, intercept last."""
        return b, self.objective.n_rows, len(self.features) + 1

    def _warm_start(self) -> torch.Tensor:
        """The full-data fit (1, R, D), solved once."""
        if self._full_fit is None:
            full = torch.ones((1, len(self.y)), dtype=torch.bool, device=self.device)
            self._full_fit = self._solve(full, self.x.new_zeros(self._shape(1))).theta
        return self._full_fit

    def _start(self) -> tuple[torch.Tensor, Preconditioner | None]:
        """The starting point (1, R, D) of every submodel and the preconditioner (built once, at
        that point), before chunks run in parallel."""
        theta0 = self._warm_start() if self.spec.warm_start else self.x.new_zeros(self._shape(1))
        if self.spec.precondition and self._preconditioner is None:
            self._preconditioner = Preconditioner(self.objective, theta0[0])
        return theta0, self._preconditioner

    def _convex_chunk(self, masks: torch.Tensor, x_eval: torch.Tensor) -> np.ndarray:
        theta = self._train_convex(masks)
        x1 = torch.cat([x_eval.flatten(1), torch.ones_like(x_eval[:, :1].flatten(1))], 1)
        logits = self.objective.logits(theta, pad_rows(x1, PAD).T)  # (K, b, m_pad), see PAD
        probs = torch.softmax(logits, 0)[:, :, : len(x1)]
        return probs.permute(1, 2, 0).double().cpu().numpy()

    def _train_convex(self, masks: torch.Tensor) -> torch.Tensor:
        """Fitted parameters theta (b, R, d + 1), intercept last (R = K, or 1 for two classes)."""
        theta0, pre = self._start()
        result = self._solve(masks, theta0.expand(self._shape(len(masks))), pre)
        with self._lock:
            self.stats["iterations"] += int(result.n_iter.sum())
            self.stats["not_converged"] += int((~result.converged).sum())
        theta = result.theta.new_zeros((len(masks), self.objective.n_rows, self.x[0].numel() + 1))
        theta[..., self.features] = result.theta[..., :-1]  # left-out features: weight 0
        theta[..., -1] = result.theta[..., -1]
        return theta

    # ---- networks ---------------------------------------------------------------------------
    def _forward(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        """Logits (b, N, K) of b stacked models on x (b, N, *input) or shared x (N, *input)."""
        if self.fast:
            h = x.flatten(-len(self.input_shape))
            n_layers = len(params) // 2
            for i in range(n_layers):
                weight, bias = params[f"layers.{i}.weight"], params[f"layers.{i}.bias"]
                h = torch.matmul(h, weight.mT) + bias[:, None, :]
                if i < n_layers - 1:
                    h = torch.relu(h)
            return h

        if not hasattr(
            self._local, "meta"
        ):  # functional_call swaps a module's tensors: one per thread
            self._local.meta = copy.deepcopy(self._template).to("meta")

        def one(p, b, xs):
            return functional_call(self._local.meta, (p, b), (xs,))

        shared = x.dim() == len(self.input_shape) + 1
        return vmap(one, in_dims=(0, 0, None if shared else 0))(params, buffers, x)

    def _network_chunk(
        self, masks: torch.Tensor, keys: torch.Tensor, x_eval: torch.Tensor
    ) -> np.ndarray:
        params, buffers = self._train_networks(masks, keys)
        with torch.no_grad(), self._autocast():  # eval points in blocks of a training batch
            logits = [
                self._forward(params, buffers, xb) for xb in x_eval.split(self.spec.batch_size)
            ]
        return torch.softmax(torch.cat(logits, 1).float(), -1).double().cpu().numpy()

    def _train_networks(self, masks: torch.Tensor, keys: torch.Tensor, on_step=None):
        """Stacked parameters and buffers of one network per mask or weight row, trained together."""
        spec = self.spec
        params, buffers = stack_module_state([self.new_model(k) for k in keys.tolist()])
        params = {k: v.to(self.device).detach().requires_grad_() for k, v in params.items()}
        buffers = {k: v.to(self.device) for k, v in buffers.items()}
        if spec.optimizer == "adam":
            opt = torch.optim.Adam(params.values(), lr=spec.lr, weight_decay=spec.weight_decay)
        else:
            opt = torch.optim.SGD(
                params.values(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay
            )
        support = masks > 0
        sizes = support.sum(1)
        members = torch.argsort((~support).to(torch.uint8), dim=1, stable=True)  # members first
        # Sampled losses weighted by w_i / (mean weight over the support): 1 for bool masks.
        scale = (
            None if masks.dtype == torch.bool else (masks * (sizes / masks.sum(1))[:, None]).float()
        )
        for step in range(int(spec.steps)):
            idx = members.gather(1, draw_positions(keys, step, int(spec.batch_size), sizes))
            with self._autocast():
                logits = self._forward(params, buffers, self.x[idx])
            # classes on dim 1 (b, K, batch): several times faster on CPU than K last
            logits = logits.float().transpose(1, 2)
            if scale is None:
                loss = F.cross_entropy(logits, self.y[idx], reduction="sum")
            else:  # sample weights: each sampled loss scaled (b, batch)
                losses = F.cross_entropy(logits, self.y[idx], reduction="none")
                loss = (losses * scale.gather(1, idx)).sum()
            opt.zero_grad(set_to_none=True)
            (loss / spec.batch_size).backward()  # sum over models of each model's mean loss
            opt.step()
            if on_step is not None:
                on_step(step, params)
        return params, buffers

    # ---- precision --------------------------------------------------------------------------
    def _autocast(self):
        enabled = self.device.type == "cuda" and getattr(self.spec, "bf16", False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _one_thread(self):
        """On CPU, one intra-op thread: sums split over threads depend on the thread count, and
        chunks give the cores work in parallel instead (see the module docstring)."""
        return one_thread() if self.device.type == "cpu" else nullcontext()

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
