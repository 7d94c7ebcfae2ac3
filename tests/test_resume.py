"""Resumable training runs: saved (seed, fold) parts, refusal of foreign parts, the --out guard."""
from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import gnn_market.training.resume as resume_module
import gnn_market.training.run as run_module
from gnn_market import __version__
from gnn_market.atomic import atomic_path
from gnn_market.cli import run_cli
from gnn_market.errors import DataError, StoreError
from gnn_market.sources import open_store
from gnn_market.store import Store
from gnn_market.synthetic import write_synthetic_store
from gnn_market.train import main
from gnn_market.training import TrainConfig, resolve_device, run_fold, run_training
from gnn_market.training.resume import data_fingerprint, load_part, part_key, part_path, part_spec, save_part
from gnn_market.training.splits import Split
from gnn_market.training.universe import load_training_market

from train_fixtures import TINY_MARKET, TINY_TRAIN, tiny_store


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
    with pytest.raises(DataError, match="other result-defining settings"):
        run_training(_cfg(store, out, resume=True, lr=1e-3))
    part = part_path(out, 0, 0)
    part.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="saved fold result .*: it cannot be read"):
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


def test_a_part_keeps_the_hours_of_its_validation_and_test_rows(saved_fold, tmp_path) -> None:
    """val_hours / test_hours survive save_part + load_part and equal the fold's labelled rows; a part
    without them (written before they were saved) is refused, not loaded with None."""
    _, _, splits, result, spec, path = saved_fold
    assert len(result.val_hours) == len(result.y_val) and len(result.test_hours) == len(result.y_test)
    assert set(result.val_hours) <= set(splits[0].val) and set(result.test_hours) <= set(splits[0].test)
    np.testing.assert_array_equal(spec.y_test, result.y_test)   # the spec's rows are the fold's rows
    np.testing.assert_array_equal(spec.val_hours, result.val_hours)
    loaded = load_part(path, spec)
    np.testing.assert_array_equal(loaded.val_hours, result.val_hours)
    np.testing.assert_array_equal(loaded.test_hours, result.test_hours)
    raw = torch.load(path, weights_only=True)
    del raw["val_hours"]
    torch.save(raw, tmp_path / "p.pt")
    with pytest.raises(DataError, match="'val_hours' is missing"):
        load_part(tmp_path / "p.pt", spec)

# --------------------------------------------------------------------------- issue 21 item 4: a part's contents


def _flags(store, out, *extra: str) -> list[str]:
    """A tiny CLI run with parts: one epoch, GNN only (no ablation, no baselines)."""
    return ["--store", str(store.root), "--out", str(out), "--epochs", "1", "--hidden", "8", "--heads", "2",
            "--lookback", "4", "--no-ablation", "--no-baselines", "--threads", "1", "--no-progress", "--resume", *extra]


@pytest.fixture(scope="module")
def parts_run(store, tmp_path_factory):
    """One finished tiny run with its part (seed 0, fold 1), copied by each test before tampering."""
    out = tmp_path_factory.mktemp("parts") / "run"
    assert run_cli(main, _flags(store, out)) == 0
    return out


