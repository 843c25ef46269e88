"""Running the engine's submodels in chunks: memory-sized, retried smaller when memory runs out, and
on CPU one chunk per core at a time.

Parallel chunks on single-threaded workers use a multi-core CPU better than intra-op threads for the
engine's many small operations, and do not stall when other processes busy the cores.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext

import numpy as np
import torch

log = logging.getLogger("valbench.engine")


def is_out_of_memory(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(err, RuntimeError)
        and ("out of memory" in text or "can't allocate memory" in text)
    )


@contextmanager
def one_thread():
    """torch's intra-op parallelism off (one thread) inside the block, restored after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def one_thread_on_cpu(device: torch.device) -> AbstractContextManager:
    """`one_thread()` on CPU, where sums split over threads depend on the thread count (chunks give
    the cores work in parallel instead); nothing on a GPU."""
    return one_thread() if device.type == "cpu" else nullcontext()


def run_chunks(
    fit: Callable[[int, int], np.ndarray],
    out: np.ndarray,
    chunk: int,
    workers: int = 1,
    too_big: str = "one submodel does not fit in memory",
    on_chunk: Callable[[int], object] | None = None,
    release: Callable[[], object] | None = None,
    order: np.ndarray | None = None,
) -> None:
    """out[a:b] = fit(a, b), or out[order[a:b]] with an `order` of out's rows, over chunks of at
    most `chunk` rows on `workers` threads, each taking
    the next chunk as soon as it is free (chunks differ in cost: submodels of few points need more
    L-BFGS iterations; no worker waits for another's chunk to end); finished chunks are written
    and reported (`on_chunk`) in order.

    Chunks that run out of memory are retried, with the rows not done yet, in chunks half as big
    (after `release`, e.g. emptying the CUDA cache); out of memory at chunk size 1 raises
    MemoryError(too_big).
    """
    todo = [(0, len(out))]
    while todo:
        bounds = [(a, min(a + chunk, end)) for start, end in todo for a in range(start, end, chunk)]
        done, error = _run(
            fit, out if order is None else _Rows(out, order), bounds, workers, on_chunk
        )
        if error is None:
            return
        if not is_out_of_memory(error):
            raise error
        if chunk == 1:
            raise MemoryError(too_big) from error
        finished = set(done)
        todo = [ab for ab in bounds if ab not in finished]
        chunk //= 2
        log.warning("out of memory; retrying with chunks of %d submodels", chunk)
        error = None  # the failed chunk's tensors are freed (its traceback held them)
        if release is not None:
            release()


def _run(fit, out, bounds, workers, on_chunk) -> tuple[list, BaseException | None]:
    """fit every (a, b) of `bounds` into out[a:b]: the bounds done, in order, and the first
    error (None if none; the chunks after it are not written)."""
    done = []
    if workers == 1 or len(bounds) == 1:
        for a, b in bounds:
            try:
                part = fit(a, b)
            except Exception as err:
                return done, err
            _write(out, a, b, part, on_chunk, done)
        return done, None
    with one_thread(), ThreadPoolExecutor(min(workers, len(bounds))) as pool:
        futures = [pool.submit(fit, a, b) for a, b in bounds]
        for (a, b), future in zip(bounds, futures, strict=True):
            try:
                part = future.result()
            except Exception as err:
                for waiting in futures:
                    waiting.cancel()
                return done, err
            _write(out, a, b, part, on_chunk, done)
    return done, None


def _write(out, a: int, b: int, part, on_chunk, done: list) -> None:
    out[a:b] = part
    done.append((a, b))
    if on_chunk is not None:
        on_chunk(b - a)


class _Rows:
    """out seen through an order of its rows: rows[a:b] = part writes out[order[a:b]]."""

    def __init__(self, out: np.ndarray, order: np.ndarray) -> None:
        self.out, self.order = out, order

    def __setitem__(self, rows: slice, part) -> None:
        self.out[self.order[rows]] = part
