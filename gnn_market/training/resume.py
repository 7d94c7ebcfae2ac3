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
deterministic), so a resumed run equals an uninterrupted one.

**The key.** Each part carries the components of its key (:func:`part_key`):
the result-defining configuration (everything but the seed list, output,
threads, device and progress flags, and where the data are), the training seed, the synthetic
market's seed, a fingerprint of the market's *values* (:func:`data_fingerprint`),
the fold's hours and the code version (package and part format). A part whose
key differs (other flags, another seed, a changed or grown store, other code)
is refused with one line naming what differs, never mixed in.

**The contents.** A part is a file anyone can edit, copy or rename, so it is
validated like a checkpoint before use (:func:`part_problem`): every field
present with its type, seed and fold equal to its file name's, labels and
hours equal to the current data's, predictions, weights and normaliser finite
and of the shapes this configuration gives. A part that fails is refused with
one line naming the file and the problem; nothing is retrained silently over it.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..atomic import write_bytes_atomic
from ..checkpoint import normalizer_problem
from ..classes import IGNORE_INDEX
from ..errors import DataError
from ..model import GATv2Classifier, ModelConfig
from ..normalizer import FeatureNormalizer
from ..pipeline import MarketData
from ..version import __version__
from .config import TrainConfig
from .folds import FoldResult, model_config_of
from .graphs import graph_config
from .loop import History
from .splits import Split

PART_VERSION = 4  # 3: key components (seed, data fingerprint, code version), seed and fold; validated on load
#                  4: the no-edge ablation's own encoder choice (no_edges_encoder)
#: TrainConfig fields that do not change a fold's result. The training seed is a key component of its own,
#: and the data are keyed by their values, not by where they are: a study moved to another machine, with
#: its store at another path, resumes.
NEUTRAL_FIELDS = frozenset({"seed", "seeds", "out", "threads", "progress", "device", "save_packaged", "resume",
                            "edge_memory_mb", "store", "data"})
#: Why a key component differs, as the refusal says it.
KEY_REASONS = {
    "config": "other result-defining settings (flags)",
    "seed": "another training seed",
    "market_seed": "another --seed for the synthetic market",
    "data": "other market data (the stored values changed)",
    "hours": "other fold hours (the store grew or shrank, or --start/--end changed)",
    "code": "another code version",
}
CLASSES = 3


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def data_fingerprint(market: MarketData) -> str:
    """SHA-256 of every value of the market's panel: its arrays (bytes, dtype, shape), hours, symbols, market.

    Features and labels are functions of these and of the configuration (also in the key).
    One pass over the raw buffers, computed once per ``--resume`` run: 450 pairs x 3 years are
    about 1.2 GB of arrays, about a second (SHA-256 ran at 1.5 GB/s on the 2-core box).
    """
    digest = hashlib.sha256()
    panel = market.panel
    for f in fields(panel):
        value = getattr(panel, f.name)
        if isinstance(value, pd.DatetimeIndex):
            value = value.asi8
        digest.update(f.name.encode())
        if isinstance(value, np.ndarray):
            value = np.ascontiguousarray(value)
            digest.update(f"{value.dtype.str}{value.shape}".encode())
            digest.update(memoryview(value).cast("B"))
        else:
            digest.update(json.dumps(value, default=str).encode())
    return digest.hexdigest()


def part_key(cfg: TrainConfig, seed: int, fingerprint: str, times: pd.DatetimeIndex, split: Split) -> dict[str, str]:
    """The components of a (seed, fold) part's key, each a short string (see the module docstring).

    ``cfg`` is the run's configuration (its ``seed`` is the market seed for ``--data synthetic``);
    ``seed`` the training seed; ``fingerprint`` :func:`data_fingerprint` of the run's market.
    """
    config = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in NEUTRAL_FIELDS}
    hours = {name: [str(times[idx[0]]), str(times[idx[-1]]), int(len(idx)), _digest(np.asarray(idx).tolist())]
             for name, idx in (("train", split.train), ("val", split.val), ("test", split.test))}
    synthetic = cfg.store is None and cfg.data == "synthetic"  # only then does --seed draw the data
    return {"config": _digest(config), "seed": str(int(seed)),
            "market_seed": str(int(cfg.seed)) if synthetic else "-",
            "data": fingerprint, "hours": _digest(hours), "code": f"{__version__}/part{PART_VERSION}"}


