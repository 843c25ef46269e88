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
) -> None:
    """out[a:b] = fit(a, b) over chunks of at most `chunk` rows, `workers` chunks at a time.

    A round of chunks that runs out of memory is retried with chunks half as big (after `release`,
    e.g. emptying the CUDA cache); out of memory at chunk size 1 raises MemoryError(too_big).
    """
    n, start = len(out), 0
    while start < n:
        ends = range(start, min(n, start + workers * chunk), chunk)
        bounds = [(a, min(a + chunk, n)) for a in ends]
        try:
            parts = _map(fit, bounds)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            if chunk == 1:
                raise MemoryError(too_big) from err
            chunk //= 2
            log.warning("out of memory; retrying with chunks of %d submodels", chunk)
        else:
            for (a, b), part in zip(bounds, parts, strict=True):
                out[a:b] = part
                if on_chunk is not None:
                    on_chunk(b - a)
            start = bounds[-1][1]
            continue
        if release is not None:  # out of the handler: the failed round's tensors are freed
            release()


def _map(fit, bounds: list[tuple[int, int]]) -> list[np.ndarray]:
    if len(bounds) == 1:
        return [fit(*bounds[0])]
    with one_thread(), ThreadPoolExecutor(len(bounds)) as pool:
        return list(pool.map(lambda ab: fit(*ab), bounds))
