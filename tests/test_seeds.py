"""Several training seeds: mean ± sd per metric, per-seed results, model.pt = first seed, GNN-vs-model bootstrap."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from gnn_market.checkpoint import load_checkpoint
from gnn_market.errors import DataError
from gnn_market.significance import DEFAULT_BOOTSTRAP_SEED, paired_day_bootstrap
from gnn_market.train import build_parser, config_from_args
from gnn_market.training import TrainConfig, run_training
from gnn_market.training.evaluation import aggregate_seeds, significance_vs_gnn

from train_fixtures import TINY_TRAIN, tiny_store


def table(acc: float, f1_down: float, ll: float | None) -> dict:
    return {"m": {"n": 10, "accuracy": acc, "log_loss": ll, "f1": {"DOWN": f1_down, "UP": 0.5},
                  "confusion": [[1, 2], [3, 4]], "class_balance": {"DOWN": 0.3}}}


def test_aggregate_means_and_sample_sd() -> None:
    out = aggregate_seeds([table(0.2, 0.1, 1.0), table(0.4, 0.3, 1.2), table(0.9, 0.2, 1.1)])["m"]
    assert out["accuracy"] == pytest.approx(0.5) and out["accuracy_sd"] == pytest.approx(np.sqrt(0.13))
    assert out["log_loss"] == pytest.approx(1.1) and out["log_loss_sd"] == pytest.approx(0.1)
    assert out["n"] == 10 and "n_sd" not in out
    assert out["f1"] == pytest.approx({"DOWN": 0.2, "UP": 0.5})
    assert out["confusion"] == [[1, 2], [3, 4]] and out["class_balance"] == {"DOWN": 0.3}
    one = aggregate_seeds([table(0.2, 0.1, None)])["m"]
    assert one["accuracy"] == 0.2 and one["accuracy_sd"] == 0.0 and one["log_loss"] is None


def test_aggregate_refuses_different_row_counts() -> None:
    a, b = table(0.2, 0.1, 1.0), table(0.4, 0.3, 1.2)
    b["m"]["n"] = 11
    with pytest.raises(AssertionError):
        aggregate_seeds([a, b])


def test_significance_groups_rows_by_utc_day() -> None:
    rng = np.random.default_rng(0)
    hours = pd.date_range("2024-03-01 00:00", periods=24 * 6, freq="h", tz="UTC")
    y = rng.choice(3, size=len(hours))
    gnn = np.stack([np.where(rng.random(len(y)) < 0.6, y, rng.choice(3, size=len(y))) for _ in range(2)])
    other = np.stack([rng.choice(3, size=len(y))] * 2)
    # given in Tokyo time, the rows must still be grouped by UTC day
    out = significance_vs_gnn(y, {"gnn": gnn, "other": other}, hours.tz_convert("Asia/Tokyo"), replicates=300)
    day = np.asarray((hours - hours[0]).days)                       # independent day ids: 6 UTC days
    ref = paired_day_bootstrap(y, gnn, other, day, replicates=300, seed=DEFAULT_BOOTSTRAP_SEED)
    assert out["gnn_vs"]["other"] == ref.to_dict() and out["days"] == 6 and out["seeds"] == 2
    assert out["replicates"] == 300 and out["level"] == 0.95


def test_significance_lists_models_in_table_order_with_order_free_values() -> None:
    """gnn_vs follows MODEL_ORDER (unknown names last) whatever the fit order; each interval is
    seeded on its own, so reordering the inputs changes no number."""
    rng = np.random.default_rng(1)
    hours = pd.date_range("2024-03-01 00:00", periods=24 * 4, freq="h", tz="UTC")
    y = rng.choice(3, size=len(hours))
    preds = {name: rng.choice(3, size=(1, len(y))) for name in ("gnn", "zeta", "gnn_no_temporal", "logistic",
                                                                    "gnn_no_edges")}
    out = significance_vs_gnn(y, preds, hours, replicates=200)
    assert list(out["gnn_vs"]) == ["gnn_no_edges", "gnn_no_temporal", "logistic", "zeta"]
    again = significance_vs_gnn(y, dict(reversed(list(preds.items()))), hours, replicates=200)
    assert again["gnn_vs"] == out["gnn_vs"] and list(again["gnn_vs"]) == list(out["gnn_vs"])


def test_seeds_flag_and_validation() -> None:
    assert config_from_args(build_parser().parse_args(["--seeds", "2", "0"])).seed_list == [2, 0]
    assert config_from_args(build_parser().parse_args(["--seed", "4"])).seed_list == [4]
    with pytest.raises(DataError):
        TrainConfig(seeds=[1, 1])
    with pytest.raises(DataError):
        TrainConfig(seeds=[])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    store = tiny_store(root)
    common = dict(store=str(store.root), **{**TINY_TRAIN, "epochs": 2})
    multi = run_training(TrainConfig(out=str(root / "multi"), seeds=[1, 0], **common))
    single = run_training(TrainConfig(out=str(root / "single"), seed=1, **common))
    return multi, single, root


def test_metrics_are_means_over_seeds_with_sample_sd(runs) -> None:
    multi, _, _ = runs
    assert list(multi["seeds"]) == ["1", "0"]
    for name, m in multi["test"].items():
        for key in ("macro_f1", "mcc", "accuracy", "log_loss", "brier"):
            values = [multi["seeds"][s]["test"][name][key] for s in ("1", "0")]
            assert m[key] == pytest.approx(np.mean(values), abs=1e-12), (name, key)
            assert m[f"{key}_sd"] == pytest.approx(abs(values[0] - values[1]) / np.sqrt(2), abs=1e-12)
    assert multi["seeds"]["1"]["test"]["gnn"]["macro_f1"] != multi["seeds"]["0"]["test"]["gnn"]["macro_f1"]


def test_each_seed_equals_a_run_with_that_seed_and_model_pt_is_the_first(runs) -> None:
    multi, single, root = runs
    for name, m in single["test"].items():
        assert multi["seeds"]["1"]["test"][name]["macro_f1"] == pytest.approx(m["macro_f1"], abs=1e-12), name
        assert m["macro_f1_sd"] == 0.0
    a, b = load_checkpoint(root / "multi" / "model.pt"), load_checkpoint(root / "single" / "model.pt")
    assert a.extra["seed"] == 1
    for key, value in b.state_dict.items():
        assert torch.equal(a.state_dict[key], value), key
    assert a.calibration == b.calibration and a.decision_rule == b.decision_rule
    assert a.calibration == {k: multi["seeds"]["1"]["calibration"][-1]["gnn"][k] for k in ("scale", "bias")}


def test_significance_point_estimate_is_the_mean_seed_difference(runs) -> None:
    multi, _, _ = runs
    sig = multi["significance"]
    assert set(sig["gnn_vs"]) == set(multi["test"]) - {"gnn"}
    assert sig["replicates"] == 1000 and sig["bootstrap_seed"] == DEFAULT_BOOTSTRAP_SEED and sig["seeds"] == 2
    for name, r in sig["gnn_vs"].items():
        for key in ("macro_f1", "mcc"):
            diffs = [multi["seeds"][s]["test"]["gnn"][key] - multi["seeds"][s]["test"][name][key] for s in ("1", "0")]
            assert r[key]["diff"] == pytest.approx(np.mean(diffs), abs=1e-9), (name, key)
            assert r[key]["ci_low"] <= r[key]["ci_high"]
