"""Checkpoint loading refuses values no trained model holds (issue 11): non-finite weights or
normaliser, a normaliser of the wrong length, unparseable ranges, fields of the wrong type."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gnn_market.checkpoint import PACKAGED_CHECKPOINT, load_checkpoint
from gnn_market.cli import run_cli
from gnn_market.errors import CheckpointError
from gnn_market.predict import main as predict_main

from train_fixtures import tiny_checkpoint, tiny_store

LEGACY = Path(__file__).parent / "fixtures" / "legacy_tiny.pt"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoint")
    store = tiny_store(root)
    return store, tiny_checkpoint(root, store.root)


def _first_float(raw: dict) -> str:
    return next(k for k, v in raw["state_dict"].items() if v.is_floating_point())


def _set_weight(raw: dict, value: float) -> None:
    raw["state_dict"][_first_float(raw)].view(-1)[0] = value


def _set_norm(raw: dict, key: str, index: int, value: float) -> None:
    raw["normalizer"][key][index] = value


def _shorten_norm(raw: dict) -> None:
    raw["normalizer"]["mean"] = raw["normalizer"]["mean"][:-1]
    raw["normalizer"]["std"] = raw["normalizer"]["std"][:-1]


#: name -> (mutation of the raw payload, words the error must contain)
MUTATIONS = {
    "nan_weight": (lambda r: _set_weight(r, float("nan")), "non-finite"),
    "inf_weight": (lambda r: _set_weight(r, float("inf")), "non-finite"),
    "nan_mean": (lambda r: _set_norm(r, "mean", 0, float("nan")), "normaliser: mean holds 1 non-finite"),
    "inf_std": (lambda r: _set_norm(r, "std", 2, float("inf")), "normaliser: std holds 1 non-finite"),
    "zero_std": (lambda r: _set_norm(r, "std", 2, 0.0), "std holds 1 value(s) <= 0"),
    "short_normaliser": (_shorten_norm, "mean has 15 values but the model reads 16 features"),
    "garbage_range": (lambda r: r["ranges"].__setitem__("train", ["garbage", "x"]), "does not parse"),
    "naive_range": (lambda r: r["ranges"].__setitem__("val", ["2024-01-01", "2024-01-02"]), "does not parse"),
    "reversed_range": (lambda r: r["ranges"].__setitem__("test", list(reversed(r["ranges"]["test"]))),
                       "ends before it starts"),
    "range_not_a_list": (lambda r: r["ranges"].__setitem__("train", "2024-01-01"), "must be [first_hour"),
    "model_config_str": (lambda r: r.__setitem__("model_config", "hidden=8"), "'model_config' is missing or malformed"),
    "symbols_ints": (lambda r: r.__setitem__("symbols", [1, 2]), "'symbols' must be a list of non-empty strings"),
    "symbols_repeated": (lambda r: r.__setitem__("symbols", ["BTCUSDT", "BTCUSDT"]), "repeats ['BTCUSDT']"),
    "feature_names_str": (lambda r: r.__setitem__("feature_names", "ret_1h"), "'feature_names' is missing"),
    "feature_names_none_item": (lambda r: r["feature_names"].__setitem__(0, None), "'feature_names' must be a list"),
    "market_unknown": (lambda r: r.__setitem__("market", "moon"), "market 'moon'"),
    "threshold_nan": (lambda r: r.__setitem__("threshold", float("nan")), "threshold nan"),
    "weight_not_tensor": (lambda r: r["state_dict"].__setitem__(_first_float(r), [0.0]), "is not a tensor"),
}


def _write(trained, tmp_path, name: str) -> Path:
    raw = torch.load(trained[1], weights_only=True)
    MUTATIONS[name][0](raw)
    path = tmp_path / f"{name}.pt"
    torch.save(raw, path)
    return path


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_unsound_checkpoints_are_refused_on_load(trained, tmp_path, name) -> None:
    path = _write(trained, tmp_path, name)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert MUTATIONS[name][1] in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("name", ["nan_weight", "nan_mean", "short_normaliser", "garbage_range", "symbols_ints"])
def test_predict_with_an_unsound_checkpoint_is_one_error_line(trained, tmp_path, capsys, name) -> None:
    path = _write(trained, tmp_path, name)
    code = run_cli(predict_main, ["--store", str(trained[0].root), "--checkpoint", str(path), "--format", "json"])
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    assert out.err.startswith("error: ") and len(out.err.strip().splitlines()) == 1
    assert MUTATIONS[name][1] in out.err


def test_sound_checkpoints_still_load(trained) -> None:
    for path in (trained[1], LEGACY, *([PACKAGED_CHECKPOINT] if PACKAGED_CHECKPOINT.is_file() else [])):
        ckpt = load_checkpoint(path)
        assert all(isinstance(s, str) for s in ckpt.symbols + ckpt.feature_names)
