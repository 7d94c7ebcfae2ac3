"""The store's format marker ``STORE.json``: what it may say, and what a reader or writer makes of it.

``{"format": "cryptograph-store", "version": 3, "book_time": "capture" | "floored"}``; see
:mod:`gnn_market.store` for the meaning of ``book_time`` and :mod:`gnn_market.migrate` for formats 1-2.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import StoreError
from .store_layout import LAYOUT_VERSION, LegacyStoreError, has_legacy_files, legacy_message

#: ``format`` and ``version`` of ``STORE.json`` this cryptograph writes (format 3: one file per month).
STORE_FORMAT = {"format": "cryptograph-store", "version": LAYOUT_VERSION}
#: Meanings of a book ``snapshot_time`` (``STORE.json`` ``book_time``): true capture time, or floored (format 1).
BOOK_TIMES = ("capture", "floored")


def marker_text(book_time: str = "capture") -> str:
    """The ``STORE.json`` of a format 3 store."""
    return json.dumps({**STORE_FORMAT, "book_time": book_time}) + "\n"


def read_marker(root: Path) -> dict | None:
    """``STORE.json`` as checked by :func:`format_version` (None: no marker); any version >= 1 accepted.

    For :mod:`gnn_market.migrate`, which must read old markers; everything else calls :func:`format_version`.
    """
    marker = root / "STORE.json"
    if not marker.exists() and not marker.is_symlink():
        return None
    try:
        text = marker.read_text(encoding="utf-8")
        info = json.loads(text)
    except (OSError, ValueError) as exc:  # a folder, a dangling link, empty, garbage, not UTF-8
        raise StoreError(f"unreadable store marker {marker}: {getattr(exc, 'strerror', None) or exc}; "
                         f"a cryptograph store's marker reads {marker_text().strip()}") from exc
    version = info.get("version") if isinstance(info, dict) else None
    if (not isinstance(info, dict) or info.get("format") != STORE_FORMAT["format"]
            or type(version) is not int or version < 1):
        raise StoreError(f"store marker {marker} is not a cryptograph store marker ({text.strip()[:80]!r}; "
                         f"expected {marker_text().strip()}): is {root} a cryptograph store?")
    if version > STORE_FORMAT["version"]:
        raise StoreError(f"store {root} has format version {version}, newer than this "
                         f"cryptograph ({STORE_FORMAT['version']}): upgrade cryptograph to read it")
    if version == STORE_FORMAT["version"] and info.get("book_time", "capture") not in BOOK_TIMES:
        raise StoreError(f"store marker {marker} has book_time {info.get('book_time')!r}; expected one of "
                         f"{', '.join(BOOK_TIMES)}")
    return info


def format_version(root: Path) -> int:
    """``version`` of ``STORE.json`` (3; a folder without marker or old files is a new store, 3 too).

    Raises :class:`LegacyStoreError` (naming ``migrate``) for a store in the one-file-per-symbol
    layout of formats 1-2, :class:`StoreError` for a newer or damaged marker.
    """
    info = read_marker(root)
    if info is None:
        if has_legacy_files(root):
            raise LegacyStoreError(legacy_message(root, "has no STORE.json and holds files in the "
                                                             "one-file-per-symbol layout of format 1"))
        return STORE_FORMAT["version"]
    if info["version"] < STORE_FORMAT["version"]:
        raise LegacyStoreError(legacy_message(root, f"is in format {info['version']} (one file per symbol)"))
    if has_legacy_files(root):
        raise LegacyStoreError(legacy_message(root, "holds files in the one-file-per-symbol layout of "
                                                         "format 1-2 (e.g. klines/spot/<SYMBOL>.parquet)"))
    return info["version"]


def book_time(root: Path) -> str:
    """What a book ``snapshot_time`` means here: ``"capture"`` or ``"floored"`` (format 1, see module doc)."""
    format_version(root)
    info = read_marker(root)
    return "capture" if info is None else info.get("book_time", "capture")
