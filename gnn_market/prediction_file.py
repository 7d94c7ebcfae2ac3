"""A single-file ``predict --follow`` output (``.parquet`` or ``.csv``): parsing and checking what it holds.

:func:`gnn_market.follow.append_hours` rewrites the whole file on each append (atomically),
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



def _damaged(out: Path, what: str) -> DataError:
    """The one-line refusal of an output --follow cannot safely continue."""
    what = " ".join(what.split())  # parser messages carry newlines
    return DataError(f"{out} is damaged ({what}); it was not changed: repair or move it away, or pass "
                     f"another --out")


def read_parquet_state(out: Path) -> tuple[list[str], pd.DataFrame]:
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


def read_csv_state(out: Path) -> tuple[list[str], pd.DataFrame]:
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
