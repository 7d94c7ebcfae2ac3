"""Live predictions as a month-partitioned Parquet dataset that standard engines read.

Layout (the same partition rule as the store's ``month=<YYYY-MM>`` folders)::

    DIR/.predictions.lock                       cross-process lock of the writers (one poll at a time)
    DIR/month=2024-03/part-20240301T00-20240301T05.parquet    one append (hours 00..05), written once
    DIR/month=2024-03/part-20240301T06-20240301T06.parquet    the next poll's hours
    DIR/month=2024-02/month-2024-02.parquet     a complete month, compacted into one file

Every file holds the columns ``hour`` (``timestamp[ns, UTC]``: the hour whose
candle is the latest input; the prediction is for the candle opening at
``hour + 1h``), ``symbol``, ``p_down``, ``p_sideways``, ``p_up``,
``prediction``, ``valid``, ``filled``, ``emb_0 ..`` (unless written without
embeddings) and ``model`` (the checkpoint's SHA-256 prefix); the month is the
folder's partition key only. Read it with::

    pyarrow.dataset.dataset("DIR", partitioning="hive")
    duckdb: SELECT * FROM read_parquet('DIR/*/*.parquet', hive_partitioning=true)

Rules:

- **Append only, each hour once.** A poll writes its hours as one new part per
  month they fall in, named by its first and last hour (so two parts never
  share a name), through a temporary file renamed into place (a reader sees a
  part whole or not at all). The hours already written are read from the
  dataset itself, cheaply at any age (:func:`state`): the newest month's part
  names (which must not overlap) and its newest file, checked against its
  name; the next part starts at the hour after that file's last one. Months are written in
  order, so a crash between two months' parts leaves the later month empty and
  the next poll writes it.
- **Compaction.** Once a later month holds an hour, a month is complete and its
  parts are merged into ``month-<YYYY-MM>.parquet``: the merged file is written
  (and flushed) as ``.month-<YYYY-MM>.parquet.compacting`` (a name no
  ``*.parquet`` glob matches), the parts are removed, then it is renamed to its
  final name. A single part is renamed, no copy. A reader globbing ``*.parquet``
  may therefore miss that month's hours for the few milliseconds between the
  removals and the rename, and never sees an hour twice. A crash in that window
  leaves the ``.compacting`` file: :func:`read_dataset` reads it in place of the
  parts, and the next writer (:func:`compact_complete`, run before every poll)
  finishes the compaction. A complete month's parts are read in full only then:
  a damaged part, or one of another model, is refused there, before the poll
  writes anything. History is never rewritten otherwise.
- **Refusals** (:class:`DataError`, one line, nothing changed or deleted): a
  folder holding anything but ``month=YYYY-MM`` folders; parts of another
  model or with other columns; a part that cannot be read.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .atomic import atomic_path
from .encoded import EncodedRange
from .errors import DataError

#: The lock file of the writers, in DIR (not a ``*.parquet`` name: readers never see it).
LOCK_NAME = ".predictions.lock"
#: Suffix of a merged month not yet in place (see the module docstring).
PENDING_SUFFIX = ".compacting"
#: Columns read to continue a dataset.
STATE_COLUMNS = ["hour", "symbol", "model"]
_MONTH_DIR = re.compile(r"month=(\d{4}-\d{2})")
_PART = re.compile(r"part-(\d{8}T\d{2})-(\d{8}T\d{2})\.parquet")
_STAMP = "%Y%m%dT%H"


@dataclass(frozen=True)
class MonthFiles:
    """The files of one ``month=`` folder: parts, the compacted file, an interrupted compaction."""

    folder: Path
    month: str
    parts: list[Path]
    compacted: Path | None
    pending: Path | None

    def readable(self) -> list[Path]:
        """The files that hold the month's rows, each row once (a pending merge stands for the parts)."""
        if self.pending is not None:
            return [self.pending]
        return ([self.compacted] if self.compacted is not None else []) + self.parts


@dataclass(frozen=True)
class DatasetState:
    """What a dataset holds, as far as a writer needs: its newest month's hours, pairs and columns."""

    last: pd.Timestamp | None
    symbols: frozenset[str]
    columns: list[str] | None
    models: frozenset[str] = frozenset()


