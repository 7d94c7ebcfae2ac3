"""gnn_market.training.splits: chronological folds with purge gaps."""
from __future__ import annotations

import numpy as np

from gnn_market.training import TrainConfig, make_splits


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