def key_digest(components: dict[str, str]) -> str:
    """SHA-256 of a key's components (the part's ``key`` field)."""
    return _digest(components)


@dataclass(frozen=True)
class PartSpec:
    """What the part of one (seed, fold) of this run must hold: its key and the fold's labelled rows."""

    seed: int
    fold: int                      # counted from 0
    key: dict[str, str]            # :func:`part_key`
    split: Split
    y_val: np.ndarray              # [M_val] classes of the fold's labelled validation rows
    val_hours: np.ndarray          # [M_val] their hours
    y_test: np.ndarray             # [M_test]
    test_hours: np.ndarray         # [M_test]
    feature_names: tuple[str, ...]
    cfg: TrainConfig


def labelled_hours(market: MarketData, hours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y [M], hour [M])`` of the labelled nodes of ``hours``, hour by hour, pairs in panel order:
    the rows and order of :func:`.graphs.labelled_rows` (what a fold's ``y_val``/``y_test`` hold)."""
    hours = np.asarray(hours, dtype=np.int64)
    labels = market.require_labels().classes[hours]
    h_idx, pair = np.nonzero(labels != IGNORE_INDEX)
    return labels[h_idx, pair].astype(np.int64), hours[h_idx]


def part_spec(cfg: TrainConfig, market: MarketData, split: Split, seed: int, fold: int,
              fingerprint: str | None = None) -> PartSpec:
    """The :class:`PartSpec` of training seed ``seed``, fold ``fold`` (from 0) of a run on ``market``.

    ``fingerprint``: :func:`data_fingerprint` of ``market``, computed here when not given (once per run).
    """
    fingerprint = data_fingerprint(market) if fingerprint is None else fingerprint
    y_val, val_hours = labelled_hours(market, split.val)
    y_test, test_hours = labelled_hours(market, split.test)
    return PartSpec(seed=int(seed), fold=int(fold), key=part_key(cfg, seed, fingerprint, market.times, split),
                    split=split, y_val=y_val, val_hours=val_hours, y_test=y_test, test_hours=test_hours,
                    feature_names=tuple(market.features.names), cfg=cfg)


def part_path(out: Path, seed: int, fold: int) -> Path:
    """``<out>/parts/seed<S>_fold<K>.pt`` (K counted from 1)."""
    return Path(out) / "parts" / f"seed{seed}_fold{fold + 1}.pt"


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def save_part(path: Path, result: FoldResult, spec: PartSpec) -> None:
    """Write one fold's result atomically (a crash or a full disk leaves the old file or none)."""
    payload = {
        "version": PART_VERSION,
        "key": key_digest(spec.key),
        "key_parts": dict(spec.key),
        "seed": spec.seed,
        "fold": spec.fold,
        "test": {name: [_tensor(y), _tensor(p)] for name, (y, p) in result.test.items()},
        "val": {name: [_tensor(y), _tensor(p)] for name, (y, p) in result.val.items()},
        "y_test": _tensor(result.y_test),
        "y_val": _tensor(result.y_val),
        "test_hours": _tensor(result.test_hours),
        "val_hours": _tensor(result.val_hours),
        "histories": {name: asdict(h) for name, h in result.histories.items()},
        "timings": {k: float(v) for k, v in result.timings.items()},
        "model_config": asdict(result.model.config),
        "model_state": result.model.state_dict(),
        "normalizer": result.normalizer.state_dict(),
        "encoder": result.encoder,
        "encoder_scores": result.encoder_scores,
        "no_edges_encoder": result.no_edges_encoder,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    advice = "free space (or fix the folder) and rerun with --resume: finished folds are kept"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, buffer.getvalue(), DataError)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}; {advice}") from None
    except DataError as exc:  # write_bytes_atomic's one line, naming the file
        raise DataError(f"{exc}; {advice}") from None


