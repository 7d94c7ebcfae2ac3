"""Metrics against values computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gnn_market.classes import IGNORE_INDEX
from gnn_market.training.metrics import class_balance, classification_metrics, select_labelled

# true:  D D S S S U
# pred:  D S S S U U
Y = np.array([0, 0, 1, 1, 1, 2])
P = np.array([0, 1, 1, 1, 2, 2])


def test_hand_computed_values() -> None:
    m = classification_metrics(Y, P)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    # DOWN: tp1 fp0 fn1 -> 2/3; SIDEWAYS: tp2 fp1 fn1 -> 2/3; UP: tp1 fp1 fn0 -> 2/3
    assert m["f1"] == pytest.approx({"DOWN": 2 / 3, "SIDEWAYS": 2 / 3, "UP": 2 / 3})
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]
    assert m["class_balance"] == pytest.approx({"DOWN": 2 / 6, "SIDEWAYS": 3 / 6, "UP": 1 / 6})
    assert m["pred_balance"] == pytest.approx({"DOWN": 1 / 6, "SIDEWAYS": 3 / 6, "UP": 2 / 6})
    # Multiclass MCC (Gorodkin): c = 4 correct, s = 6, t_k = (2,3,1), p_k = (1,3,2)
    c, s, t, p = 4, 6, np.array([2, 3, 1]), np.array([1, 3, 2])
    mcc = (c * s - t @ p) / math.sqrt((s * s - p @ p) * (s * s - t @ t))
    assert m["mcc"] == pytest.approx(mcc)
    assert m["log_loss"] is None and m["brier"] is None


def test_log_loss_by_hand_and_clipped() -> None:
    probs = np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]])
    m = classification_metrics(np.array([0, 1]), np.array([0, 1]), probs)
    assert m["log_loss"] == pytest.approx(-(math.log(0.5) + math.log(0.8)) / 2)
    # Brier: sum over classes of (p - onehot)^2, averaged over rows
    assert m["brier"] == pytest.approx(((0.5 ** 2 + 0.25 ** 2 + 0.25 ** 2) + (0.1 ** 2 + 0.2 ** 2 + 0.1 ** 2)) / 2)
    sure_miss = classification_metrics(np.array([2]), np.array([0]), np.array([[1.0, 0.0, 0.0]]))
    assert math.isfinite(sure_miss["log_loss"]) and sure_miss["log_loss"] > 10


def test_perfect_and_constant_predictions() -> None:
    perfect = classification_metrics(Y, Y)
    assert perfect["accuracy"] == 1 and perfect["macro_f1"] == 1 and perfect["mcc"] == pytest.approx(1)
    constant = classification_metrics(Y, np.ones_like(Y))
    assert constant["mcc"] == 0
    assert constant["macro_f1"] == pytest.approx((2 * 3 / 9) / 3)  # only SIDEWAYS scores: 2*0.5*1/1.5


def test_select_labelled_and_balance() -> None:
    y = np.array([0, IGNORE_INDEX, 2, IGNORE_INDEX])
    extra = np.array([10, 11, 12, 13])
    y2, e2 = select_labelled(y, extra)
    assert y2.tolist() == [0, 2] and e2.tolist() == [10, 12]
    assert class_balance(np.array([1, 1, 2, 0])) == {"DOWN": 0.25, "SIDEWAYS": 0.5, "UP": 0.25}


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        classification_metrics(np.array([]), np.array([]))
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 1]), np.array([0]))
