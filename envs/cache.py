"""The environment's encoder cache: outputs for a range, kept on disk, keyed by data + model + range.

An entry is a folder ``encoded-<key>/`` in the layout of
:func:`gnn_market.export.save_encoded_dir` (uncompressed ``.npy`` files) plus
``checksum.json``, the SHA-256 of each of its other files. It is written to a
temporary folder and renamed, and read back memory-mapped: every environment
process built on one entry shares one copy of the arrays. ``key`` hashes the
panel's content (hours, symbols, market and every array in
:data:`gnn_market.panel.ARRAY_FIELDS`), the model's fingerprint and the range.

An entry is served only when its files match its checksum: one altered,
added, removed or unreadable is never served, it is rebuilt with a warning
saying why. A cache folder that cannot be written (read-only) still serves the
entries it holds; what is not there is encoded without caching, with a
warning. A ``cache_dir`` that is a file, or a lock that is a directory, is a
:class:`~gnn_market.errors.CacheError`.

Creating an entry holds a cross-process lock (``.encoded-<key>.lock`` beside
it), so environments started together (``SubprocVecEnv`` workers,
``gym.make_vec``) encode a range once: the first encodes and writes the
entry, the others wait and then map it.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock

from gnn_market.atomic import atomic_dir
from gnn_market.encoded import EncodedRange
from gnn_market.errors import CacheError, DataError
from gnn_market.export import load_encoded_dir, save_encoded_dir
from gnn_market.panel import ARRAY_FIELDS, Panel
from gnn_market.sources import cache_dir as user_cache_dir

from .protocols import EncoderOutput, ObservationEncoder

#: Part of every key: bump it when the entries' layout or meaning changes
#: (2: folders of .npy files; 3: with a checksum file).
CACHE_VERSION = 3
ENTRY_PREFIX = "encoded-"
#: In every entry: ``{"algorithm": "sha256", "files": {name: hex digest}}`` of its other files.
CHECKSUM_FILE = "checksum.json"


def default_cache_dir() -> Path:
    """``gnn_market.sources.cache_dir() / "env"``."""
    return user_cache_dir() / "env"


def check_cache_dir(cache: str | os.PathLike) -> Path:
    """``cache`` as a path; :class:`CacheError` when it, or a folder above it, is a file.

    A missing folder is fine (it is created when an entry is written).
    """
    path = Path(cache)
    for p in (path, *path.parents):
        if p.is_dir():
            break
        if p.exists():  # (follows links: a link to a folder is a folder)
            where = f"cache_dir {path}" if p == path else f"cache_dir {path}: {p}"
            raise CacheError(f"{where} is a file, not a folder; pass a folder (it is created if missing) "
                             f"or use_cache=False")
    return path


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


def lock_path(entry: Path) -> Path:
    """The lock file held while ``entry`` is being created (hidden, beside it)."""
    return entry.with_name(f".{entry.name}.lock")


def encode_cached(encoder: ObservationEncoder, panel: Panel, start: pd.Timestamp, end: pd.Timestamp,
                  batch_hours: int = 64, cache: str | os.PathLike | None = None) -> EncoderOutput:
    """``encoder.encode_range(panel, start, end)``, served from ``cache`` when it holds it.

    ``cache=None``, or an encoder without a fingerprint, computes every time. An
    entry that fails its checksum (altered, incomplete, unreadable) is rebuilt
    with a warning; a cache that cannot be written encodes without caching, with
    a warning. A fresh entry is read back memory-mapped after writing, so the
    process that wrote it shares it too.
    """
    model_key = encoder.fingerprint() if cache is not None else None
    if cache is None or model_key is None:  # unknown model identity: never risk serving another model's outputs
        return _encode(encoder, panel, start, end, batch_hours)
    path = entry_path(check_cache_dir(cache), panel, model_key, start, end)
    served = _served(path, warn=True)  # the common case, lock-free: an entry is complete once its folder exists
    if served is not None:
        return served
    return _create(encoder, panel, start, end, batch_hours, path)


def entry_problem(entry: Path) -> str | None:
    """What is wrong with the entry folder ``entry`` (None: its files are the ones its checksum records)."""
    try:
        recorded = json.loads((entry / CHECKSUM_FILE).read_text())["files"]
        if not isinstance(recorded, dict):
            raise TypeError(f"'files' is a {type(recorded).__name__}")
    except FileNotFoundError:
        return f"it has no {CHECKSUM_FILE}"
    except (OSError, ValueError, KeyError, TypeError) as exc:  # ValueError: not JSON (or not text)
        return f"its {CHECKSUM_FILE} is unreadable ({type(exc).__name__}: {exc})"
    try:
        actual = _file_digests(entry)
    except OSError as exc:
        return f"a file cannot be read ({exc.strerror or exc})"
    missing, extra = sorted(set(recorded) - set(actual)), sorted(set(actual) - set(recorded))
    if missing or extra:
        return f"its files differ from the ones written (missing {missing}, not written with it {extra})"
    changed = sorted(name for name, digest in actual.items() if digest != recorded[name])
    if changed:
        return f"{', '.join(changed)} changed since the entry was written (checksum mismatch)"
    return None


def _served(path: Path, warn: bool) -> EncoderOutput | None:
    """The entry at ``path`` if it exists and passes its check; None (with a warning if ``warn``) otherwise."""
    if not path.exists():
        return None
    problem = entry_problem(path)
    if problem is None:
        try:
            return load_encoded_dir(path)
        except DataError as exc:  # the checksum holds but the arrays do not fit together: written broken
            problem = str(exc)
    if warn:
        warnings.warn(f"ignoring cache entry {path}: {problem}; rebuilding it", UserWarning, stacklevel=4)
    return None


def _create(encoder: ObservationEncoder, panel: Panel, start: pd.Timestamp, end: pd.Timestamp,
            batch_hours: int, path: Path) -> EncoderOutput:
    """Encode and write the entry under its lock (or map the one another process wrote meanwhile)."""
    lock = lock_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # No timeout: encoding a long range takes minutes, and the OS drops the lock of a dead process.
        held = FileLock(lock)
        held.acquire()
    except IsADirectoryError as exc:
        raise CacheError(f"cache lock {lock} is a directory, not a file: remove it (rmdir), or pass another "
                         f"cache_dir= or use_cache=False") from exc
    except OSError as exc:  # read-only folder or file system, full disk: the cache is an optimisation
        return _uncached(encoder, panel, start, end, batch_hours, path, exc)
    try:
        served = _served(path, warn=False)  # another process wrote it while this one waited (or it is still bad)
        if served is not None:
            return served
        encoded = _encode(encoder, panel, start, end, batch_hours)
        try:
            _write_entry(_as_encoded_range(encoded), path)
        except (OSError, DataError) as exc:  # DataError: save_encoded_dir's "cannot write"
            _warn_uncached(path, exc)
            return encoded
    finally:
        held.release()
    return load_encoded_dir(path)


def _write_entry(encoded: EncodedRange, path: Path) -> None:
    """Write ``encoded`` and its checksum as one folder, renamed onto ``path`` only once complete."""
    with atomic_dir(path, OSError) as tmp:
        save_encoded_dir(encoded, tmp)  # renames its own temporary folder onto the empty `tmp`
        record = {"algorithm": "sha256", "files": _file_digests(tmp)}
        (tmp / CHECKSUM_FILE).write_text(json.dumps(record, indent=1, sort_keys=True))


def _file_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every entry in ``folder`` but the checksum file (a sub-folder is unreadable: IsADirectoryError)."""
    digests = {}
    for item in sorted(folder.iterdir()):
        if item.name != CHECKSUM_FILE:
            with open(item, "rb") as fh:
                digests[item.name] = hashlib.file_digest(fh, "sha256").hexdigest()
    return digests


