"""Encoder outputs as files, for systems that do not import this package.

    from gnn_market.export import save_encoded, load_encoded
    save_encoded(encoder.encode_range(store, start="2023-09-01"), "preds.parquet")

Formats, chosen by the file suffix:

- ``.parquet`` / ``.csv``: the long table of :meth:`EncodedRange.to_frame`
  (one row per hour and pair: ``time, symbol, p_down, p_sideways, p_up,
  prediction, valid, filled, emb_0 .. emb_{d-1}``; ``filled`` is True where the
  pair's candle at that hour was forward-filled, a stand-in rather than a trade);
  CSV times are ISO 8601 UTC.
- ``.npz``: the arrays as they are (``times`` as int64 ns since the epoch,
  ``symbols``, ``probs [T,N,3]``, ``embeddings [T,N,d]``, ``mask [T,N]``, ``filled [T,N]``
  and, for a checkpoint with a decision rule, ``rule_weights [3]``);
  :func:`load_encoded` reads it back into an :class:`EncodedRange`.

And a folder for caches, :func:`save_encoded_dir` / :func:`load_encoded_dir`:
the same arrays as uncompressed ``times.npy``, ``probs.npy``, ``embeddings.npy``
(float32), ``mask.npy`` (bool) plus ``symbols.json`` (and ``filled.npy``, ``rule_weights.npy``
when known), read back memory-mapped,
so several processes reading one folder share one copy in the page cache.

Writes are atomic (temporary file or folder + rename), so a reader never sees
half a file and an interrupted export leaves any previous file intact.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_dir, atomic_path
from .encoded import EncodedRange
from .errors import DataError

SUFFIXES = (".parquet", ".csv", ".npz")
#: The memory-mapped arrays of an encoded folder (``<name>.npy``); ``times.npy`` and
#: ``symbols.json`` (small) are read into memory.
MAPPED_ARRAYS = ("probs", "embeddings", "mask")
SYMBOLS_FILE = "symbols.json"


def save_encoded(encoded: EncodedRange, path: str | os.PathLike, embeddings: bool = True) -> Path:
    """Write ``encoded`` to ``path`` (format from its suffix); returns the path.

    ``embeddings=False`` leaves the embedding columns out of the tables (``.npz``
    always keeps every array).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"cannot export to {path}: the file name must end in one of {', '.join(SUFFIXES)}")
    if not path.parent.is_dir():
        raise DataError(f"cannot export to {path}: folder {path.parent} does not exist")
    with atomic_path(path, DataError) as tmp:
        if suffix == ".npz":
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, times=_times_ns(encoded.times),
                                    symbols=np.asarray(encoded.symbols, dtype=str),
                                    probs=encoded.probs, embeddings=encoded.embeddings, mask=encoded.mask,
                                    **({} if encoded.rule_weights is None
                                       else {"rule_weights": np.asarray(encoded.rule_weights, np.float64)}),
                                    **({} if encoded.filled is None else {"filled": np.asarray(encoded.filled, bool)}))
        else:
            frame = encoded.to_frame(embeddings=embeddings)
            if suffix == ".parquet":
                frame.to_parquet(tmp, index=False)
            else:
                frame.assign(time=frame["time"].map(pd.Timestamp.isoformat)).to_csv(tmp, index=False,
                                                                                   float_format="%.6g")
    return path


def load_encoded(path: str | os.PathLike) -> EncodedRange:
    """Read an ``.npz`` written by :func:`save_encoded` back into an :class:`EncodedRange`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return EncodedRange(times=_times_from_ns(z["times"]), symbols=[str(s) for s in z["symbols"]],
                                probs=z["probs"], embeddings=z["embeddings"], mask=z["mask"],
                                rule_weights=z["rule_weights"] if "rule_weights" in z.files else None,
                                filled=z["filled"] if "filled" in z.files else None)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read encoder outputs from {path}: {exc}") from exc


def save_encoded_dir(encoded: EncodedRange, folder: str | os.PathLike) -> Path:
    """Write ``encoded`` as a folder of uncompressed ``.npy`` files + ``symbols.json``; returns the folder.

    Written to a temporary folder beside ``folder`` and renamed onto it (an
    existing folder is replaced), so readers never see a partial folder.
    """
    folder = Path(folder)
    if not folder.parent.is_dir():
        raise DataError(f"cannot export to {folder}: folder {folder.parent} does not exist")
    arrays = {"times": _times_ns(encoded.times), "probs": np.asarray(encoded.probs, np.float32),
              "embeddings": np.asarray(encoded.embeddings, np.float32), "mask": np.asarray(encoded.mask, bool)}
    with atomic_dir(folder, DataError) as tmp:
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
        if encoded.rule_weights is not None:
            np.save(tmp / "rule_weights.npy", np.asarray(encoded.rule_weights, np.float64), allow_pickle=False)
        if encoded.filled is not None:
            np.save(tmp / "filled.npy", np.asarray(encoded.filled, bool), allow_pickle=False)
        (tmp / SYMBOLS_FILE).write_text(json.dumps([str(s) for s in encoded.symbols]))
    return folder


def load_encoded_dir(folder: str | os.PathLike, mmap: bool = True) -> EncodedRange:
    """Read a folder written by :func:`save_encoded_dir`.

    With ``mmap`` (default) ``probs``, ``embeddings`` and ``mask`` are read-only
    :class:`numpy.memmap` arrays: pages are read on demand and shared with every
    other process mapping the same files. Missing, truncated or inconsistent
    files raise :class:`DataError`.
    """
    folder = Path(folder)
    try:
        times = np.load(folder / "times.npy", allow_pickle=False)
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
                  for name in MAPPED_ARRAYS}
        symbols = json.loads((folder / SYMBOLS_FILE).read_text())
        rules = folder / "rule_weights.npy"
        rule_weights = np.load(rules, allow_pickle=False) if rules.is_file() else None
        filled = np.load(folder / "filled.npy", allow_pickle=False) if (folder / "filled.npy").is_file() else None
    except (OSError, ValueError, EOFError) as exc:  # ValueError: not a .npy, too short for its header, bad JSON
        raise DataError(f"cannot read encoder outputs from {folder}: {exc}") from exc
    shape = (len(times), len(symbols))
    probs, emb, mask = arrays["probs"], arrays["embeddings"], arrays["mask"]
    if (probs.shape != (*shape, 3) or emb.ndim != 3 or emb.shape[:2] != shape or mask.shape != shape
            or mask.dtype != bool or (filled is not None and (filled.shape != shape or filled.dtype != bool))):
        raise DataError(f"cannot read encoder outputs from {folder}: inconsistent shapes (times {len(times)}, "
                        f"symbols {len(symbols)}, probs {probs.shape}, embeddings {emb.shape}, mask {mask.shape})")
    return EncodedRange(times=_times_from_ns(times), symbols=[str(s) for s in symbols], **arrays,
                        rule_weights=rule_weights, filled=filled)


def _times_ns(times: pd.DatetimeIndex) -> np.ndarray:
    return pd.DatetimeIndex(times).as_unit("ns").asi8


def _times_from_ns(ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True))
