"""Binance public market data, one concept per module.

* :mod:`.client`: :class:`BinanceClient` and :class:`ClientConfig` (python-binance
  per thread, timeouts, retries, 429/418, endpoints, bounded thread pool).
* :mod:`.rate_limit`: :class:`WeightLimiter`, request-weight pacing per host.
* :mod:`.universe`: the universe rules (stablecoins, leveraged tokens, index
  perps), ranking by quote volume, perp <-> spot mapping; ``SPOT``/``PERP``.
* :mod:`.parsers`: Binance payloads -> store-schema DataFrames.

Dependencies point one way: ``client`` imports the other three; ``universe``
uses ``parsers``; none of them imports ``client``.
"""
from .client import BinanceClient, ClientConfig
from .universe import PERP, SPOT, Universe

__all__ = ["BinanceClient", "ClientConfig", "PERP", "SPOT", "Universe"]
