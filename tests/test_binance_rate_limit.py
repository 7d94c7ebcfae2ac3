"""Weight pacing against the local fake server: the client never goes over the server's weight limit."""
from __future__ import annotations

from gnn_market.timeutil import HOUR_MS

from fake_binance import FakeBinance


def test_weight_pacing_never_exceeds_server_limit(client_for):
    # 1 s windows with a limit of 60: 40 klines (2) + 40 depth (5) = 280 weight
    # must spread over >= 5 windows without a single 429.
    with FakeBinance(spot_limit=60, window_s=1.0) as srv:
        client = client_for(srv, weight_window=1.0, weight_safety=0.9, max_workers=8)
        client.exchange_info("spot")  # adopts the server's 60 from rateLimits
        assert client.limiters["spot"].limit == 60
        now = srv.now_ms()
        syms = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"] * 10
        client.map_symbols(lambda s: (client.klines(s, "spot", now - 3 * HOUR_MS, now_ms=now),
                                      client.book(s, "spot")), syms)
        assert srv.count(status=429) == 0
        assert srv.peak_weight("spot") <= 60
        assert len(srv.weight["spot"]) >= 4


def test_used_weight_header_from_other_clients_slows_us_down(client_for):
    with FakeBinance(spot_limit=50, window_s=1.0) as srv:
        client = client_for(srv, weight_window=1.0, spot_weight_limit=50, weight_safety=1.0)
        srv.add_used_weight("spot", 45)  # another client on the same IP burnt 45 of 50 in this window
        for _ in range(6):
            client.book("BTCUSDT", "spot")
        assert srv.count(status=429) == 0