def _uncached(encoder: ObservationEncoder, panel: Panel, start: pd.Timestamp, end: pd.Timestamp,
              batch_hours: int, path: Path, exc: OSError) -> EncoderOutput:
    _warn_uncached(path, exc)
    return _encode(encoder, panel, start, end, batch_hours)


def _warn_uncached(path: Path, exc: Exception) -> None:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    warnings.warn(f"cannot write to the cache {path.parent} ({reason}): encoding without caching; pass a "
                  f"writable cache_dir= to keep the outputs, or use_cache=False to silence this", UserWarning,
                  stacklevel=5)


def _encode(encoder: ObservationEncoder, panel: Panel, start: pd.Timestamp, end: pd.Timestamp,
            batch_hours: int) -> EncoderOutput:
    # progress=None: a progress bar only on a terminal (encoding a long range takes minutes)
    return encoder.encode_range(panel, start=start, end=end, batch_hours=batch_hours, progress=None)


def _as_encoded_range(encoded: EncoderOutput) -> EncodedRange:
    if isinstance(encoded, EncodedRange):
        return encoded
    return EncodedRange(times=pd.DatetimeIndex(encoded.times), symbols=list(encoded.symbols), probs=encoded.probs,
                        embeddings=encoded.embeddings, mask=encoded.mask)
