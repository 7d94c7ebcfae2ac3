"""Binance public market data, one concept per module.

* :mod:`.config`: :class:`ClientConfig` (hosts, timeouts, retries, pacing settings).
* :mod:`.client`: :class:`BinanceClient` (python-binance per thread, timeouts,
  retries, 429/418, endpoints, bounded thread pool); re-exports ``ClientConfig``.
* :mod:`.rate_limit`: :class:`WeightLimiter`, request-weight pacing per host.
* :mod:`.universe`: the universe rules (stablecoins, leveraged tokens, index
  perps), ranking by quote volume, perp <-> spot mapping; ``SPOT``/``PERP``.
* :mod:`.parsers`: Binance payloads -> store-schema DataFrames.

Dependencies point one way: ``client`` imports the other four; ``universe``
uses ``parsers``; none of them imports ``client``.

Only ``ClientConfig`` is imported eagerly: the other names load on first access
(PEP 562), so reading the config's defaults (``python -m gnn_market.data --help``)
does not import python-binance, aiohttp and pandas.
"""
from __future__ import annotations

import importlib
from typing import Any

from .config import ClientConfig

#: Public name -> the submodule that defines it (imported on first access).
_LAZY = {"BinanceClient": ".client", "PERP": ".universe", "SPOT": ".universe", "Universe": ".universe"}

__all__ = ["BinanceClient", "ClientConfig", "PERP", "SPOT", "Universe"]


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first access and cache the name in this package."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gnn_market.binance' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
