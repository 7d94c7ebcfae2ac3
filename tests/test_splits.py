"""gnn_market.training.splits: chronological folds with purge gaps."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from gnn_market.classes import IGNORE_INDEX
from gnn_market.errors import DataError
from gnn_market.training import TrainConfig, make_splits
from gnn_market.training.splits import candidate_hours


def test_split_is_chronological_with_purge_gaps() -> None:
    hours = np.arange(2000)
    (one,) = make_splits(hours, TrainConfig(purge_hours=101))
    assert one.train[-1] + 101 < one.val[0] and one.val[-1] + 101 < one.test[0]
    assert one.test[-1] == 1999
    folds = make_splits(hours, TrainConfig(folds=3))
    assert [len(f.test) for f in folds] == [100, 100, 100]
    for a, b in zip(folds, folds[1:]):
        assert a.test[-1] + 1 == b.test[0]          # consecutive test blocks
        assert len(a.train) < len(b.train)          # expanding training window
    for f in folds:
        assert f.train[-1] + 101 < f.val[0] and f.val[-1] + 101 < f.test[0]
    np.testing.assert_array_equal(folds[-1].test, make_splits(hours, TrainConfig(folds=1))[0].test[-100:])


def test_too_many_folds_says_how_many_the_data_supports() -> None:
    """Issue 11: '--folds 100' on 2058 hours said '2058 usable hours ... needs about 1826' (contradictory)."""
    hours = np.arange(2058)
    with pytest.raises(DataError) as err:
        make_splits(hours, TrainConfig(folds=100))
    message = str(err.value)
    assert "2058 usable hours support at most 12 fold(s)" in message and "--folds 12 or fewer" in message
    assert len(make_splits(hours, TrainConfig(folds=12))) == 12  # the number quoted works ...
    with pytest.raises(DataError, match="at most 12 fold"):
        make_splits(hours, TrainConfig(folds=13))  # ... and is the largest
    needed = int(message.split("give at least ")[1].split()[0])
    assert len(make_splits(np.arange(needed), TrainConfig(folds=100))) == 100
    with pytest.raises(DataError):
        make_splits(np.arange(needed - 1), TrainConfig(folds=100))


def test_too_few_hours_for_one_fold_quotes_the_exact_minimum() -> None:
    with pytest.raises(DataError, match="too few hours: 300 usable hours .* needs at least 322") as err:
        make_splits(np.arange(300), TrainConfig())
    assert "fold" in str(err.value)
    assert len(make_splits(np.arange(322), TrainConfig())) == 1
    with pytest.raises(DataError, match="needs at least 322"):
        make_splits(np.arange(321), TrainConfig(folds=3))


def _market(labelled: np.ndarray) -> SimpleNamespace:
    """The two arrays candidate_hours reads: labels [T, N] (IGNORE_INDEX where none) and features.valid."""
    classes = np.where(labelled, 1, IGNORE_INDEX)
    return SimpleNamespace(require_labels=lambda: SimpleNamespace(classes=classes),
                           features=SimpleNamespace(valid=np.ones_like(labelled, dtype=bool)))


@pytest.mark.parametrize("window", [2, 10, 100])
def test_the_first_candidate_hour_has_exactly_a_full_window(window) -> None:
    """Issue 21 item 18: a mutant admitting an incomplete first window survived.

    The correlation window of hour t is the ``window`` hours t-window+1 .. t, so the first hour with a
    full one is ``window - 1``; the hour before it (``window - 1`` hours behind it) is refused.
    """
    hours = candidate_hours(_market(np.ones((window + 30, 3), dtype=bool)), window)
    assert hours[0] == window - 1 and window - 2 not in hours
    np.testing.assert_array_equal(hours, np.arange(window - 1, window + 30))


def test_candidate_hours_need_a_labelled_valid_node_and_a_full_window() -> None:
    labelled = np.zeros((40, 2), dtype=bool)
    labelled[5, 0] = labelled[9, 1] = labelled[20, 0] = True     # 5 lacks a full window (10 hours)
    assert candidate_hours(_market(labelled), 10).tolist() == [9, 20]
    market = _market(labelled)
    market.features.valid[20, 0] = False                          # labelled but not valid: not a candidate
    assert candidate_hours(market, 10).tolist() == [9]
