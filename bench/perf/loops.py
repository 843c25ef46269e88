"""The loops a user would write instead of the engine, for `python -m valbench.perf engine`: a plain
scikit-learn fit per mask on one BLAS thread, and the same loop spread over every core by joblib.

The code timed is exactly `fit_score` below (scikit-learn's defaults but max_iter), run as

    with threadpool_limits(1):                                  # (a) one thread
        scores = [fit_score(x[m], y[m], x_val, y_val) for m in masks]
    scores = Parallel(n_jobs=N)(delayed(fit_score)(x[m], y[m], x_val, y_val) for m in masks)  # (b)

joblib's loky workers run one BLAS thread each (n_jobs = N of N cores). Both are warmed up (imports,
the worker pool) on a few masks before they are timed, as the engine is.
"""

from __future__ import annotations

import inspect
import time
from typing import NamedTuple

import joblib
import numpy as np
import sklearn
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits


def fit_score(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> float:
    """Validation accuracy of scikit-learn's default LogisticRegression fitted on (x, y)."""
    return LogisticRegression(max_iter=1000).fit(x, y).score(x_val, y_val)


ONE_THREAD_CODE = (
    "with threadpool_limits(1): "
    "[fit_score(x[m], y[m], x_val, y_val) for m in masks]"
)  # fmt: skip
JOBLIB_CODE = (
    "Parallel(n_jobs={n_jobs})(delayed(fit_score)(x[m], y[m], x_val, y_val) for m in masks)"
)
FIT_SCORE_CODE = inspect.getsource(fit_score).split('"""')[-1].strip().removeprefix("return ")


class LoopTiming(NamedTuple):
    """Wall and process CPU seconds of one loop over the masks, and its accuracies (B,)."""

    seconds: float
    cpu_seconds: float  # this process only: joblib's workers are other processes
    accuracy: np.ndarray


def one_thread_loop(x, y, x_val, y_val, masks: np.ndarray) -> np.ndarray:
    """(a): fit_score per mask, one after the other, on one BLAS thread."""
    with threadpool_limits(1):
        return np.array([fit_score(x[m], y[m], x_val, y_val) for m in masks])


def joblib_loop(x, y, x_val, y_val, masks: np.ndarray, n_jobs: int) -> np.ndarray:
    """(b): fit_score per mask in `n_jobs` joblib worker processes (loky, one BLAS thread each)."""
    jobs = (delayed(fit_score)(x[m], y[m], x_val, y_val) for m in masks)
    return np.array(Parallel(n_jobs=n_jobs)(jobs))


def time_loop(loop, *args, warm_up: int = 4, **kwargs) -> LoopTiming:
    """Time `loop(x, y, x_val, y_val, masks, ...)` once, after a warm-up on the first masks."""
    x, y, x_val, y_val, masks = args
    loop(x, y, x_val, y_val, masks[:warm_up], **kwargs)
    t0, cpu0 = time.perf_counter(), time.process_time()
    accuracy = loop(x, y, x_val, y_val, masks, **kwargs)
    return LoopTiming(time.perf_counter() - t0, time.process_time() - cpu0, accuracy)


def grid_masks(n_masks: int, n: int, ps: list[float], seed: int) -> np.ndarray:
    """(n_masks, n) random masks, in equal blocks at inclusion probabilities `ps` (the last block
    takes the remainder), every point drawn independently."""
    if not ps or not all(0 < p <= 1 for p in ps):
        raise ValueError(f"inclusion probabilities must lie in (0, 1], got {ps!r}")
    rng = np.random.default_rng(seed)
    p = np.asarray(ps)[np.minimum(np.arange(n_masks) * len(ps) // max(n_masks, 1), len(ps) - 1)]
    return rng.random((n_masks, n)) < p[:, None]


def loop_columns(split, masks: np.ndarray, engine_seconds: float, engine_probs, n_jobs: int):
    """The engine's speed and mean validation accuracy against loops (a) and (b) on `masks`."""
    data = (split.x_train.reshape(split.n_train, -1), split.y_train,
            split.x_val.reshape(len(split.x_val), -1), split.y_val)  # fmt: skip
    single = time_loop(one_thread_loop, *data, masks)
    spread = time_loop(joblib_loop, *data, masks, n_jobs=n_jobs)
    if not np.array_equal(single.accuracy, spread.accuracy):
        raise RuntimeError("the joblib loop's fits differ from the one-thread loop's")
    engine_rate = len(masks) / engine_seconds
    engine_acc = float((engine_probs.argmax(-1) == split.y_val).mean())
    plain_acc = float(single.accuracy.mean())
    return {
        "loop_models_per_s": float(f"{len(masks) / single.seconds:.4g}"),
        "joblib_jobs": n_jobs,
        "joblib_models_per_s": float(f"{len(masks) / spread.seconds:.4g}"),
        "speedup_vs_joblib": round(engine_rate * spread.seconds / len(masks), 2),
        "speedup_vs_loop": round(engine_rate * single.seconds / len(masks), 2),
        "engine_accuracy": round(engine_acc, 5),
        "loop_accuracy": round(plain_acc, 5),
        "accuracy_diff": round(engine_acc - plain_acc, 5),
        "loop_cpu_seconds": round(single.cpu_seconds, 3),
        "sklearn": sklearn.__version__,
        "joblib": joblib.__version__,
        "loop_code": f"fit_score = lambda x, y, x_val, y_val: {FIT_SCORE_CODE}; "
        f"(a) {ONE_THREAD_CODE}; (b) {JOBLIB_CODE.format(n_jobs=n_jobs)}",
    }
