"""A single-file ``predict --follow`` output (``.parquet`` or ``.csv``): reading what it holds, appending.

The whole file is rewritten on each append (atomically, :func:`gnn_market.atomic.atomic_path`),
so the cost of an hour grows with the file: the folder form (:mod:`gnn_market.prediction_dataset`)
is the one for long runs. The guarantees are :mod:`gnn_market.follow`'s.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow.parquet as pq

from .atomic import atomic_path
from .encoded import EncodedRange
from .errors import DataError

#: Characters of the checkpoint's SHA-256 kept in the ``model`` column.
MODEL_ID_CHARS = 12
#: What a ``model`` cell holds; anything else means the row was cut or edited.
_MODEL_ID = rf"[0-9a-f]{{{MODEL_ID_CHARS}}}"
#: Columns read from an existing output to continue it.
_STATE_COLUMNS = ["time", "symbol", "model"]


@dataclass(frozen=True)
class Written:
    """What an existing output holds: its last hour and its pairs (None / empty for no file)."""

    last: pd.Timestamp | None
    symbols: frozenset[str]



def written_through(out: Path, model: str, embeddings: bool) -> pd.Timestamp | None:
    """Last hour in ``out`` (None if there is no file); refuses a file of another model or layout."""
    return read_written(out, model, embeddings).last


def read_written(out: Path, model: str, embeddings: bool) -> Written:
    """What ``out`` holds; refuses a damaged file or one of another model or layout (:class:`DataError`)."""
    if not out.exists():
        return Written(None, frozenset())
    columns, frame = _read_parquet_state(out) if out.suffix.lower() == ".parquet" else _read_csv_state(out)
    has_emb = any(c.startswith("emb_") for c in columns)
    if has_emb != embeddings:
        raise DataError(f"{out} was written {'with' if has_emb else 'without'} embedding columns; pass the same "
                        f"--no-embeddings setting or another --out")
    models = set(frame["model"])
    if models - {model}:
        raise DataError(f"{out} holds predictions of model {sorted(models - {model})[0]}, not of this checkpoint "
                        f"({model}); pass another --out")
    last = pd.to_datetime(frame["time"], utc=True).max() if len(frame) else None
    return Written(last, frozenset(frame["symbol"]))


def _damaged(out: Path, what: str) -> DataError:
    """The one-line refusal of an output --follow cannot safely continue."""
    what = " ".join(what.split())  # parser messages carry newlines
    return DataError(f"{out} is damaged ({what}); it was not changed: repair or move it away, or pass "
                     f"another --out")


def _read_parquet_state(out: Path) -> tuple[list[str], pd.DataFrame]:
    try:
        columns = pq.read_schema(out).names
        if "model" not in columns:
            raise DataError(f"{out} has no 'model' column: it was not written by --follow; pass another --out")
        missing = [c for c in _STATE_COLUMNS if c not in columns]
        if missing:
            raise _damaged(out, f"no column {missing[0]!r}")
        frame = pq.read_table(out, columns=_STATE_COLUMNS).to_pandas()
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise _damaged(out, f"cannot read it as parquet: {exc}") from exc
    _check_rows(out, frame)
    return columns, frame


def _read_csv_state(out: Path) -> tuple[list[str], pd.DataFrame]:
    try:
        text = out.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _damaged(out, f"cannot read it as text: {exc}") from exc
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise _damaged(out, "no header line")
    columns = next(csv.reader([lines[0]]))
    if "model" not in columns:
        raise DataError(f"{out} has no 'model' column: it was not written by --follow; pass another --out")
    missing = [c for c in _STATE_COLUMNS if c not in columns]
    if missing:
        raise _damaged(out, f"no column {missing[0]!r}")
    # A cut-off write or copy leaves a short last row, which pandas would fill with NaN silently (a short
    # row inside the file leaves ``model``, the last column, empty: _check_rows refuses it; a long one
    # is a parser error).
    last = next(csv.reader([lines[-1]])) if len(lines) > 1 else columns
    if len(last) != len(columns):
        raise _damaged(out, f"line {len(lines)} has {len(last)} fields, the header {len(columns)}"
                            + ("; the last row is cut short" if len(last) < len(columns) else ""))
    try:
        frame = pd.read_csv(out, usecols=_STATE_COLUMNS, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:  # pandas' ParserError is a ValueError
        raise _damaged(out, f"cannot parse it as CSV: {exc}") from exc
    _check_rows(out, frame)
    return columns, frame


def _check_rows(out: Path, frame: pd.DataFrame) -> None:
    """Every row names a model, a pair and an hour: an empty or cut-off cell means the file was damaged.

    Rows are counted from 1 after the header (a CSV's line number is one more).
    """
    model = frame["model"].astype("string").fillna("")
    bad = ~model.str.fullmatch(_MODEL_ID) | frame["symbol"].astype("string").fillna("").eq("")
    if bad.any():
        row = int(bad.to_numpy().argmax())
        cell = model.iloc[row]
        what = "no model or no symbol: cut short" if not cell else f"model {cell!r}, not {MODEL_ID_CHARS} hex digits"
        raise _damaged(out, f"row {row + 1} has {what}")
    try:
        times = pd.to_datetime(frame["time"], utc=True)
    except (ValueError, TypeError) as exc:
        raise _damaged(out, f"a time that is not an ISO hour: {exc}") from exc
    if times.isna().any():
        raise _damaged(out, f"row {int(times.isna().to_numpy().argmax()) + 1} has no time")


def check_pairs(out: Path, written: Written, encoded: EncodedRange, symbols: Sequence[str] | None) -> None:
    """Refuse to mix graphs: the file's pairs must be this run's (``--symbols``), or hold every pair it encodes.

    With the default (every stored pair) a pair that left the data window may drop out,
    but a pair the file never had means another graph.
    """
    if written.last is None:
        return
    run = set(encoded.symbols)
    new = sorted(run - written.symbols)
    gone = sorted(written.symbols - run) if symbols is not None else []
    if new or gone:
        diff = "; ".join(part for part in (f"{len(new)} pair(s) it lacks ({', '.join(new[:5])})" if new else "",
                                           f"not {len(gone)} of its pairs ({', '.join(gone[:5])})" if gone else "")
                         if part)
        raise DataError(f"{out} holds predictions for {len(written.symbols)} other pairs: this run has {diff}, "
                        f"another graph; pass --symbols {','.join(sorted(written.symbols))} or another --out")


def append_hours(out: Path, encoded: EncodedRange, model: str, embeddings: bool) -> int:
    """Append ``encoded``'s rows (with the ``model`` column) to ``out`` atomically; returns rows written."""
    frame = encoded.to_frame(embeddings=embeddings).assign(model=model)
    with atomic_path(out, DataError) as tmp:
        if out.suffix.lower() == ".parquet":
            if out.exists():
                frame = pd.concat([pd.read_parquet(out), frame], ignore_index=True)
            frame.to_parquet(tmp, index=False)
        else:
            text = frame.assign(time=frame["time"].map(pd.Timestamp.isoformat)).to_csv(
                index=False, header=not out.exists(), float_format="%.6g")
            old = out.read_bytes() if out.exists() else b""
            if old and not old.endswith(b"\n"):  # a complete last row without its newline (checked before)
                old += b"\n"
            tmp.write_bytes(old + text.encode())
    return len(encoded.times) * len(encoded.symbols)