def month_key(hours: pd.DatetimeIndex | pd.Series) -> pd.Index:
    """``YYYY-MM`` of each UTC hour (the partition value)."""
    return pd.Index(pd.DatetimeIndex(hours).tz_convert("UTC").strftime("%Y-%m"))


def compacted_name(month: str) -> str:
    return f"month-{month}.parquet"


def month_files(folder: Path) -> MonthFiles:
    """List ``folder`` (a ``month=`` folder); temporaries of an interrupted write are left out."""
    month = _MONTH_DIR.fullmatch(folder.name).group(1)  # type: ignore[union-attr]
    names = {p.name: p for p in folder.iterdir()}
    pending = names.get(f".{compacted_name(month)}{PENDING_SUFFIX}")
    parts = sorted(p for n, p in names.items() if _PART.fullmatch(n))
    foreign = sorted(n for n in names if n.endswith(".parquet") and not _PART.fullmatch(n) and n != compacted_name(month))
    if foreign:  # a reader's *.parquet glob would read it as predictions
        raise DataError(f"{folder} holds {foreign[0]}, which is not a predictions part of month {month}; move it "
                        f"away or pass another --out")
    return MonthFiles(folder, month, parts, names.get(compacted_name(month)), pending)


def month_folders(root: Path) -> list[Path]:
    """The ``month=`` folders of ``root``, oldest first; refuses a folder that is not a predictions dataset."""
    if not root.exists():
        return []
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a predictions folder; pass a folder (no suffix) as --out")
    months, foreign = [], []
    for entry in root.iterdir():
        if entry.is_dir() and _MONTH_DIR.fullmatch(entry.name):
            months.append(entry)
        elif not entry.name.startswith("."):  # our lock, a writer's temporaries
            foreign.append(entry.name)
    if foreign:
        raise DataError(f"{root} is not a predictions folder: it holds {', '.join(sorted(foreign)[:3])}; "
                        f"pass an empty or new folder as --out")
    return sorted(months)


def _damaged(path: Path, what: str) -> DataError:
    what = " ".join(str(what).split())
    return DataError(f"{path} is damaged ({what}); nothing was changed or deleted: repair or move it away, or "
                     f"pass another --out")


