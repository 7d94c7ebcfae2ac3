"""The benchmark scripts' own logic: the tuning log's one-fold mode and the synthetic proof's margins."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
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
