"""How to reach Binance and how politely: :class:`ClientConfig`, without the client.

Its own module so that the data CLI's parser can show these defaults in ``--help``
without importing python-binance (which loads aiohttp; ``tests/test_cli_help.py``).
:mod:`gnn_market.binance.client` imports it from here and re-exports it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlparse

from ..errors import DataError


@dataclass
class ClientConfig:
    """How to reach Binance and how politely.

    Attributes:
        spot_url / futures_url: host roots (``/api/v3`` and ``/fapi/v1`` are appended).
        timeout: seconds per request (connect and read).
        max_retries: retries after the first attempt for retryable failures.
        backoff_base / backoff_cap: exponential backoff ``base * 2**n`` (full
            jitter), capped at ``backoff_cap`` seconds.
        max_retry_after: a 429 asking to wait longer than this is an error.
        weight_safety: fraction of the weight limit this client may use.
        weight_window: length of the weight window in seconds (Binance: 60).
        spot_weight_limit / futures_weight_limit: None = read from exchangeInfo
            (fallback 6000 / 2400).
        funding_calls / funding_window: the shared fundingRate budget.
        max_workers: concurrent requests (threads).
        spot_kline_page / futures_kline_page: page sizes (server maxima).
        seed: seed of the jitter RNG (None = random).
    """

    spot_url: str = "https://api.binance.com"
    futures_url: str = "https://fapi.binance.com"
    timeout: float = 10.0
    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_retry_after: float = 300.0
    weight_safety: float = 0.8
    weight_window: float = 60.0
    spot_weight_limit: int | None = None
    futures_weight_limit: int | None = None
    funding_calls: int = 500
    funding_window: float = 300.0
    max_workers: int = 16  # parsing and writes run in processes, so threads mostly wait (bench_refresh.py)
    spot_kline_page: int = 1000
    futures_kline_page: int = 1500
    seed: int | None = None

    def __post_init__(self) -> None:
        self.spot_url = _check_url(self.spot_url, "spot")
        self.futures_url = _check_url(self.futures_url, "futures")
        if not (math.isfinite(self.timeout) and self.timeout > 0) or self.max_retries < 0 or self.max_workers < 1:
            raise DataError(f"timeout must be a finite number > 0 (got {self.timeout}), max_retries >= 0 "
                            f"and max_workers >= 1")
        for name in ("backoff_base", "backoff_cap", "max_retry_after", "weight_window", "funding_window"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise DataError(f"{name} must be a finite number >= 0, got {value}")
        if not 0 < self.weight_safety <= 1:
            raise DataError("weight_safety must be in (0, 1]")


def _check_url(url: str, what: str) -> str:
    parsed = urlparse(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise DataError(f"bad {what} URL {url!r}: expected http(s)://host[:port]")
    return url.rstrip("/")
