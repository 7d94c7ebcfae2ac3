"""What machine a result came from: recorded beside every published number.

Training on CPU is bit-reproducible on one machine only: another CPU, thread
count or torch build rounds differently, and a network trained for minutes
amplifies that (docs/results.md). So every ``metrics.json`` and benchmark row
carries :func:`machine_info`, and a comparison across machines is read as two
draws, not as a reproduction.
"""
from __future__ import annotations

import os
import platform
from functools import lru_cache
from typing import Any


def _cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux; ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    import numpy as np
    import torch

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """``{"cpu", "logical_cores", "os", "python", "torch", "numpy", "cuda", "threads"}`` of this process.

    ``threads`` is the torch thread count used (default: ``torch.get_num_threads()`` now).
    """
    import torch

    return {**_static(), "threads": int(threads if threads is not None else torch.get_num_threads())}
