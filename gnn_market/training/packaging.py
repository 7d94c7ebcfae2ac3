"""``--save-packaged``: install a run's ``model.pt`` as the packaged checkpoint, with its JSON sidecar."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from ..atomic import atomic_path, write_text_atomic
from ..checkpoint import PACKAGED_CHECKPOINT
from ..errors import CheckpointError, DataError
from ..version import __version__
from .config import PACKAGED_COMMAND, RESERVED_START, TrainConfig


def save_packaged(model_path: Path, metrics: dict[str, Any], cfg: TrainConfig,
                  target: Path = PACKAGED_CHECKPOINT) -> Path:
    """Copy ``model.pt`` to the packaged checkpoint ``target`` and write its JSON sidecar beside it.

    Refused unless the fit range (train + validation) ends before
    :data:`RESERVED_START`: those later hours belong to the RL environment.
    Both files are written atomically (temporary file + rename).
    """
    fold = metrics["split"]["folds"][-1]
    fit_end = pd.Timestamp(fold["val"]["range"][1])
    if fit_end >= RESERVED_START:
        raise DataError(f"--save-packaged: the fit range ends {fit_end}, but hours from {RESERVED_START} on are "
                        f"reserved for the RL environment; pass --end before that (e.g. --end 2023-08-31T23:00)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, CheckpointError) as tmp:
        shutil.copyfile(model_path, tmp)
    sidecar = {
        "file": target.name,
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
        "bytes": target.stat().st_size,
        "command": PACKAGED_COMMAND,
        "package_version": __version__,
        "data": cfg.store or cfg.data,
        "market": cfg.market,
        "symbols": metrics["split"]["symbols"],
        "threshold": cfg.threshold,
        "seed": cfg.seed,
        "fit_range": [fold["train"]["range"][0], fold["val"]["range"][1]],
        "split": fold,
        "model": {k: getattr(cfg, k) for k in ("hidden", "heads", "layers", "dropout", "top_k", "window",
                                               "lookback", "context", "lead_lag", "edge_gain",
                                               "current_skip", "context_inputs")},
        "reserved_for_rl": [RESERVED_START.isoformat(), "end of the sample"],
        "test": {name: {k: round(m[k], 4) for k in ("accuracy", "macro_f1", "mcc")}
                 for name, m in metrics["test"].items()},
    }
    write_text_atomic(target.with_suffix(".json"), json.dumps(sidecar, indent=2) + "\n", CheckpointError)
    return target
