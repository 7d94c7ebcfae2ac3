"""What :meth:`gnn_market.store.Store.repair` keeps and drops: the backup folder of one run, and the rows it removes."""
from __future__ import annotations

import os
import secrets
import shutil
from contextlib import suppress
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import StoreError
from .store_layout import outside_month
from .store_schema import FileReport, _Kind, row_faults


class BackupRun:
    """The backup folder of one :meth:`Store.repair` run, created on its first copy, never shared.

    Its name holds the UTC time, the process id and a random suffix, and it is created with
    ``exist_ok=False``: two runs in the same second (or on two hosts sharing the store) can
    never write into the same folder.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.folder: Path | None = None

    def _make_folder(self) -> Path:
        stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
        self.base.mkdir(parents=True, exist_ok=True)
        while True:
            folder = self.base / f"{stamp}-{os.getpid()}-{secrets.token_hex(4)}"
            try:
                folder.mkdir(exist_ok=False)
                return folder
            except FileExistsError:
                continue  # a 1-in-4e9 clash: draw another suffix

    def copy(self, source: Path, relative: Path) -> Path:
        """Copy ``source`` to ``<folder>/<relative>`` and flush it; on failure remove what was made."""
        created_folder = False
        backup: Path | None = None
        try:
            if self.folder is None:
                self.folder = self._make_folder()
                created_folder = True
            backup = self.folder / relative
            backup.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, backup)  # follows a symlinked store file: the data is backed up
            with open(backup, "rb+") as fh:
                os.fsync(fh.fileno())  # on disk before the original is rewritten
        except OSError as exc:
            self._discard(backup, created_folder)
            raise StoreError(f"cannot back up {source} before repairing it: {exc.strerror or exc}; "
                             f"that file was not changed and no partial backup was left") from exc
        return backup

    def _discard(self, backup: Path | None, created_folder: bool) -> None:
        """Remove a partial backup file and the folders this run made empty (a full disk leaves no 0-byte copy)."""
        with suppress(OSError):
            if backup is not None:
                backup.unlink(missing_ok=True)
        if self.folder is None:
            return
        if backup is not None:
            current = backup.parent
            while current != self.folder and self.folder in current.parents:
                with suppress(OSError):
                    current.rmdir()  # only if empty: another file of this run may be in it
                current = current.parent
        if created_folder:
            with suppress(OSError):
                self.folder.rmdir()
                self.folder = None


def repaired_so_far(done: list[FileReport]) -> str:
    """`` (already repaired in this run: ...)`` for a failure message; empty when nothing was."""
    if not done:
        return "; no file was repaired in this run"
    return "; already repaired in this run: " + ", ".join(
        f"{r.kind}/{r.market + '/' if r.market else ''}{r.symbol} (original in {r.backup})" for r in done)


def repaired(df: pd.DataFrame, kind: _Kind, month_key: int | None = None) -> pd.DataFrame:
    """``df`` without rows breaking a value rule (or, for a month file, outside its month ``month_key``),
    the last of repeated timestamps kept, sorted."""
    bad = np.zeros(len(df), dtype=bool)
    for mask in row_faults(df, kind).values():
        bad |= mask
    if month_key is not None:
        bad |= outside_month(df.index, month_key)
    fixed = df[~bad]
    return fixed[~fixed.index.duplicated(keep="last")].sort_index(kind="stable")