def _copy_parts(parts_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(parts_run / "parts", out / "parts")
    return out, part_path(out, 0, 0)


def _nan_first_weight(raw):
    name = next(iter(raw["model_state"]))
    raw["model_state"][name].view(-1)[0] = float("nan")


def _nan_all_weights(raw):
    for value in raw["model_state"].values():
        if value.is_floating_point():
            value.fill_(float("nan"))


def _other_hidden_weights(raw):
    from gnn_market.model import GATv2Classifier, ModelConfig
    bigger = {**raw["model_config"], "hidden": 16}
    raw["model_state"] = GATv2Classifier(ModelConfig.from_dict(bigger)).state_dict()


def _edit(change):
    """A tampering that changes the loaded part in place (and returns it, to be saved)."""
    def tamper(raw):
        change(raw)
        return raw
    return tamper


#: (name, tampering: loaded part -> what is saved, what the error line must say).
#: Each exited 0 (a NaN model.pt) or ended in a traceback before issue 21.
TAMPERINGS = [
    ("one NaN weight", _edit(_nan_first_weight), "non-finite"),
    ("all weights NaN", _edit(_nan_all_weights), "non-finite"),
    ("NaN normaliser", _edit(lambda raw: raw["normalizer"]["mean"].__setitem__(0, float("nan"))), "normaliser"),
    ("zeroed labels", _edit(lambda raw: raw["y_test"].zero_()), "y_test differs"),
    ("NaN predictions", _edit(lambda raw: raw["test"]["gnn"][1].fill_(float("nan"))), "non-finite probabilities"),
    ("missing key", _edit(lambda raw: raw.pop("key")), "'key' is missing"),
    ("missing histories", _edit(lambda raw: raw.pop("histories")), "'histories' is missing"),
    ("short y_test", _edit(lambda raw: raw.__setitem__("y_test", raw["y_test"][:-3])), "y_test"),
    ("another hidden size", _edit(lambda raw: raw["model_config"].__setitem__("hidden", 16)), "hidden (16, not 8)"),
    ("weights of another hidden size", _edit(_other_hidden_weights), "do not fit"),
    ("format version 99", _edit(lambda raw: raw.__setitem__("version", 99)), "part format 99"),  # item 18
    ("not a dict", lambda raw: [raw], "not a saved fold result"),
]


@pytest.mark.parametrize("name,tamper,needle", TAMPERINGS, ids=[t[0] for t in TAMPERINGS])
def test_a_tampered_part_is_refused_with_one_line(store, parts_run, tmp_path, capsys, name, tamper, needle) -> None:
    """Issue 21 item 4: a part is validated like a checkpoint, or refused with one error line naming it."""
    out, part = _copy_parts(parts_run, tmp_path)
    raw = torch.load(part, weights_only=True)
    torch.save(tamper(raw), part)
    capsys.readouterr()
    assert run_cli(main, _flags(store, out)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("INFO")]
    assert len(err) == 1 and err[0].startswith("error: cannot resume from the saved fold result"), err
    assert str(part) in err[0] and needle in err[0] and "delete it" in err[0] and "without --resume" in err[0]
    assert not (out / "model.pt").exists() and not (out / "metrics.json").exists()


def test_a_part_copied_under_another_seeds_name_is_refused(store, parts_run, tmp_path, capsys) -> None:
    """Issue 21 item 4: seed 0's part as seed 1's gave 'mean +- sd over 2 seeds' with sd 0.0000."""
    out, part = _copy_parts(parts_run, tmp_path)
    shutil.copy(part, part_path(out, 1, 0))
    capsys.readouterr()
    assert run_cli(main, _flags(store, out, "--seeds", "0", "1")) == 2
    err = capsys.readouterr().err
    assert "seed1_fold1.pt" in err and "holds seed 0 fold 1, not seed 1 fold 1" in err
    assert not (out / "metrics.json").exists()


def test_an_intact_part_is_reused_and_gives_the_same_metrics(store, parts_run, tmp_path) -> None:
    """The validation refuses nothing sound: a copied run reassembles to the same metrics, training nothing."""
    out, _ = _copy_parts(parts_run, tmp_path)
    assert run_cli(main, _flags(store, out)) == 0
    before = json.loads((parts_run / "metrics.json").read_text())["test"]["gnn"]
    after = json.loads((out / "metrics.json").read_text())["test"]["gnn"]
    assert after["macro_f1"] == pytest.approx(before["macro_f1"], abs=1e-12)
    assert after["log_loss"] == pytest.approx(before["log_loss"], abs=1e-12)


def test_a_moved_store_resumes(store, parts_run, tmp_path, monkeypatch) -> None:
    """The key holds the data's values, not their path: a study moved with its store to another folder
    (another machine) re-uses its parts."""
    out, _ = _copy_parts(parts_run, tmp_path)
    moved = tmp_path / "moved-store"
    shutil.copytree(store.root, moved)
    monkeypatch.setattr(run_module, "run_fold", lambda *a, **k: pytest.fail("a fold was retrained"))
    assert run_cli(main, _flags(Store(moved), out)) == 0


# --------------------------------------------------------------------------- the key (issue 21 items 4, 18; issue 22)


def test_changed_market_values_under_the_same_store_path_are_refused(tmp_path, capsys) -> None:
    """Issue 22: the key held the store's path, symbols and hours, not the values: a store rewritten with
    another market (same symbols and hours) reused the old market's parts silently."""
    path = tmp_path / "store"
    store = write_synthetic_store(path, TINY_MARKET)
    out = tmp_path / "run"
    assert run_cli(main, _flags(store, out)) == 0
    shutil.rmtree(path)
    store = write_synthetic_store(path, replace(TINY_MARKET, seed=TINY_MARKET.seed + 1))
    capsys.readouterr()
    assert run_cli(main, _flags(store, out)) == 2
    err = capsys.readouterr().err
    assert "other market data" in err and "seed0_fold1.pt" in err


def test_another_synthetic_market_seed_is_refused(store, tmp_path, monkeypatch) -> None:
    """Issue 22: '--data synthetic --seed 1 --seeds 0 --resume' then '--seed 2' printed market 1's result."""
    other = write_synthetic_store(tmp_path / "market2", replace(TINY_MARKET, seed=TINY_MARKET.seed + 1))
    markets = {1: store, 2: other}
    monkeypatch.setattr(run_module, "open_store", lambda path, data, seed: markets[seed])
    out = tmp_path / "run"
    synthetic = TrainConfig(data="synthetic", out=str(out), seeds=[0], resume=True, ablation=False, baselines=False,
                            lookback=4, **TINY_TRAIN)
    run_training(replace(synthetic, seed=1))
    with pytest.raises(DataError, match="another --seed for the synthetic market, other market data"):
        run_training(replace(synthetic, seed=2))


@pytest.fixture(scope="module")
def saved_fold(store, tmp_path_factory):
    """A fold trained once and saved as a part: (cfg, market, splits, result, spec, path)."""
    cfg = _cfg(store, tmp_path_factory.mktemp("fold") / "out", ablation=False, baselines=False)
    market, splits, _ = load_training_market(open_store(cfg.store, cfg.data, seed=0), cfg)
    result = run_fold(market, splits[0], cfg, resolve_device("cpu"))
    spec = part_spec(cfg, market, splits[0], seed=0, fold=0)
    path = part_path(Path(cfg.out), 0, 0)
    save_part(path, result, spec)
    return cfg, market, splits, result, spec, path


def test_the_key_holds_the_folds_hours(saved_fold) -> None:
    """Issue 21 item 18: a key without the fold's hours reused stale parts when the store grew.

    The spec below differs from the saved one only in its training hours (same validation and test
    rows, so the labels agree): only the hours in the key can refuse it.
    """
    cfg, market, splits, _, spec, path = saved_fold
    moved = Split(splits[0].train[1:], splits[0].val, splits[0].test)
    other = part_spec(cfg, market, moved, seed=0, fold=0)
    assert {k for k in spec.key if spec.key[k] != other.key[k]} == {"hours"}
    with pytest.raises(DataError, match=r"other fold hours"):
        load_part(path, other)
    assert load_part(path, spec) is not None


def test_the_key_holds_seed_data_and_code_version(saved_fold, monkeypatch) -> None:
    cfg, market, splits, _, spec, _ = saved_fold
    fingerprint = data_fingerprint(market)
    assert spec.key["data"] == fingerprint and spec.key["code"] == f"{__version__}/part{resume_module.PART_VERSION}"
    assert part_spec(cfg, market, splits[0], seed=1, fold=0).key["seed"] == "1"
    assert spec.key["market_seed"] == "-"  # a store: --seed draws nothing
    synthetic = replace(cfg, store=None, data="synthetic")
    assert part_key(synthetic, 0, fingerprint, market.times, splits[0])["market_seed"] == "0"
    assert part_key(replace(synthetic, seed=2), 0, fingerprint, market.times, splits[0])["market_seed"] == "2"
    market.panel.close[-1, 0] += 1e-9  # one value, anywhere: another fingerprint
    try:
        assert data_fingerprint(market) != fingerprint
    finally:
        market.panel.close[-1, 0] -= 1e-9
    monkeypatch.setattr(resume_module, "__version__", "9.9.9")
    assert part_spec(cfg, market, splits[0], seed=0, fold=0, fingerprint=fingerprint).key["code"] != spec.key["code"]


def test_a_part_of_the_previous_format_is_refused(saved_fold, tmp_path) -> None:
    """Issue 21 item 18: a part of another format is refused, whatever its key says."""
    _, _, _, _, spec, path = saved_fold
    raw = torch.load(path, weights_only=True)
    raw["version"] = resume_module.PART_VERSION - 1
    old = tmp_path / "old.pt"
    torch.save(raw, old)
    with pytest.raises(DataError, match=f"part format {resume_module.PART_VERSION - 1}, this code reads"):
        load_part(old, spec)


# --------------------------------------------------------------------------- issue 21 item 16: a full disk


def _full_disk(path, data, error=StoreError):
    """write_bytes_atomic on a full disk: the temporary file is made, writing it fails with ENOSPC."""
    with atomic_path(path, error):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_run_failing_on_a_full_disk_removes_what_it_created(store, tmp_path, capsys, monkeypatch) -> None:
    """Issue 21 item 16: a failed '--resume' run onto a full disk left out/parts/ behind."""
    monkeypatch.setattr(resume_module, "write_bytes_atomic", _full_disk)
    out = tmp_path / "new"
    assert run_cli(main, _flags(store, out)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("INFO")]
    assert len(err) == 1 and "No space left on device" in err[0] and "seed0_fold1.pt" in err[0], err
    assert not out.exists()


def test_a_full_disk_keeps_the_finished_folds_for_resume(store, tmp_path, capsys, monkeypatch) -> None:
    """Parts already written are results, kept on failure: '--resume' continues from them."""
    real = resume_module.write_bytes_atomic
    calls = []

    def second_fails(path, data, error=StoreError):
        calls.append(path)
        return (real if len(calls) == 1 else _full_disk)(path, data, error)

    monkeypatch.setattr(resume_module, "write_bytes_atomic", second_fails)
    out = tmp_path / "new"
    assert run_cli(main, _flags(store, out, "--seeds", "0", "1")) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "parts").iterdir()) == ["seed0_fold1.pt"]
    assert sorted(p.name for p in out.iterdir()) == ["parts"]


def test_a_plain_run_failing_after_model_pt_removes_it(store, tmp_path, capsys, monkeypatch) -> None:
    """Issue 21 item 16: a run whose metrics.json hit a full disk left model.pt, so the rerun was
    refused ('already holds a training run')."""
    real = run_module.write_text_atomic

    def metrics_fail(path, text, error=StoreError):
        if Path(path).name == "metrics.json":
            return _full_disk(path, text.encode(), error)
        return real(path, text, error)

    monkeypatch.setattr(run_module, "write_text_atomic", metrics_fail)
    out = tmp_path / "new"
    flags = [f for f in _flags(store, out) if f != "--resume"]
    assert run_cli(main, flags) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert not out.exists()
