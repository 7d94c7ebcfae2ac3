"""Panel alignment: grid, masks, causal short-gap fill, book and funding timing."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gnn_market.errors import DataError
from gnn_market.panel import ARRAY_FIELDS, Panel, load_panel, panel_fields
from gnn_market.sample import sample_store
from gnn_market.store import Store

from graph_fixtures import START, build_store, random_klines

H = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return build_store(tmp_path_factory.mktemp("panel_store"))


@pytest.fixture(scope="module")
def panel(store):
    return load_panel(store)


def test_grid_spans_all_candles_without_holes(panel):
    assert panel.symbols == ["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT"]
    assert panel.times[0] == START and len(panel.times) == 400
    assert (np.diff(panel.times.asi8) == H.value).all()
    assert str(panel.times.tz) == "UTC"
    for name in ("open", "close", "volume", "mask", "best_bid", "funding_rate", "has_book"):
        assert getattr(panel, name).shape == (400, 4)


def test_listing_and_delisting_are_masked_not_invented(panel):
    c, d = panel.symbols.index("CCCUSDT"), panel.symbols.index("DDDUSDT")
    assert not panel.mask[:120, c].any() and np.isnan(panel.close[:120, c]).all()
    assert panel.mask[120:, c].all()
    # delisted after row 339: causal fill covers 3 hours, then masked
    assert panel.mask[:340, d].all() and panel.filled[340:343, d].all()
    assert not panel.mask[343:, d].any() and np.isnan(panel.close[343:, d]).all()


def test_short_gap_filled_and_flagged(panel, store):
    b = panel.symbols.index("BBBUSDT")
    raw = store.klines("BBBUSDT")
    assert panel.filled[50:52, b].all() and panel.mask[50:52, b].all()
    last_close = raw["close"].iloc[49]
    for col in ("open", "high", "low", "close"):
        assert np.allclose(getattr(panel, col)[50:52, b], last_close)
    assert (panel.volume[50:52, b] == 0).all()
    assert not panel.filled[49, b] and not panel.filled[52, b]
    assert panel.filled.sum() == 2 + 3 + 3  # short gap, start of the long gap, DDD after delisting


def test_long_gap_fills_only_first_hours_causally(panel):
    b = panel.symbols.index("BBBUSDT")
    assert panel.filled[200:203, b].all()  # nobody knows at 200..202 that the gap is long
    assert not panel.mask[203:206, b].any() and np.isnan(panel.close[203:206, b]).all()
    assert panel.mask[206, b] and not panel.filled[206, b]


def test_no_fill_when_disabled(store):
    p = load_panel(store, max_fill_hours=0)
    assert not p.filled.any()
    assert not p.mask[50:52, p.symbols.index("BBBUSDT")].any()


def test_book_snapshot_for_row_t_is_taken_before_t_plus_1h(panel, store):
    a = panel.symbols.index("AAAUSDT")
    book = store.book("AAAUSDT")
    # fixture snapshots are taken 3 s before open_time + 1h (the close of candle t)
    t = 10
    snap = book.loc[panel.times[t] + H - pd.Timedelta(seconds=3)]
    assert panel.best_bid[t, a] == snap["best_bid"] and panel.ask_qty[t, a] == snap["ask_qty"]
    assert panel.has_book[:, a].all()
    assert not panel.has_book[:, panel.symbols.index("DDDUSDT")].any()


def test_book_window_ends_at_the_close(tmp_path):
    """Row t takes the latest snapshot in (t + 1h - 5 min, t + 1h]: never one taken after the close."""
    times = pd.date_range(START, periods=7, freq="h", tz="UTC")
    s = Store(tmp_path)
    s.write_klines("XXUSDT", random_klines(np.random.default_rng(1), times))
    snaps = pd.DatetimeIndex([times[0] + H + pd.Timedelta(seconds=1),  # 1 s after row 0's close: no row
                              times[1] + H - pd.Timedelta(minutes=10),  # too early for row 1
                              times[2] + H,  # exactly at the close of row 2
                              times[3] + H - pd.Timedelta(minutes=4, seconds=59),  # early in row 3's window
                              times[3] + H - pd.Timedelta(seconds=30),  # the latest one counts
                              times[4] + H - pd.Timedelta(minutes=5),  # window is open on the left
                              times[5] + H + pd.Timedelta(minutes=4)], name="snapshot_time")  # after: no row
    s.write_book("XXUSDT", pd.DataFrame({"best_bid": [1.0, 2.0, 3.0, 4.0, 4.5, 6.0, 7.0], "best_ask": 9.0,
                                         "bid_qty": 1.0, "ask_qty": 1.0}, index=snaps))
    p = load_panel(s)
    assert p.has_book[:, 0].tolist() == [False, False, True, True, False, False, False]
    assert p.best_bid[2, 0] == 3.0 and p.best_bid[3, 0] == 4.5
    wide = load_panel(s, book_tolerance=pd.Timedelta(minutes=15))
    assert wide.has_book[:, 0].tolist() == [False, True, True, True, True, False, False]
    with pytest.raises(DataError, match="book_tolerance"):
        load_panel(s, book_tolerance=pd.Timedelta(0))


def test_book_after_the_close_never_changes_earlier_rows(store, panel, tmp_path):
    """Perturbation: every snapshot taken after t + 1h changed or added -> rows <= t identical."""
    t = 150
    close = panel.times[t] + H
    out = Store(tmp_path / "perturbed")
    for sym in store.symbols("spot"):
        out.write_klines(sym, store.klines(sym))
        book = store.book(sym)
        if not len(book):
            continue
        late = book.index > close
        book.loc[late, ["best_bid", "best_ask"]] *= 1.5
        book.loc[late, "bid_qty"] = 0.0
        # and a snapshot 1 ms after the close, which an old "first snapshot after the hour" rule would take
        extra = book.iloc[[0]].copy()
        extra.index = pd.DatetimeIndex([close + pd.Timedelta(milliseconds=1)], name="snapshot_time")
        extra[["best_bid", "best_ask"]] = [1e-3, 2e-3]
        out.write_book(sym, pd.concat([book, extra]).sort_index())
    changed = load_panel(out)
    for name in ("best_bid", "best_ask", "bid_qty", "ask_qty", "has_book"):
        a, b = getattr(panel, name), getattr(changed, name)
        np.testing.assert_array_equal(a[: t + 1], b[: t + 1], err_msg=name)
        assert not np.array_equal(a[t + 1:], b[t + 1:]) or name == "has_book"


def test_legacy_store_reads_on_the_hour_stamps_as_taken_up_to_5_min_later(tmp_path):
    """Format 1 collectors floored a snapshot taken up to 5 min after the hour to the hour."""
    import json

    times = pd.date_range(START, periods=4, freq="h", tz="UTC")
    s = Store(tmp_path)
    s.write_klines("XXUSDT", random_klines(np.random.default_rng(4), times))
    snaps = pd.DatetimeIndex([times[1], times[2] - pd.Timedelta(seconds=20)], name="snapshot_time")
    s.write_book("XXUSDT", pd.DataFrame({"best_bid": [1.0, 2.0], "best_ask": 3.0, "bid_qty": 1.0,
                                         "ask_qty": 1.0}, index=snaps))
    assert s.format_version() == 3 and s.book_time() == "capture"
    assert load_panel(s).has_book[:, 0].tolist() == [True, True, False, False]  # true capture times
    (tmp_path / "STORE.json").write_text(json.dumps({"format": "cryptograph-store", "version": 3,
                                                     "book_time": "floored"}))  # a migrated format 1 store
    legacy = load_panel(s)
    # the floored stamp at times[1] may hide 5 min of candle 1: it serves no row; the other gains 1 s, still inside
    assert legacy.has_book[:, 0].tolist() == [False, True, False, False] and legacy.best_bid[1, 0] == 2.0


def test_funding_is_latest_settled_by_t_plus_1h(tmp_path):
    times = pd.date_range(START, periods=12, freq="h", tz="UTC")
    s = Store(tmp_path)
    s.write_klines("XXUSDT", random_klines(np.random.default_rng(2), times))
    s.write_klines("YYUSDT", random_klines(np.random.default_rng(3), times))
    events = pd.DatetimeIndex([times[3], times[8] + pd.Timedelta(seconds=1)], name="funding_time")
    s.write_funding("XXUSDT", pd.DataFrame({"funding_rate": [0.001, 0.002]}, index=events))
    p = load_panel(s)
    x = p.funding_rate[:, 0]
    assert np.isnan(x[:2]).all() and not p.has_funding[:2, 0].any()
    assert (x[2:8] == 0.001).all()  # row 2 is decided at hour 3, when the first event settled
    assert (x[8:] == 0.002).all()  # settled 1 s after hour 8: known at row 8's decision time (hour 9)
    assert not p.has_funding[:, 1].any() and np.isnan(p.funding_rate[:, 1]).all()


def test_perp_funding_events_sum_the_settlements_inside_each_hour(tmp_path):
    """Row t gets the events with ``t < funding_time <= t + 1h``, summed; computed by hand below."""
    times = pd.date_range(START, periods=12, freq="h", tz="UTC")
    s = Store(tmp_path)
    for sym, seed in (("XXUSDT", 2), ("YYUSDT", 3)):
        s.write_klines(sym, random_klines(np.random.default_rng(seed), times), market="perp")
    events = pd.DatetimeIndex([times[0],                               # at the first row's open: no row
                               times[4],                               # exactly t + 1h of row 3
                               times[6] + pd.Timedelta(milliseconds=5),  # just after row 5's t + 1h: row 6
                               times[7] + pd.Timedelta(minutes=10),    # two in row 7's hour: summed
                               times[8], times[9] + pd.Timedelta(hours=1) - pd.Timedelta(seconds=1),
                               times[11] + pd.Timedelta(hours=1),      # t + 1h of the last row
                               times[11] + pd.Timedelta(hours=2)],     # after the grid: no row
                              name="funding_time")
    rates = [0.5, 0.001, 0.002, 0.003, 0.004, np.nan, 0.006, 0.7]      # the NaN event is skipped
    s.write_funding("XXUSDT", pd.DataFrame({"funding_rate": rates}, index=events))
    p = load_panel(s, market="perp")
    expected = np.zeros(12)
    expected[3], expected[6], expected[7], expected[11] = 0.001, 0.002, 0.003 + 0.004, 0.006
    np.testing.assert_array_equal(p.funding_events[:, 0], expected)
    assert p.funding_events.shape == (12, 2) and not p.funding_events[:, 1].any()
    # the latest-rate column is unchanged by this: row 3 is decided at hour 4, when 0.001 settled
    assert p.funding_rate[3, 0] == 0.001 and p.funding_rate[2, 0] == 0.5
    sliced, picked = p.slice(times[3], times[7]), p.select(["YYUSDT", "XXUSDT"])
    np.testing.assert_array_equal(sliced.funding_events[:, 0], expected[3:8])
    np.testing.assert_array_equal(picked.funding_events[:, 1], expected)
    assert load_panel(s, market="perp", start=times[2], end=times[7]).funding_events[:, 0].tolist() == \
        expected[2:8].tolist()


def test_spot_panel_has_no_funding_events_and_cuts_keep_it_absent(panel):
    assert panel.funding_events is None
    assert panel.slice(end=panel.times[5]).funding_events is None
    assert panel.select(panel.symbols[:1]).funding_events is None


def test_array_fields_list_every_t_by_n_field():
    scalars = {"times", "symbols", "market"}
    assert panel_fields() == list(ARRAY_FIELDS)
    assert set(ARRAY_FIELDS) == {f for f in Panel.__dataclass_fields__ if f not in scalars}


def test_symbols_top_range_and_slice(store):
    p = load_panel(store, symbols=["CCCUSDT", "AAAUSDT"], start=START + 100 * H, end=START + 199 * H)
    assert p.symbols == ["CCCUSDT", "AAAUSDT"] and len(p.times) == 100
    assert p.times[0] == START + 100 * H
    with pytest.raises(DataError):
        load_panel(store, symbols=["NOPEUSDT"])
    top = load_panel(store, top=2)
    assert len(top.symbols) == 2 and "AAAUSDT" in top.symbols  # AAA has the largest quote volume
    part = load_panel(store).slice(START + 10 * H, START + 19 * H)
    assert len(part.times) == 10 and part.close.shape == (10, 4)
    sel = load_panel(store).select(["DDDUSDT"])
    assert sel.symbols == ["DDDUSDT"] and sel.mask.shape == (400, 1)


def test_sample_panel_loads_with_ohlcv_only():
    p = load_panel(sample_store(), symbols=["BTCUSDT", "ETHUSDT"])
    assert p.times[0] == pd.Timestamp("2023-01-01", tz="UTC")
    assert not p.has_book.any() and not p.has_funding.any()
    # 2023-03-24 13:00 is missing in every file: a 1-hour gap, filled
    row = p.times.get_loc(pd.Timestamp("2023-03-24 13:00", tz="UTC"))
    assert p.filled[row].all() and p.mask[row].all()
    assert np.isnan(p.quote_volume).all()
