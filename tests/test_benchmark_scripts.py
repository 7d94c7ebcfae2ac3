"""The benchmark scripts' own logic: the tuning log's one-fold mode and the synthetic proof's margins."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gnn_market.calibration import DecisionRule, VectorScaling, prior_adjusted
from gnn_market.training.calibrate import ModelCalibration

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_synthetic_proof_margins_pick_the_best_non_gnn_model() -> None:
    margins = load_script("synthetic_proof").margins
    f1 = {"gnn": 0.50, "gnn_no_edges": 0.40, "gnn_no_temporal": 0.52, "majority": 0.2, "persistence": 0.33,
          "hist_gb": 0.41}
    m = margins(f1)
    assert m["best_baseline"] == "hist_gb"       # the ablations are not baselines
    assert m["margin_vs_no_edges"] == pytest.approx(0.10)
    assert m["margin_vs_no_temporal"] == pytest.approx(-0.02)
    assert m["margin_vs_best_baseline"] == pytest.approx(0.09)
    assert margins({k: v for k, v in f1.items() if k != "gnn_no_temporal"})["margin_vs_no_temporal"] is None


def test_tune_defaults_one_fold_mode_logs_validation_curves(tmp_path, monkeypatch) -> None:
    tune = load_script("tune_defaults")
    results = tmp_path / "log.jsonl"
    monkeypatch.setenv("CRYPTOGRAPH_CACHE", str(tmp_path / "cache"))  # the simulated store is written here
    monkeypatch.setattr(sys, "argv", ["tune_defaults.py", "--fold", "0", "--seeds", "10", "--results", str(results),
                                      "--tag", "smoke", "epochs=1", "hidden=8", "heads=2", "ablation=False"])
    tune.main()
    (row,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert (row["tag"], row["seed"], row["fold"], row["folds"]) == ("smoke", 10, 0, 1)
    assert row["overrides"] == {"epochs": 1, "hidden": 8, "heads": 2, "ablation": False}
    assert set(row["val_curves"]) == {"gnn"} and len(row["val_curves"]["gnn"]) == 1
    assert row["val_best_macro_f1"]["gnn"] == max(row["val_curves"]["gnn"])
    assert 0.0 <= row["val_best_macro_f1"]["gnn"] <= 1.0
    # issue 22: every row says when it was written, on which split and machine
    assert row["when"].endswith("Z") and row["machine"]["logical_cores"] >= 1 and row["machine"]["threads"] >= 1
    assert set(row["split"]) == {"train", "val", "test"}
    assert row["split"]["val"]["range"][1] < row["split"]["test"]["range"][0]


def test_decision_rule_check_scores_both_rules_on_the_same_predictions(tmp_path) -> None:
    """'fixed' is exactly the protocol's calibration; 'adaptive' fits the same rule on prior-adjusted probabilities;
    rule-based models keep their own classes under both."""
    check = load_script("decision_rule_check")
    rng = np.random.default_rng(0)
    m_val, m_test = 300, 200
    probs = {split: rng.dirichlet([1.0, 3.0, 1.0], n) for split, n in (("val", m_val), ("test", m_test))}
    y_val = rng.integers(0, 3, m_val)
    persistence = rng.integers(0, 3, m_test)
    result = SimpleNamespace(
        test={"gnn": (probs["test"].argmax(1), probs["test"]), "persistence": (persistence, np.eye(3)[persistence])},
        val={"gnn": (probs["val"].argmax(1), probs["val"]), "persistence": (y_val, np.eye(3)[y_val])},
        y_val=y_val, y_test=rng.integers(0, 3, m_test), val_hours=np.repeat(np.arange(30), 10),
        test_hours=np.repeat(np.arange(100, 120), 10))
    out = check.decide(result, window=5)
    assert set(out) == {"fixed", "adaptive", "ratio_rolling", "ratio_val", "argmax", "oracle_test_fit"}
    np.testing.assert_array_equal(out["fixed"]["gnn"], ModelCalibration.fit(probs["val"], y_val).apply(probs["test"])[0])
    scaling = VectorScaling().fit(probs["val"], y_val)
    rule = DecisionRule().fit(prior_adjusted(scaling.transform(probs["val"]), result.val_hours, 5), y_val)
    expected = rule.predict(prior_adjusted(scaling.transform(probs["test"]), result.test_hours, 5))
    np.testing.assert_array_equal(out["adaptive"]["gnn"], expected)
    test = scaling.transform(probs["test"])
    np.testing.assert_array_equal(out["argmax"]["gnn"], test.argmax(1))
    np.testing.assert_array_equal(out["ratio_val"]["gnn"], (test / scaling.transform(probs["val"]).mean(0)).argmax(1))
    prior = np.stack([test[(result.test_hours > h - 5) & (result.test_hours <= h)].mean(0) for h in result.test_hours])
    np.testing.assert_array_equal(out["ratio_rolling"]["gnn"], (test / prior).argmax(1))
    np.testing.assert_array_equal(out["oracle_test_fit"]["gnn"], DecisionRule().fit(test, result.y_test).predict(test))
    for rule in out:
        np.testing.assert_array_equal(out[rule]["persistence"], persistence)
    # kept predictions rescore to the same classes under every rule
    path = check.prediction_file(tmp_path, "synthetic", 7, {})
    check.save_predictions(result, path)
    again = check.decide(check.load_predictions(path), window=5)
    for rule in out:
        for name in out[rule]:
            np.testing.assert_array_equal(again[rule][name], out[rule][name])
    assert check.prediction_file(tmp_path, "synthetic", 7, {"lookback": 4}) != path


def test_ensemble_check_averages_calibrated_members_and_keeps_the_first_as_single() -> None:
    """'single' is the protocol's rule on the first member; 'ensemble' fits the same rule on the members' mean
    calibrated probabilities; identical members give the single result; rule-based models keep their classes."""
    check = load_script("ensemble_check")
    rng = np.random.default_rng(1)
    y_val, y_test = rng.integers(0, 3, 300), rng.integers(0, 3, 200)
    persistence = rng.integers(0, 3, 200)

    def member(seed: int) -> SimpleNamespace:
        r = np.random.default_rng(seed)
        val, test = r.dirichlet([1, 3, 1], 300), r.dirichlet([1, 3, 1], 200)
        return SimpleNamespace(test={"gnn": (test.argmax(1), test), "persistence": (persistence, np.eye(3)[persistence])},
                               val={"gnn": (val.argmax(1), val), "persistence": (y_val, np.eye(3)[y_val])},
                               y_val=y_val, y_test=y_test)

    a, b = member(10), member(11)
    out = check.decide_ensemble([a, b])
    np.testing.assert_array_equal(out["single"]["gnn"], ModelCalibration.fit(a.val["gnn"][1], y_val).apply(a.test["gnn"][1])[0])
    cal = [VectorScaling().fit(m.val["gnn"][1], y_val) for m in (a, b)]
    val = (cal[0].transform(a.val["gnn"][1]) + cal[1].transform(b.val["gnn"][1])) / 2
    test = (cal[0].transform(a.test["gnn"][1]) + cal[1].transform(b.test["gnn"][1])) / 2
    np.testing.assert_array_equal(out["ensemble"]["gnn"], DecisionRule().fit(val, y_val).predict(test))
    same = check.decide_ensemble([a, a, a])
    np.testing.assert_array_equal(same["ensemble"]["gnn"], same["single"]["gnn"])
    np.testing.assert_array_equal(out["ensemble"]["persistence"], persistence)


def test_every_mutant_of_the_mutation_check_still_applies() -> None:
    """Each mutant's snippet occurs exactly once in its file, and its guard tests exist
    (a stale mutant would be reported, never silently counted)."""
    mutation = load_script("mutation_check")
    root = Path(mutation.ROOT)
    assert len(mutation.MUTANTS) >= 6
    for m in mutation.MUTANTS:
        text = (root / m.path).read_text()
        assert text.count(m.before) == 1, f"stale mutant {m.name!r}: snippet not found once in {m.path}"
        assert m.before != m.after
        assert all((root / t).is_file() for t in m.tests), m.name


def test_store_read_benchmark_compares_both_layouts_on_the_same_frames(tmp_path, monkeypatch, capsys) -> None:
    """Smoke test of benchmarks/bench_store_read.py at a tiny size: both layouts, with and without the read
    cache, give the same panel."""
    bench = load_script("bench_store_read")
    monkeypatch.setattr(bench.store_cache, "RACY_NS", 0)  # no waiting for the racy window at this size
    out = tmp_path / "store_read.json"
    monkeypatch.setattr(sys, "argv", ["bench_store_read.py", "--symbols", "3", "--hours", "1500", "--repeat", "1",
                                      "--out", str(out)])
    bench.main()
    printed = capsys.readouterr().out
    assert "same panel from every layout and path: True" in printed and "old: one file per symbol" in printed
    result = json.loads(out.read_text())
    assert result["same_panel"] is True
    rows = result["results"]
    assert rows["old"]["files"] == 3 * 3  # one file per kind and symbol
    # 1500 hours from 2021-01-01: January to March; the first book snapshot (30 s before) is December's
    assert rows["new"]["files"] == 3 * (3 + 4 + 3)
    assert rows["old"]["shape"] == rows["new"]["shape"] == [1500, 3]
    assert all(r["load_panel_s"] > 0 for r in rows.values())
    cached = [rows[k] for k in ("new, cached: first load", "new, cached", "new, cached, newest months rewritten")]
    assert all(r["files"] == rows["new"]["files"] and r["cache_files"] == 3 * 3 and r["shape"] == [1500, 3]
               for r in cached)
    assert "read cache: warm" in printed
