"""The environment's encoder cache: outputs for a range, kept on disk, keyed by data + model + range.

An entry is a folder ``encoded-<key>/`` in the layout of
:func:`gnn_market.export.save_encoded_dir` (uncompressed ``.npy`` files,
written to a temporary folder and renamed), read back memory-mapped: every
environment process built on one entry shares one copy of the arrays. ``key``
hashes the panel's content (hours, symbols, market and every array in
:data:`gnn_market.panel.ARRAY_FIELDS`), the model's fingerprint and the range.

Creating an entry holds a cross-process lock (``.encoded-<key>.lock`` beside
it), so environments started together (``SubprocVecEnv`` workers,
``gym.make_vec``) encode a range once: the first encodes and writes the
entry, the others wait and then map it.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock

from gnn_market.encoded import EncodedRange
from gnn_market.export import load_encoded_dir, save_encoded_dir
from gnn_market.panel import ARRAY_FIELDS, Panel
from gnn_market.sources import cache_dir as user_cache_dir

from .protocols import EncoderOutput, ObservationEncoder

#: Part of every key: bump it when the entries' layout or meaning changes (2: folders of .npy files).
CACHE_VERSION = 2
ENTRY_PREFIX = "encoded-"


def default_cache_dir() -> Path:
    """``gnn_market.sources.cache_dir() / "env"``."""
    return user_cache_dir() / "env"


def panel_fingerprint(panel: Panel) -> str:
    """Hash of the panel's content (hours, symbols, market and every data array that is set)."""
    h = hashlib.sha256()
    h.update(pd.DatetimeIndex(panel.times).as_unit("ns").asi8.tobytes())
    h.update("\0".join(panel.symbols).encode())
    h.update(str(panel.market).encode())
    for name in ARRAY_FIELDS:
        arr = getattr(panel, name)
        if arr is not None:
            a = np.ascontiguousarray(np.asarray(arr))
            h.update(name.encode() + str(a.dtype).encode() + str(a.shape).encode())
            h.update(a.tobytes())
    return h.hexdigest()


def entry_path(cache: Path, panel: Panel, model_key: str, start: pd.Timestamp, end: pd.Timestamp) -> Path:
    """The folder caching ``model_key``'s outputs on ``panel`` over ``[start, end]``."""
    key = hashlib.sha256("|".join([str(CACHE_VERSION), panel_fingerprint(panel), model_key,
                                   start.isoformat(), end.isoformat()]).encode()).hexdigest()[:32]
    return cache / f"{ENTRY_PREFIX}{key}"


def encode_cached(encoder: ObservationEncoder, panel: Panel, start: pd.Timestamp, end: pd.Timestamp,
                  batch_hours: int = 64, cache: str | os.PathLike | None = None) -> EncoderOutput:
    """``encoder.encode_range(panel, start, end)``, served from ``cache`` when it holds it.

    ``cache=None``, or an encoder without a fingerprint, computes every time. A
    corrupt entry is re-created with a warning. A fresh entry is read back
    memory-mapped after writing, so the process that wrote it shares it too.
    """
    model_key = encoder.fingerprint() if cache is not None else None
    if cache is None or model_key is None:  # unknown model identity: never risk serving another model's outputs
        return _encode(encoder, panel, start, end, batch_hours)
    path = entry_path(Path(cache), panel, model_key, start, end)
    if path.exists():  # the common case, lock-free: an entry is complete once its folder exists
        try:
            return load_encoded_dir(path)
        except Exception as exc:  # a corrupt entry is re-created, never trusted
            warnings.warn(f"ignoring unreadable cache entry {path}: {exc}", stacklevel=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    # No timeout: encoding a long range takes minutes, and the OS drops the lock of a dead process.
    with FileLock(lock_path(path)):
        if path.exists():  # another process encoded it while this one waited
            try:
                return load_encoded_dir(path)
            except Exception:  # still the corrupt entry (warned above): replaced below
                pass
        encoded = _encode(encoder, panel, start, end, batch_hours)
        save_encoded_dir(_as_encoded_range(encoded), path)
    return load_encoded_dir(path)


def lock_path(entry: Path) -> Path:
    """The lock file held while ``entry`` is being created (hidden, beside it)."""
    return entry.with_name(f".{entry.name}.lock")


def _encode(encoder: ObservationEncoder, panel: Panel, start: pd.Timestamp, end: pd.Timestamp,
            batch_hours: int) -> EncoderOutput:
    # progress=None: a progress bar only on a terminal (encoding a long range takes minutes)
    return encoder.encode_range(panel, start=start, end=end, batch_hours=batch_hours, progress=None)


def _as_encoded_range(encoded: EncoderOutput) -> EncodedRange:
    if isinstance(encoded, EncodedRange):
        return encoded
    return EncodedRange(times=pd.DatetimeIndex(encoded.times), symbols=list(encoded.symbols), probs=encoded.probs,
                        embeddings=encoded.embeddings, mask=encoded.mask)
