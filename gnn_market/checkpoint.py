"""Checkpoint file format of a trained :class:`~gnn_market.model.GATv2Classifier`.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python
values, so it loads with ``torch.load(..., weights_only=True)`` (no pickled
code runs). Keys:

- ``format`` / ``format_version`` / ``package_version``
- ``state_dict``: the model weights
- ``model_config``, ``graph_config``, ``feature_config``: plain dicts
- ``feature_names``: the feature schema, in column order
- ``normalizer``: :meth:`FeatureNormalizer.state_dict` (NumPy arrays stored as tensors)
- ``threshold``, ``market``, ``symbols``
- ``ranges``: ``{"train"|"val"|"test": [first_hour_iso, last_hour_iso] or None}``
- ``extra``: free-form metadata (e.g. the training command)
- optional ``calibration`` (``{"scale": [3], "bias": [3]}``, :class:`~gnn_market.calibration.VectorScaling`)
  and ``decision_rule`` (``{"weights": [3]}``, :class:`~gnn_market.calibration.DecisionRule`), both
  fitted on the validation rows; plain floats. A file without them (older runs, the format stays
  version 1) means identity scaling and plain argmax; malformed or non-finite values are refused.

:data:`PACKAGED_CHECKPOINT` is where the pretrained checkpoint shipped with the
package lives (written by ``python -m gnn_market.train --save-packaged``).

Anything missing, of the wrong type, or from a newer format raises
:class:`~gnn_market.errors.CheckpointError` with a message that says why, in one
line naming the file and the first problem, and so does a value no trained model
can hold: a weight that is not floating point (int64 weights ran and gave every
pair the same probabilities) or not finite, weights whose names or shapes differ
from the model its ``model_config`` describes (an unexpected or missing
parameter, another shape, a ``lookback`` the weights were not trained with), a non-finite or
non-positive normaliser statistic, a normaliser whose length differs from the
feature count, a range whose hours do not parse (or end before they start),
symbols or feature names that are not strings (or repeat), an unknown market or
a non-finite threshold. A bad file fails at load time, never at the first prediction.
A file holding pickled Python objects (``torch.save`` of anything else) or a
TorchScript archive is refused without running it and without torch's warnings, and
a CUDA ``map_location`` on a machine without CUDA is a :class:`~gnn_market.errors.DataError`
naming the device, not a corrupt file.
"""
from __future__ import annotations

import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .atomic import atomic_path
from .calibration import DecisionRule, VectorScaling
from .errors import CheckpointError, DataError
from .model import GATv2Classifier, ModelConfig
from .version import __version__

FORMAT = "cryptograph-gatv2"
FORMAT_VERSION = 1
_NDARRAY_TAG = "__ndarray__"
#: The packaged pretrained checkpoint (fit on the bundled sample before 2023-09-01; JSON sidecar beside it).
PACKAGED_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "sample_gatv2.pt"


