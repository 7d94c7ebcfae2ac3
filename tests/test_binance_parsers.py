"""Payload parsers without a server: snapshot capture times and an empty order book."""
from __future__ import annotations

import pytest

from gnn_market.binance.parsers import book_frame, snapshot_ms
from gnn_market.errors import DataError


def test_snapshot_time_is_the_true_capture_time_never_rounded():
    hour = 1_709_294_400_000
    # a snapshot received 12.345 s after the hour was taken after the close: it must not be stamped at the hour
    assert snapshot_ms({"bids": [], "asks": []}, hour + 12_345) == hour + 12_345
    assert snapshot_ms({}, hour - 30_000) == hour - 30_000  # taken before the close stays before it
    assert snapshot_ms({"E": hour + 7, "T": hour + 5}, hour + 900) == hour + 7  # futures: the server's event time
    assert snapshot_ms({"E": "bad"}, hour + 900) == hour + 900
    row = book_frame({"bids": [["1", "2"]], "asks": [["3", "4"]]}, "X", hour + 12_345)
    assert row.index[0].value == (hour + 12_345) * 1_000_000
    with pytest.raises(DataError):
        book_frame({"bids": [], "asks": [["1", "1"]]}, "X", hour)
