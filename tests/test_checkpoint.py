"""Checkpoint loading refuses values no trained model holds (issue 11): non-finite weights or
normaliser, a normaliser of the wrong length, unparseable ranges, fields of the wrong type."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gnn_market.checkpoint import PACKAGED_CHECKPOINT, load_checkpoint
from gnn_market.cli import run_cli
from gnn_market.errors import CheckpointError, DataError
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


# --------------------------------------------------------------------------- issue 21, items 11 and 16
def _first_key(raw: dict) -> str:
    return sorted(raw["state_dict"])[0]


#: name -> (mutation of the raw payload, the one problem the error line names)
WEIGHT_MUTATIONS = {
    # int64 weights passed every check and gave the same probabilities for every pair
    "int64_weights": (lambda r: r.__setitem__("state_dict", {k: (v * 1000).long() for k, v in r["state_dict"].items()}),
                      "is torch.int64, not floating point"),
    "extra_key": (lambda r: r["state_dict"].__setitem__("x", torch.zeros(3)), "unexpected parameter 'x'"),
    "missing_key": (lambda r: r["state_dict"].pop(_first_key(r)), "missing parameter '{first}'"),
    "wrong_shape": (lambda r: r["state_dict"].__setitem__(_first_key(r), torch.zeros(7, 3)),
                    "parameter '{first}' has shape [7, 3], the model expects ["),
    # lookback 0 is a model without GRU: the GRU weights the file holds do not belong to it
    "lookback_0": (lambda r: r["model_config"].__setitem__("lookback", 0), "unexpected parameter 'temporal."),
    "lookback_negative": (lambda r: r["model_config"].__setitem__("lookback", -2), "lookback must be >= 0"),
}


@pytest.mark.parametrize("name", sorted(WEIGHT_MUTATIONS))
def test_weights_that_do_not_fit_are_one_line_naming_the_first_problem(trained, tmp_path, capsys, name) -> None:
    raw = torch.load(trained[1], weights_only=True)
    first = _first_key(raw)
    WEIGHT_MUTATIONS[name][0](raw)
    path = tmp_path / f"{name}.pt"
    torch.save(raw, path)
    with pytest.raises(CheckpointError) as err:  # at load time, not at the first prediction
        load_checkpoint(path)
    assert WEIGHT_MUTATIONS[name][1].format(first=first) in str(err.value) and str(path) in str(err.value)
    code = run_cli(predict_main, ["--store", str(trained[0].root), "--checkpoint", str(path)])
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.err
    assert WEIGHT_MUTATIONS[name][1].format(first=first) in lines[0]


class _NotACheckpoint:
    """Any picklable object: torch.save writes it, weights_only loading must refuse it."""


def _foreign_files(tmp_path: Path) -> dict[str, Path]:
    import pickle

    files = {"object": tmp_path / "object.pt", "plain_pickle": tmp_path / "plain.pt",
             "torchscript": tmp_path / "script.pt"}
    torch.save(_NotACheckpoint(), files["object"])
    files["plain_pickle"].write_bytes(pickle.dumps({"format": "cryptograph-gatv2"}, protocol=4))
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(files["torchscript"]))
    return files


@pytest.mark.parametrize("kind, words", [("object", "pickled Python objects"),
                                         ("plain_pickle", "pickled Python objects"),
                                         ("torchscript", "TorchScript")])
def test_foreign_pickles_are_one_line_without_a_torch_warning(trained, tmp_path, capsys, kind, words) -> None:
    import warnings

    path = _foreign_files(tmp_path)[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning torch prints would fail here
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
    assert words in str(err.value) and str(path) in str(err.value)
    code = run_cli(predict_main, ["--store", str(trained[0].root), "--checkpoint", str(path)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines


def test_predict_on_cuda_without_cuda_names_the_device_not_the_checkpoint(trained, capsys, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = run_cli(predict_main, ["--store", str(trained[0].root), "--checkpoint", str(trained[1]),
                                  "--device", "cuda"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines == ["error: --device cuda: CUDA is not available on this machine (use --device cpu)"]
    with pytest.raises(DataError, match="CUDA is not available"):  # the library call says the same
        load_checkpoint(trained[1], map_location="cuda")