#: Every field of a part and its type(s); checked before any value is used.
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "key": str, "key_parts": dict, "seed": int, "fold": int, "test": dict, "val": dict,
    "y_test": torch.Tensor, "y_val": torch.Tensor, "test_hours": torch.Tensor, "val_hours": torch.Tensor,
    "histories": dict, "timings": dict, "model_config": dict, "model_state": dict, "normalizer": dict,
    "encoder": str, "encoder_scores": (dict, type(None)), "no_edges_encoder": (str, type(None)),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _key_problem(raw: dict[str, Any], spec: PartSpec) -> str | None:
    if (raw["seed"], raw["fold"]) != (spec.seed, spec.fold):
        return (f"it holds seed {raw['seed']} fold {raw['fold'] + 1}, not seed {spec.seed} fold {spec.fold + 1} "
                f"as its name says (copied or renamed)")
    stored = raw["key_parts"]
    if raw["key"] != key_digest(stored) or set(stored) != set(spec.key):
        return "its key does not match its key components (edited)"
    differ = [name for name in spec.key if stored[name] != spec.key[name]]
    if differ:
        return "it was written by a run with " + ", ".join(KEY_REASONS.get(n, n) for n in differ)
    return None


def _rows_problem(raw: dict[str, Any], spec: PartSpec) -> str | None:
    """Labels and hours equal to the current data's; every model's predictions of those rows, finite."""
    for split_name in ("val", "test"):
        for field, want in ((f"y_{split_name}", getattr(spec, f"y_{split_name}")),
                            (f"{split_name}_hours", getattr(spec, f"{split_name}_hours"))):
            got = raw[field].numpy()
            if got.shape != want.shape or not np.array_equal(got, want):
                return (f"its {field} ({len(got)} rows) differs from the current data's ({len(want)} rows)"
                        if got.shape != want.shape else f"its {field} differs from the current data's "
                        f"({int((got != want).sum())} of {len(want)} rows)")
        preds, m = raw[split_name], len(getattr(spec, f"y_{split_name}"))
        if "gnn" not in preds:
            return f"its {split_name} predictions have no 'gnn' entry"
        for name, pair in preds.items():
            problem = _prediction_problem(pair, m)
            if problem:
                return f"its {split_name} predictions of {name!r} {problem}"
    if set(raw["val"]) != set(raw["test"]):
        return "its validation and test predictions name different models"
    return None


def _prediction_problem(pair: Any, rows: int) -> str | None:
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(t, torch.Tensor) for t in pair)):
        return "are not [classes, probabilities] tensors"
    classes, probs = pair
    if tuple(classes.shape) != (rows,) or tuple(probs.shape) != (rows, CLASSES):
        return f"have shapes {tuple(classes.shape)} and {tuple(probs.shape)}, not ({rows},) and ({rows}, {CLASSES})"
    if not probs.is_floating_point() or not bool(torch.isfinite(probs).all()):
        return "hold non-finite probabilities (NaN or inf)"
    if bool(((probs < 0) | (probs > 1)).any()) or bool(((classes < 0) | (classes >= CLASSES)).any()):
        return "hold probabilities outside [0, 1] or classes outside 0-2"
    return None


def _model_problem(raw: dict[str, Any], spec: PartSpec) -> str | None:
    """The GNN's config is this run's, its weights finite and of that config's shapes."""
    cfg, stored = spec.cfg, raw["model_config"]
    if raw["encoder"] not in ("temporal", "snapshot"):
        return f"its encoder {raw['encoder']!r} is not 'temporal' or 'snapshot'"
    if raw["no_edges_encoder"] not in ("temporal", "snapshot", None):
        return f"its no-edge encoder {raw['no_edges_encoder']!r} is not 'temporal', 'snapshot' or None"
    want = asdict(model_config_of(cfg, len(spec.feature_names)))
    want["lookback"] = cfg.lookback if raw["encoder"] == "temporal" else 0
    differ = sorted(k for k, v in want.items() if stored.get(k) != v)
    if differ:
        return "its model config differs from this run's in " + ", ".join(
            f"{k} ({stored.get(k)!r}, not {want[k]!r})" for k in differ)
    for name, value in raw["model_state"].items():
        if not isinstance(value, torch.Tensor):
            return f"its weight {name!r} is not a tensor"
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return f"its weight {name!r} holds {int((~torch.isfinite(value)).sum())} non-finite value(s) (NaN or inf)"
    try:
        GATv2Classifier(ModelConfig.from_dict(stored)).load_state_dict(raw["model_state"])
    except (TypeError, ValueError, RuntimeError) as exc:
        return f"its weights do not fit the model config ({str(exc).splitlines()[0]})"
    return None