@dataclass
class Checkpoint:
    """Everything needed to rebuild a model and feed it data like at training time."""

    state_dict: dict[str, torch.Tensor]
    model_config: dict[str, Any]
    graph_config: dict[str, Any]
    feature_config: dict[str, Any]
    feature_names: list[str]
    normalizer: dict[str, Any]
    threshold: float
    market: str
    symbols: list[str]
    ranges: dict[str, list[str] | None]
    extra: dict[str, Any] = field(default_factory=dict)
    package_version: str = __version__
    calibration: dict[str, list[float]] | None = None    # VectorScaling.state_dict(); None = identity
    decision_rule: dict[str, list[float]] | None = None  # DecisionRule.state_dict(); None = argmax

    def scaling(self) -> VectorScaling:
        """The stored vector scaling (identity when the checkpoint has none)."""
        return VectorScaling() if self.calibration is None else VectorScaling.from_state_dict(self.calibration)

    def rule(self) -> DecisionRule:
        """The stored decision rule (plain argmax when the checkpoint has none)."""
        return DecisionRule() if self.decision_rule is None else DecisionRule.from_state_dict(self.decision_rule)

    def range(self, name: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """``(first, last)`` hour of the ``train``/``val``/``test`` range as UTC timestamps."""
        value = self.ranges.get(name)
        if value is None:
            return None
        return pd.Timestamp(value[0]).tz_convert("UTC"), pd.Timestamp(value[1]).tz_convert("UTC")


def iso_range(times: pd.DatetimeIndex) -> list[str] | None:
    """``[first, last]`` of a non-empty index as ISO strings (None if empty)."""
    if len(times) == 0:
        return None
    return [times[0].isoformat(), times[-1].isoformat()]


def _encode(value: Any) -> Any:
    """NumPy arrays/scalars -> tensors/Python scalars, recursively (weights_only-safe)."""
    if isinstance(value, np.ndarray):
        return {_NDARRAY_TAG: torch.from_numpy(np.ascontiguousarray(value)), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if _NDARRAY_TAG in value:
            return value[_NDARRAY_TAG].numpy().astype(value["dtype"], copy=False)
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike) -> Path:
    """Write ``ckpt`` atomically (temp file + rename) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": ckpt.package_version,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in ckpt.state_dict.items()},
        "model_config": _encode(ckpt.model_config),
        "graph_config": _encode(ckpt.graph_config),
        "feature_config": _encode(ckpt.feature_config),
        "feature_names": list(ckpt.feature_names),
        "normalizer": _encode(ckpt.normalizer),
        "threshold": float(ckpt.threshold),
        "market": ckpt.market,
        "symbols": list(ckpt.symbols),
        "ranges": _encode(ckpt.ranges),
        "extra": _encode(ckpt.extra),
    }
    for key in ("calibration", "decision_rule"):   # optional: absent = identity / argmax
        if getattr(ckpt, key) is not None:
            payload[key] = _encode(getattr(ckpt, key))
    with atomic_path(path, CheckpointError) as tmp:
        torch.save(payload, tmp)
    return path


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "state_dict": dict, "model_config": dict, "graph_config": dict, "feature_config": dict,
    "feature_names": list, "normalizer": dict, "threshold": (float, int), "market": str,
    "symbols": list, "ranges": dict,
}


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and validate a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    require_device(map_location)  # else torch reports a CUDA-less machine as a corrupt file
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    raw = _read(path, map_location)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a CryptoGraph GATv2 checkpoint (format {FORMAT!r} expected)")
    version = raw.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}; this package reads "
                              f"<= {FORMAT_VERSION} (package {__version__}); upgrade cryptograph")
    for key, kind in _REQUIRED.items():
        if not isinstance(raw.get(key), kind):
            raise CheckpointError(f"{path}: checkpoint field {key!r} is missing or malformed")
    ckpt = Checkpoint(
        state_dict=raw["state_dict"],
        model_config=_decode(raw["model_config"]),
        graph_config=_decode(raw["graph_config"]),
        feature_config=_decode(raw["feature_config"]),
        feature_names=list(raw["feature_names"]),  # element types checked by checkpoint_problem
        normalizer=_decode(raw["normalizer"]),
        threshold=float(raw["threshold"]),
        market=raw["market"],
        symbols=list(raw["symbols"]),
        ranges=_decode(raw["ranges"]),
        extra=_decode(raw.get("extra", {})),
        package_version=str(raw.get("package_version", "unknown")),
        calibration=_decode(raw["calibration"]) if "calibration" in raw else None,
        decision_rule=_decode(raw["decision_rule"]) if "decision_rule" in raw else None,
    )
    try:  # validated here, so a bad file fails at load time, not at the first prediction
        ckpt.scaling(), ckpt.rule()
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: checkpoint calibration or decision rule is malformed: {exc}") from exc
    problem = checkpoint_problem(ckpt)
    if problem is not None:
        raise CheckpointError(f"{path}: {problem}; the file is damaged or was not written by gnn_market.train")
    return ckpt


def require_device(device: str | torch.device, flag: str = "device") -> None:
    """Refuse a device this machine does not have (:class:`DataError` naming ``flag``), before any file is read."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as exc:
        raise DataError(f"{flag} {device!r} is not a torch device (use cpu or cuda)") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise DataError(f"{flag} {device}: CUDA is not available on this machine (use {flag} cpu)")


def _is_torchscript(path: Path) -> bool:
    """A ``torch.jit.save`` archive (torch.load would hand it to torch.jit.load, with a warning)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _read(path: Path, map_location: str | torch.device) -> Any:
    """``torch.load(weights_only=True)``, its failures as one :class:`CheckpointError` line and no warnings."""
    if _is_torchscript(path):
        raise CheckpointError(f"{path} is a TorchScript archive (torch.jit.save), not a checkpoint written by "
                              f"gnn_market.train")
    with warnings.catch_warnings():
        # torch warns about foreign pickle protocols before failing: the error line says what matters
        warnings.simplefilter("ignore")
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # corrupt zip, truncated file, foreign pickle...
            # torch's own message suggests weights_only=False: never do that with an unknown file
            if "weights only load failed" in str(exc).lower():
                raise CheckpointError(f"cannot read checkpoint {path}: it holds pickled Python objects, not only "
                                      f"tensors and plain values (refused: loading them could run code); it was "
                                      f"not written by gnn_market.train") from exc
            raise CheckpointError(f"cannot read checkpoint {path}: corrupt, truncated or not written by "
                                  f"gnn_market.train ({type(exc).__name__})") from exc


_MARKETS = ("spot", "perp")
_RANGE_NAMES = ("train", "val", "test")


def _str_list_problem(name: str, values: Any) -> str | None:
    if not all(isinstance(v, str) and v for v in values):
        return f"checkpoint field {name!r} must be a list of non-empty strings"
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        return f"checkpoint field {name!r} repeats {repeated}"
    return None


def checkpoint_problem(ckpt: Checkpoint) -> str | None:
    """Why ``ckpt`` cannot be a trained model's checkpoint (None when its values are sound).

    Checks what the type checks of :func:`load_checkpoint` cannot: finite floating-point
    weights with exactly the names and shapes of the model its config describes, a finite normaliser of the feature count's length, parseable ranges, string
    symbols and feature names, a known market and a finite threshold.
    """
    for key, value in ckpt.state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            return f"checkpoint weight {key!r} is not a tensor"
        if not value.is_floating_point():  # integer weights run, and give one answer for every pair
            return f"checkpoint weight {key!r} is {value.dtype}, not floating point"
        if not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            return f"checkpoint weight {key!r} holds {bad} non-finite value(s) (NaN or inf)"
    problem = _weights_fit_problem(ckpt.state_dict, ckpt.model_config)
    if problem:
        return problem
    for name in ("feature_names", "symbols"):
        problem = _str_list_problem(name, getattr(ckpt, name))
        if problem:
            return problem
    if not ckpt.feature_names:
        return "checkpoint lists no feature names"
    if ckpt.market not in _MARKETS:
        return f"checkpoint market {ckpt.market!r} is not one of {_MARKETS}"
    if not (np.isfinite(ckpt.threshold) and ckpt.threshold >= 0):
        return f"checkpoint threshold {ckpt.threshold!r} is not a finite number >= 0"
    for name in ("model_config", "graph_config", "feature_config", "normalizer", "ranges", "extra"):
        if not isinstance(getattr(ckpt, name), dict):
            return f"checkpoint field {name!r} must be a dict"
    problem = normalizer_problem(ckpt.normalizer, len(ckpt.feature_names))
    if problem:
        return f"checkpoint normaliser: {problem}"
    return _ranges_problem(ckpt.ranges)


def _weights_fit_problem(state: dict[str, torch.Tensor], model_config: dict[str, Any]) -> str | None:
    """The first way ``state`` does not fit the model ``model_config`` describes, as a short phrase.

    ``load_state_dict`` would say the same over several lines; the model is built on the
    meta device (no memory, no draw from the global RNG) only for its parameter names and shapes.
    """
    try:
        with torch.device("meta"):
            expected = GATv2Classifier(ModelConfig.from_dict(model_config)).state_dict()
    except (TypeError, ValueError) as exc:
        return f"checkpoint model config is unusable: {exc}"
    for names, what in ((sorted(set(state) - set(expected)), "unexpected"),
                        (sorted(set(expected) - set(state)), "missing")):
        if names:
            more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
            return f"{what} parameter {names[0]!r}{more}: the weights do not fit the model its config describes"
    for name, want in expected.items():
        if state[name].shape != want.shape:
            return f"parameter {name!r} has shape {list(state[name].shape)}, the model expects {list(want.shape)}"
    return None


def normalizer_problem(state: dict[str, Any], n_features: int) -> str | None:
    names = state.get("names", [])
    if not isinstance(names, list) or (names and len(names) != n_features):
        return f"it names {len(names) if isinstance(names, list) else '?'} features, the model has {n_features}"
    try:
        clip = float(state.get("clip", 10.0))
    except (TypeError, ValueError):
        return f"clip {state.get('clip')!r} is not a number"
    if not (np.isfinite(clip) and clip > 0):
        return f"clip {clip!r} is not a finite number > 0"
    if state.get("mean") is None and state.get("std") is None:
        return None  # cross-sectional: nothing fitted
    stats = {}
    for key in ("mean", "std"):
        try:
            stats[key] = np.asarray(state.get(key), dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            return f"{key} is not a list of numbers"
        if len(stats[key]) != n_features:
            return f"{key} has {len(stats[key])} values but the model reads {n_features} features"
        if not np.isfinite(stats[key]).all():
            return f"{key} holds {int((~np.isfinite(stats[key])).sum())} non-finite value(s) (NaN or inf)"
    if (stats["std"] <= 0).any():
        return f"std holds {int((stats['std'] <= 0).sum())} value(s) <= 0"
    return None


def _ranges_problem(ranges: dict[str, Any]) -> str | None:
    for name, span in ranges.items():
        if name not in _RANGE_NAMES:
            return f"checkpoint range {name!r} is not one of {_RANGE_NAMES}"
        if span is None:
            continue
        if not (isinstance(span, list) and len(span) == 2 and all(isinstance(v, str) for v in span)):
            return f"checkpoint range {name!r} must be [first_hour, last_hour] as ISO strings, got {span!r}"
        try:
            first, last = (pd.Timestamp(v) for v in span)
            if first.tzinfo is None or last.tzinfo is None:
                raise ValueError("no time zone")
        except (TypeError, ValueError) as exc:
            return f"checkpoint range {name!r} {span!r} does not parse as two UTC times ({exc})"
        if first > last:
            return f"checkpoint range {name!r} ends before it starts: {span!r}"
    return None


def build_model(ckpt: Checkpoint) -> GATv2Classifier:
    """Instantiate the :class:`GATv2Classifier` of ``ckpt`` with its weights, in eval mode."""
    try:
        model = GATv2Classifier(ModelConfig.from_dict(ckpt.model_config))
        model.load_state_dict(ckpt.state_dict)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint weights do not fit its model config: {exc}") from exc
    if model.config.in_channels != len(ckpt.feature_names):
        raise CheckpointError(f"checkpoint model expects {model.config.in_channels} features but lists "
                              f"{len(ckpt.feature_names)} feature names")
    return model.eval()