def _read(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """One file of the dataset, with one-line errors for a damaged file."""
    try:
        names = pq.read_schema(path).names
        missing = [c for c in (columns or []) if c not in names]
        if missing:
            raise _damaged(path, f"no column {missing[0]!r}")
        return pq.read_table(path, columns=list(columns) if columns else None)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise _damaged(path, f"cannot read it as parquet: {exc}") from exc


def state(root: Path) -> DatasetState:
    """The dataset's last hour, pairs, columns and models, read from its newest file only (cheap at any age).

    The newest month's part names give its hours (parts must not overlap); the newest part (or,
    in a month without parts, its month file) is read and checked against its name. Refuses (one
    line) an unreadable file, a row without hour, pair or model, an (hour, pair) held twice.
    Older parts are read in full when their month is compacted (:func:`compact`), which checks them.
    """
    for folder in reversed(month_folders(root)):
        files = month_files(folder)
        if files.readable():  # none: a crash between a month's mkdir and its first part
            return _month_state(files)
    return DatasetState(None, frozenset(), None)


def _spans(files: MonthFiles) -> list[tuple[pd.Timestamp, pd.Timestamp, Path]]:
    """(first hour, last hour, part) of each part, from its name, in order; refuses overlapping parts."""
    if not files.parts:
        return []
    stamps = [_PART.fullmatch(p.name).groups() for p in files.parts]  # type: ignore[union-attr]
    firsts, lasts = (pd.to_datetime([s[i] for s in stamps], format=_STAMP, utc=True) for i in (0, 1))
    order = np.argsort(firsts.asi8, kind="stable")
    firsts, lasts, parts = firsts[order], lasts[order], [files.parts[i] for i in order]
    bad = np.flatnonzero((lasts < firsts) | (firsts.strftime("%Y-%m") != files.month)
                         | (lasts.strftime("%Y-%m") != files.month))
    if len(bad):
        raise _damaged(parts[bad[0]], f"its name is not a span of hours of month {files.month}")
    overlap = np.flatnonzero(firsts[1:] <= lasts[:-1])
    if len(overlap):
        i = overlap[0]
        raise _damaged(files.folder, f"{parts[i].name} and {parts[i + 1].name} both hold hour "
                                     f"{firsts[i + 1].isoformat()}")
    return list(zip(firsts, lasts, parts))


def _month_state(files: MonthFiles) -> DatasetState:
    spans = [] if files.pending is not None else _spans(files)
    newest = spans[-1][2] if spans else files.readable()[0]
    frame = _read(newest, STATE_COLUMNS).to_pandas()
    columns = pq.read_schema(newest).names
    if frame.isna().any().any():
        raise _damaged(newest, "a row without its hour, symbol or model")
    dup = frame.duplicated(["hour", "symbol"])
    if dup.any():
        row = frame[dup].iloc[0]
        raise _damaged(newest, f"hour {row['hour'].isoformat()} of {row['symbol']} is held twice")
    if not len(frame):
        raise _damaged(newest, "no rows")
    if spans and (frame["hour"].min(), frame["hour"].max()) != spans[-1][:2]:
        raise _damaged(newest, f"it holds hours {frame['hour'].min().isoformat()} .. "
                               f"{frame['hour'].max().isoformat()}, not those of its name")
    if spans and files.compacted is not None:  # parts after a month file: they must hold later hours
        held = _read(files.compacted, ["hour"]).column("hour").to_pandas()
        if len(held) and held.max() >= spans[0][0]:
            raise _damaged(files.folder, f"{spans[0][2].name} holds hours {files.compacted.name} holds too")
    return DatasetState(frame["hour"].max(), frozenset(frame["symbol"]), columns, frozenset(frame["model"]))


def column_diff(have: Sequence[str], want: Sequence[str]) -> str:
    extra, missing = [c for c in have if c not in want], [c for c in want if c not in have]
    parts = ([f"has {', '.join(extra[:3])}"] if extra else []) + ([f"lacks {', '.join(missing[:3])}"] if missing else [])
    return "; ".join(parts) or "another column order"


def to_table(frame: pd.DataFrame) -> pa.Table:
    """``frame`` (``hour``, ``symbol``, ...) as Arrow with ``hour`` as ``timestamp[ns, UTC]``."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    i = table.schema.get_field_index("hour")
    return table.set_column(i, "hour", table.column("hour").cast(pa.timestamp("ns", tz="UTC")))


def part_name(first: pd.Timestamp, last: pd.Timestamp) -> str:
    return f"part-{first.strftime(_STAMP)}-{last.strftime(_STAMP)}.parquet"


def append(root: Path, frame: pd.DataFrame) -> list[Path]:
    """Write ``frame`` (hours after everything stored, in order) as one new part per month; returns the parts.

    Columns must be those of the stored parts (checked by the caller through :func:`state`).
    Complete months are compacted afterwards (:func:`compact_complete`).
    """
    written = []
    keys = month_key(frame["hour"])
    for month in sorted(set(keys)):
        rows = frame[keys == month]
        folder = root / f"month={month}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / part_name(rows["hour"].iloc[0], rows["hour"].iloc[-1])
        if path.exists():  # never happens when state() was read under the lock; never overwrite
            raise DataError(f"{path} exists already: another writer without the lock? nothing was written")
        with atomic_path(path, DataError) as tmp:
            pq.write_table(to_table(rows), tmp)
        written.append(path)
    compact_complete(root)
    return written


def compact_complete(root: Path) -> list[str]:
    """Merge the parts of every month before the newest one into its month file; returns the months.

    Run before each poll reads the dataset (it finishes a compaction a crash interrupted, and refuses,
    before anything is written, a complete month whose parts are damaged or of another model) and
    after each append (the month this append completed).
    """
    folders = month_folders(root)
    done = []
    for folder in folders[:-1]:
        files = month_files(folder)
        if files.pending is not None:
            _finish(files)
        elif files.parts:
            compact(files)
        else:
            continue
        done.append(files.month)
    return done


def compact(files: MonthFiles) -> Path:
    """Merge ``files``' parts (and an older month file) into ``month-<YYYY-MM>.parquet``."""
    target = files.folder / compacted_name(files.month)
    sources = ([files.compacted] if files.compacted is not None else []) + files.parts
    if len(sources) == 1:  # one rename: atomic, no window at all
        os.replace(sources[0], target)
        return target
    tables = [_read(p) for p in sources]
    first = tables[0].schema.names
    for path, table in zip(sources, tables):
        if table.schema.names != first:
            raise DataError(f"{path} has other columns than {sources[0].name} ({column_diff(table.schema.names, first)});"
                            f" month {files.month} was not compacted")
    merged = pa.concat_tables(tables)  # parts sort by name = by hour, the month file holds earlier hours
    models = pc.unique(merged.column("model")).to_pylist() if "model" in first else [None]
    if len(models) != 1 or models[0] is None:
        raise DataError(f"month {files.month} of {files.folder.parent} holds predictions of models {models}; "
                        f"it was not compacted: move the parts of the other model away")
    pending = files.folder / f".{compacted_name(files.month)}{PENDING_SUFFIX}"
    with atomic_path(pending, DataError) as tmp:
        pq.write_table(merged, tmp)
    _finish(month_files(files.folder))
    return target


def _finish(files: MonthFiles) -> None:
    """The end of a compaction whose merged file is in place as ``.compacting``: remove the parts, rename it."""
    assert files.pending is not None
    for part in files.parts + ([files.compacted] if files.compacted is not None else []):
        _remove(part)
    os.replace(files.pending, files.folder / compacted_name(files.month))


def _remove(path: Path) -> None:
    """Remove a file merged into a month file (a test crashes here to check the order above)."""
    path.unlink(missing_ok=True)


def read_dataset(root: str | os.PathLike, columns: Sequence[str] | None = None,
                 start: pd.Timestamp | None = None) -> pd.DataFrame:
    """Every row of the dataset (each hour once, also after a crash mid-compaction), sorted by hour.

    ``start``: leave out the months before the one holding this hour. Columns: those of the files.
    """
    root = Path(root)
    tables = []
    for folder in month_folders(root):
        if start is not None and folder.name[len("month="):] < month_key(pd.DatetimeIndex([start]))[0]:
            continue
        tables += [_read(p, columns) for p in month_files(folder).readable()]
    if not tables:
        return pd.DataFrame(columns=list(columns) if columns else STATE_COLUMNS)
    frame = pa.concat_tables(tables).to_pandas()
    return frame.sort_values(["hour"], kind="stable").reset_index(drop=True)


@dataclass
class DatasetOutput:
    """The follower's view of a dataset folder: its lock, what it holds, appending (see the module docstring).

    ``locker(path, lock_path)``: the follower's cross-process lock (:func:`gnn_market.follow.output_lock`).
    """

    path: Path
    locker: Callable[[Path, Path], ContextManager[None]]
    columns: list[str] | None = None  # the newest month's, read by written()

    def lock(self) -> ContextManager[None]:
        month_folders(self.path)  # refuses a folder that is not a dataset before a lock file goes in
        try:
            self.path.mkdir(exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create {self.path}: {exc.strerror or exc}; pass another --out") from exc
        return self.locker(self.path, self.path / LOCK_NAME)

    def written(self, model: str, embeddings: bool) -> DatasetState:
        """Compact complete months (finishing an interrupted compaction), then read the state; refuses another
        model or embeddings setting. The result has ``last`` and ``symbols`` like the single file's state."""
        compact_complete(self.path)
        current = state(self.path)
        self.columns = current.columns
        if current.columns is not None:
            has_emb = any(c.startswith("emb_") for c in current.columns)
            if has_emb != embeddings:
                raise DataError(f"{self.path} was written {'with' if has_emb else 'without'} embedding columns; "
                                f"pass the same --no-embeddings setting or another --out")
            others = sorted(current.models - {model})
            if others:
                raise DataError(f"{self.path} holds predictions of model {others[0]}, not of this checkpoint "
                                f"({model}); pass another --out")
        return current

    def append(self, encoded: EncodedRange, model: str, embeddings: bool) -> None:
        frame = dataset_frame(encoded, model, embeddings)
        if self.columns is not None and list(frame.columns) != self.columns:
            raise DataError(f"{self.path} holds other columns than this run writes "
                            f"({column_diff(self.columns, list(frame.columns))}); pass another --out")
        append(self.path, frame)


def dataset_frame(encoded: EncodedRange, model: str, embeddings: bool) -> pd.DataFrame:
    """The rows of a dataset part: :meth:`EncodedRange.to_frame` with ``time`` named ``hour``, plus ``model``."""
    return encoded.to_frame(embeddings=embeddings).rename(columns={"time": "hour"}).assign(model=model)
