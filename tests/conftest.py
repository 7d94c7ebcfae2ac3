"""Shared pytest fixtures. Keep each group together and labelled."""
from __future__ import annotations

import pytest

# --------------------------------------------------------------------------- fake Binance (data layer)
# A local Binance-compatible server (tests/fake_binance.py) and a client config
# with tiny backoffs, so fault tests run in milliseconds. No real network.
from fake_binance import FakeBinance  # noqa: E402


@pytest.fixture
def fake_binance():
    """A started :class:`FakeBinance` with the default symbol set; stopped after the test."""
    with FakeBinance() as server:
        yield server


#: Test-sized client settings: short timeouts and backoffs, a seeded jitter RNG.
FAST_CLIENT = dict(timeout=0.5, max_retries=6, backoff_base=0.01, backoff_cap=0.05, max_workers=4, seed=0)


@pytest.fixture
def fast_config(fake_binance):
    """A :class:`ClientConfig` pointed at ``fake_binance`` with test-sized timeouts and backoffs."""
    from gnn_market.binance import ClientConfig

    return ClientConfig(spot_url=fake_binance.url, futures_url=fake_binance.url, **FAST_CLIENT)


@pytest.fixture
def client_for():
    """Factory ``client_for(server, **overrides)``: a :class:`BinanceClient` for a
    :class:`FakeBinance` with the :data:`FAST_CLIENT` settings, any of them overridden."""
    from gnn_market.binance import BinanceClient, ClientConfig

    def make(server: FakeBinance, **overrides) -> BinanceClient:
        settings = dict(FAST_CLIENT, spot_url=server.url, futures_url=server.url)
        settings.update(overrides)
        return BinanceClient(ClientConfig(**settings))

    return make
