"""Point-in-time ``--top N``: the universe is ranked on hours before the first validation hour only."""
from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest

from gnn_market.errors import DataError
from gnn_market.panel import load_panel, rank_top_before
from gnn_market.store import Store
from gnn_market.training import TrainConfig, run_training
from gnn_market.training.universe import liquidity_before, load_training_market, rank_universe

from train_fixtures import TINY_TRAIN, tiny_store

TOP = 3


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tiny_store(tmp_path_factory.mktemp("universe"))


def cfg(store: Store, **kw) -> TrainConfig:
    return TrainConfig(store=str(store.root), top=TOP, **{**TINY_TRAIN, **kw})


def test_ranking_over_everything_equals_load_panel_top(store) -> None:
    panel = load_panel(store)
    after_end = panel.times[-1] + pd.Timedelta(hours=1)
    assert rank_universe(panel, TOP, after_end) == load_panel(store, top=TOP).symbols


def test_volume_x_close_stands_in_for_missing_quote_volume(store) -> None:
    panel = load_panel(store)
    no_quote = dataclasses.replace(panel, quote_volume=np.full(panel.close.shape, np.nan))
    cut = panel.times[200]
    got = liquidity_before(no_quote, cut)
    real = panel.mask[:200] & ~panel.filled[:200]
    for n, sym in enumerate(panel.symbols):
        expect = np.sum((panel.volume[:200, n] * panel.close[:200, n])[real[:, n]])
        assert got[sym] == pytest.approx(expect, rel=1e-12)


def test_later_volume_does_not_change_the_universe(store, tmp_path) -> None:
    market, splits, data = load_training_market(store, cfg(store))
    first_val = market.times[splits[0].val[0]]
    assert pd.Timestamp(data["universe_ranked_until"]) < first_val
    assert data["symbols"] == market.panel.symbols and len(data["symbols"]) == TOP
    # make every pair outside the universe 1000x more liquid from the first validation hour on
    copy = Store(shutil.copytree(store.root, tmp_path / "perturbed"))
    for sym in sorted(set(copy.symbols()) - set(data["symbols"])):
        k = copy.klines(sym)
        later = k.index >= first_val
        k.loc[later, ["volume", "quote_volume"]] *= 1000.0
        copy.write_klines(sym, k)
    assert set(load_panel(copy, top=TOP).symbols) != set(data["symbols"])  # hindsight ranking would change
    _, _, again = load_training_market(copy, cfg(copy))
    assert again == data


def test_run_records_the_universe(store, tmp_path) -> None:
    m = run_training(cfg(store, out=str(tmp_path / "run"), ablation=False, baselines=False))
    assert m["data"]["top"] == TOP and len(m["data"]["symbols"]) == TOP == m["split"]["symbols"]
    first_val = pd.Timestamp(m["split"]["folds"][0]["val"]["range"][0])
    assert pd.Timestamp(m["data"]["universe_ranked_until"]) < first_val


def test_bad_top(store) -> None:
    with pytest.raises(DataError):
        rank_universe(load_panel(store), 0, pd.Timestamp("2030-01-01", tz="UTC"))


def test_store_ranking_before_a_range_is_training_s_rule(store) -> None:
    """``rank_top_before`` (load_market, encode_range, the env factory) and ``rank_universe`` (train --top)
    choose the same pairs: one point-in-time rule, whatever the cut and the candidate symbols."""
    panel = load_panel(store)
    names = sorted(store.symbols())[::2]
    for cut in (panel.times[24], panel.times[200], panel.times[-1]):
        for top in (1, TOP, 50):
            assert rank_top_before(store, "spot", top, cut) == rank_universe(panel, top, cut)
            assert rank_top_before(store, "spot", top, cut, names) == rank_universe(panel.select(names), top, cut)
