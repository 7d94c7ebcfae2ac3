"""Resumable runs: every (seed, fold) result is saved under ``<out>/parts/`` as soon as it exists.

A long study (three years, 3 folds x 3 seeds is hours on 2 cores) then
survives an interruption: ``train --resume --out DIR`` with the same flags
loads the finished parts and trains only the missing ones. Parts are also how
one study is split over processes or machines: run ``--seeds 0``, ``--seeds 1``
and ``--seeds 2`` with ``--resume`` into the same ``--out`` (each writes only
its own parts), then ``--seeds 0 1 2 --resume`` assembles the full run from
the parts in seconds.

A part stores what the report needs from :class:`~.folds.FoldResult`: the
raw (uncalibrated) predictions of every model, the labels and hours, the
training curves, timings, the GNN's weights and the fold's normaliser.
Calibration is re-fitted from the stored validation predictions (it is
deterministic), so a resumed run equals an uninterrupted one. Each part
carries a key derived from the configuration (everything but the seed list,
output, threads, device and progress flags) and from the data (symbols, the
fold's hours); a part written under another key is refused, never mixed in.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..atomic import write_bytes_atomic
from ..errors import DataError
from ..model import GATv2Classifier, ModelConfig
from ..normalizer import FeatureNormalizer
from .config import TrainConfig
from .folds import FoldResult
from .loop import History
from .splits import Split

PART_VERSION = 2  # 2: the chosen node encoder and its validation scores
#: TrainConfig fields that do not change a fold's result (the seed is part of the file name).
NEUTRAL_FIELDS = frozenset({"seed", "seeds", "out", "threads", "progress", "device", "save_packaged", "resume",
                            "edge_memory_mb"})


def run_key(cfg: TrainConfig, symbols: list[str], times: pd.DatetimeIndex, split: Split) -> str:
    """SHA-256 of the result-defining configuration, the symbols and the fold's hours."""
    config = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in NEUTRAL_FIELDS}
    hours = {name: [str(times[idx[0]]), str(times[idx[-1]]), int(len(idx))]
             for name, idx in (("train", split.train), ("val", split.val), ("test", split.test))}
    text = json.dumps({"config": config, "symbols": list(symbols), "hours": hours}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def part_path(out: Path, seed: int, fold: int) -> Path:
    """``<out>/parts/seed<S>_fold<K>.pt`` (K counted from 1)."""
    return Path(out) / "parts" / f"seed{seed}_fold{fold + 1}.pt"


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def save_part(path: Path, result: FoldResult, key: str) -> None:
    """Write one fold's result atomically (a crash leaves the old file or none)."""
    payload = {
        "version": PART_VERSION,
        "key": key,
        "test": {name: [_tensor(y), _tensor(p)] for name, (y, p) in result.test.items()},
        "val": {name: [_tensor(y), _tensor(p)] for name, (y, p) in result.val.items()},
        "y_test": _tensor(result.y_test),
        "y_val": _tensor(result.y_val),
        "test_hours": None if result.test_hours is None else _tensor(result.test_hours),
        "val_hours": None if result.val_hours is None else _tensor(result.val_hours),
        "histories": {name: asdict(h) for name, h in result.histories.items()},
        "timings": {k: float(v) for k, v in result.timings.items()},
        "model_config": asdict(result.model.config),
        "model_state": result.model.state_dict(),
        "normalizer": result.normalizer.state_dict(),
        "encoder": result.encoder,
        "encoder_scores": result.encoder_scores,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())


def load_part(path: Path, key: str, split: Split) -> FoldResult | None:
    """The stored result for this fold, ``None`` when there is none yet.

    Raises :class:`DataError` for an unreadable part or one written by a
    different configuration or data (the user chooses: delete it or use another ``--out``).
    """
    if not path.exists():
        return None
    try:
        raw: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        if raw.get("version") != PART_VERSION:
            raise ValueError(f"part format {raw.get('version')!r}, expected {PART_VERSION}")
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise DataError(f"cannot read the saved fold result {path}: {exc}; delete it to recompute that fold") \
            from None
    if raw["key"] != key:
        raise DataError(f"{path} was written by a run with other settings or data; resume with the same flags, "
                        f"or use another --out")
    model = GATv2Classifier(ModelConfig.from_dict(raw["model_config"]))
    model.load_state_dict(raw["model_state"])
    model.eval()

    def preds(d: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {name: (y.numpy(), p.numpy()) for name, (y, p) in d.items()}

    hours, val_hours = raw["test_hours"], raw.get("val_hours")  # parts written before val_hours: None
    return FoldResult(split=split, test=preds(raw["test"]), val=preds(raw["val"]), y_test=raw["y_test"].numpy(),
                      y_val=raw["y_val"].numpy(), histories={n: History(**h) for n, h in raw["histories"].items()},
                      model=model, normalizer=FeatureNormalizer.from_state_dict(raw["normalizer"]),
                      timings=dict(raw["timings"]), test_hours=None if hours is None else hours.numpy(),
                      val_hours=None if val_hours is None else val_hours.numpy(), encoder=raw["encoder"],
                      encoder_scores=raw["encoder_scores"])
