"""Resumable training runs: saved (seed, fold) parts, refusal of foreign parts, the --out guard."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import gnn_market.training.run as run_module
from gnn_market.cli import run_cli
from gnn_market.errors import DataError
from gnn_market.sources import open_store
from gnn_market.train import main
from gnn_market.training import TrainConfig, resolve_device, run_fold, run_training
from gnn_market.training.resume import load_part, part_path, run_key, save_part
from gnn_market.training.universe import load_training_market

from train_fixtures import TINY_TRAIN, tiny_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tiny_store(tmp_path_factory.mktemp("resume"))


def _cfg(store, out, **kw) -> TrainConfig:
    return TrainConfig(store=str(store.root), out=str(out), temporal_ablation=False, lookback=4,
                       **{**TINY_TRAIN, **kw})


def test_resumed_run_equals_an_uninterrupted_one_and_skips_saved_folds(store, tmp_path, monkeypatch) -> None:
    whole = run_training(_cfg(store, tmp_path / "whole", seeds=[0, 1], folds=2))
    out = tmp_path / "parts-run"
    run_training(_cfg(store, out, seeds=[1], folds=2, resume=True))   # as if a parallel process did seed 1
    assert part_path(out, 1, 0).exists() and part_path(out, 1, 1).exists()
    trained = []
    real_run_fold = run_module.run_fold

    def counting_run_fold(market, split, cfg, *args, **kwargs):
        trained.append(cfg.seed)
        return real_run_fold(market, split, cfg, *args, **kwargs)

    monkeypatch.setattr(run_module, "run_fold", counting_run_fold)
    resumed = run_training(_cfg(store, out, seeds=[0, 1], folds=2, resume=True))
    assert trained == [0, 0]  # seed 1's two folds came from the parts
    for name, m in whole["test"].items():
        for metric in ("macro_f1", "mcc", "log_loss", "brier", "macro_f1_sd"):
            assert resumed["test"][name][metric] == pytest.approx(m[metric], abs=1e-9), (name, metric)
    assert resumed["significance"]["gnn_vs"] == whole["significance"]["gnn_vs"]
    # The checkpoint is the first seed's network either way.
    a = (tmp_path / "whole" / "model.pt").read_bytes()
    assert len(a) > 0 and (out / "model.pt").exists()
    trained.clear()
    again = run_training(_cfg(store, out, seeds=[0, 1], folds=2, resume=True))   # nothing left to train
    assert trained == [] and again["test"]["gnn"]["macro_f1"] == resumed["test"]["gnn"]["macro_f1"]


def test_parts_of_other_settings_or_corrupt_parts_are_refused(store, tmp_path) -> None:
    out = tmp_path / "run"
    run_training(_cfg(store, out, resume=True))
    with pytest.raises(DataError, match="other settings or data"):
        run_training(_cfg(store, out, resume=True, lr=1e-3))
    part = part_path(out, 0, 0)
    part.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="cannot read the saved fold result"):
        run_training(_cfg(store, out, resume=True))


def cli(argv: list[str]) -> int:
    return run_cli(main, argv)


def test_existing_or_unwritable_out_is_refused_before_training(store, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "run"
    run_training(_cfg(store, out))
    before = (out / "metrics.json").read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(run_module, "load_training_market", no_training)
    assert cli(["--store", str(store.root), "--out", str(out), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "already holds a training run" in err and "--resume" in err
    assert (out / "metrics.json").read_bytes() == before   # the old run is intact
    afile = tmp_path / "file"
    afile.write_text("x")
    assert cli(["--store", str(store.root), "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_read_only_out_is_refused_before_training(store, tmp_path, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions
            pytest.skip("this user can write to read-only folders")
        assert cli(["--store", str(store.root), "--out", str(locked / "sub")]) == 2
        assert "cannot write to --out" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def test_a_run_that_fails_before_writing_leaves_no_folder(store, tmp_path, capsys) -> None:
    out = tmp_path / "never"
    assert cli(["--store", str(store.root), "--out", str(out), "--folds", "100"]) == 2
    assert "fold" in capsys.readouterr().err
    assert not out.exists()


def test_a_part_keeps_the_hours_of_its_validation_and_test_rows(store, tmp_path) -> None:
    """val_hours / test_hours survive save_part + load_part; a part written before val_hours loads with None."""
    cfg = _cfg(store, tmp_path / "out", ablation=False, baselines=False)
    market, splits, _ = load_training_market(open_store(cfg.store, cfg.data, seed=0), cfg)
    result = run_fold(market, splits[0], cfg, resolve_device("cpu"))
    assert len(result.val_hours) == len(result.y_val) and len(result.test_hours) == len(result.y_test)
    assert set(result.val_hours) <= set(splits[0].val) and set(result.test_hours) <= set(splits[0].test)
    key, path = run_key(cfg, market.panel.symbols, market.times, splits[0]), tmp_path / "p.pt"
    save_part(path, result, key)
    loaded = load_part(path, key, splits[0])
    np.testing.assert_array_equal(loaded.val_hours, result.val_hours)
    np.testing.assert_array_equal(loaded.test_hours, result.test_hours)
    raw = torch.load(path, weights_only=True)
    del raw["val_hours"]
    torch.save(raw, path)
    assert load_part(path, key, splits[0]).val_hours is None
