"""Where a run happened: device and machine descriptions and package versions, for result records."""

from __future__ import annotations

import os
import platform
import sys
from functools import cache


def device_name(device: str = "cpu") -> str:
    """'cpu (N cores: MODEL)' or 'cuda:i (GPU NAME)'."""
    if str(device).startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({os.cpu_count()} cores: {cpu_model()})"


@cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@cache
def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("valbench", "numpy", "scikit-learn", "torch", "hydra-core"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out