def _normalizer_problem_of(raw: dict[str, Any], spec: PartSpec) -> str | None:
    state, mode = raw["normalizer"], graph_config(spec.cfg).normalisation
    if state.get("mode") != mode or state.get("names") != list(spec.feature_names):
        return f"its normaliser is not a {mode!r} one of this run's {len(spec.feature_names)} features"
    problem = normalizer_problem(state, len(spec.feature_names))
    return None if problem is None else f"its normaliser: {problem}"


def _record_problem(raw: dict[str, Any]) -> str | None:
    """Curves, timings and encoder scores: the types the report and ``metrics.json`` need."""
    if "gnn" not in raw["histories"]:
        return "its training curves have no 'gnn' entry"
    for name, h in raw["histories"].items():
        curves = (h.get("train_loss"), h.get("val_macro_f1")) if isinstance(h, dict) else (None, None)
        if not (isinstance(h, dict) and set(h) == {f.name for f in fields(History)}
                and all(isinstance(c, list) and all(_is_number(v) for v in c) for c in curves)
                and isinstance(h["best_epoch"], int) and 0 <= h["best_epoch"] <= len(curves[1])
                and _is_number(h["seconds"])):
            return f"its training curve of {name!r} is malformed"
    if not all(isinstance(k, str) and _is_number(v) for k, v in raw["timings"].items()):
        return "its timings are malformed"
    scores = raw["encoder_scores"]
    if scores is not None and not all(isinstance(k, str) and _is_number(v) for k, v in scores.items()):
        return "its encoder scores are malformed"
    return None


def part_problem(raw: Any, spec: PartSpec) -> str | None:
    """Why ``raw`` (a loaded part) cannot be this (seed, fold)'s result; None when it can."""
    if not isinstance(raw, dict):
        return "it is not a saved fold result"
    if raw.get("version") != PART_VERSION:
        return f"it has part format {raw.get('version')!r}, this code reads {PART_VERSION}"
    for name, kind in _FIELDS.items():
        if not isinstance(raw.get(name), kind) or (kind is int and isinstance(raw.get(name), bool)):
            return f"its field {name!r} is missing or malformed"
    for check in (_key_problem, _rows_problem, _model_problem, _normalizer_problem_of):
        problem = check(raw, spec)
        if problem:
            return problem
    return _record_problem(raw)


def load_part(path: Path, spec: PartSpec) -> FoldResult | None:
    """The stored result of ``spec``'s (seed, fold), ``None`` when there is none yet.

    Raises :class:`DataError` (one line: the file, what is wrong, what to do) for a part that is
    unreadable, written under another key or whose contents fail :func:`part_problem`.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        raw: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        problem: str | None = f"it cannot be read ({type(exc).__name__})"
    else:
        problem = part_problem(raw, spec)
    if problem:
        raise DataError(f"cannot resume from the saved fold result {path}: {problem}; delete it to retrain that "
                        f"fold, or run without --resume into another --out")
    model = GATv2Classifier(ModelConfig.from_dict(raw["model_config"]))
    model.load_state_dict(raw["model_state"])
    model.eval()

    def preds(d: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {name: (y.numpy(), p.numpy()) for name, (y, p) in d.items()}

    return FoldResult(split=spec.split, test=preds(raw["test"]), val=preds(raw["val"]), y_test=raw["y_test"].numpy(),
                      y_val=raw["y_val"].numpy(), histories={n: History(**h) for n, h in raw["histories"].items()},
                      model=model, normalizer=FeatureNormalizer.from_state_dict(raw["normalizer"]),
                      timings=dict(raw["timings"]), test_hours=raw["test_hours"].numpy(),
                      val_hours=raw["val_hours"].numpy(), encoder=raw["encoder"],
                      encoder_scores=raw["encoder_scores"], no_edges_encoder=raw["no_edges_encoder"])
