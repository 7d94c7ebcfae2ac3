"""Time conventions shared by the store, the CLIs and the environment.

Every hourly row is keyed by the UTC open time of its candle (``open_time``);
Binance payloads carry milliseconds since the epoch. This module has no
dependency inside the package, so any layer can parse a time without pulling
in the store.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from .errors import DataError

HOUR = pd.Timedelta(hours=1)
HOUR_MS = 3_600_000


def parse_utc(value: object, what: str = "time") -> pd.Timestamp | None:
    """A time given by a user (ISO string, datetime, Timestamp) -> UTC Timestamp; None stays None.

    Naive times are taken as UTC. Unparseable input, and a bare number (which
    pandas would read as nanoseconds since 1970), raise :class:`DataError`
    naming ``what`` (e.g. the command-line flag).
    """
    if value is None:
        return None
    if isinstance(value, (bool, int, float, complex, np.number, np.bool_)):  # pandas: nanoseconds since 1970
        raise DataError(f"{what}: {value!r} is a number, not a time (use an ISO string such as 2023-09-01T00:00, "
                        f"a datetime or a Timestamp)")
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{what}: cannot parse {value!r} as a time (use ISO, e.g. 2023-09-01T00:00)") from exc
    if ts is pd.NaT:
        raise DataError(f"{what}: {value!r} is not a time")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def to_utc_index(values: Iterable, name: str) -> pd.DatetimeIndex:
    """Convert datetimes / ISO strings / pandas timestamps to a UTC ns index."""
    idx = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    return idx.as_unit("ns").rename(name)


#: Largest |ms| whose ns value fits int64 (year 2262).
_MAX_MS = np.iinfo("int64").max // 1_000_000


def ms_to_utc_index(ms: Iterable, name: str) -> pd.DatetimeIndex:
    """Milliseconds since the epoch -> UTC ns index."""
    arr = np.asarray(list(ms) if not isinstance(ms, (np.ndarray, pd.Series, pd.Index)) else ms, dtype="int64")
    if len(arr) and (arr.min() < -_MAX_MS or arr.max() > _MAX_MS):
        raise ValueError(f"{name}: milliseconds out of the datetime64[ns] range")
    # ms -> ns by one multiplication: pd.to_datetime(unit="ms") costs ~10x more on the few rows of a refresh.
    return pd.DatetimeIndex((arr * 1_000_000).view("M8[ns]"), name=name).tz_localize("UTC")
