"""Payload parsers without a server: snapshot stamps and an empty order book."""
from __future__ import annotations

import pytest

from gnn_market.binance.parsers import book_frame, stamp_ms
from gnn_market.errors import DataError


def test_stamp_rules_and_empty_book():
    hour = 1_709_294_400_000
    assert stamp_ms(hour + 12_345) == hour
    assert stamp_ms(hour + 1_800_500) == hour + 1_800_000
    with pytest.raises(DataError):
        book_frame({"bids": [], "asks": [["1", "1"]]}, "X", hour)
