"""Encoder outputs as files, for systems that do not import this package.

    from gnn_market.export import save_encoded, load_encoded
    save_encoded(encoder.encode_range(store, start="2023-09-01"), "preds.parquet")

Formats, chosen by the file suffix:

- ``.parquet`` / ``.csv``: the long table of :meth:`EncodedRange.to_frame`
  (one row per hour and pair: ``time, symbol, p_down, p_sideways, p_up,
  prediction, valid, emb_0 .. emb_{d-1}``); CSV times are ISO 8601 UTC.
- ``.npz``: the arrays as they are (``times`` as int64 ns since the epoch,
  ``symbols``, ``probs [T,N,3]``, ``embeddings [T,N,d]``, ``mask [T,N]`` and, for a
  checkpoint with a decision rule, ``rule_weights [3]``);
  :func:`load_encoded` reads it back into an :class:`EncodedRange`.

Writes are atomic (temporary file + rename), so a reader never sees half a file
and an interrupted export leaves any previous file intact.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .encoder import EncodedRange
from .errors import DataError

SUFFIXES = (".parquet", ".csv", ".npz")


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
                np.savez_compressed(fh, times=encoded.times.as_unit("ns").asi8,
                                    symbols=np.asarray(encoded.symbols, dtype=str),
                                    probs=encoded.probs, embeddings=encoded.embeddings, mask=encoded.mask,
                                    **({} if encoded.rule_weights is None
                                       else {"rule_weights": np.asarray(encoded.rule_weights, np.float64)}))
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
            return EncodedRange(times=pd.DatetimeIndex(pd.to_datetime(z["times"], unit="ns", utc=True)),
                                symbols=[str(s) for s in z["symbols"]], probs=z["probs"],
                                embeddings=z["embeddings"], mask=z["mask"],
                                rule_weights=z["rule_weights"] if "rule_weights" in z.files else None)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read encoder outputs from {path}: {exc}") from exc
