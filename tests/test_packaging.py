"""gnn_market.training.packaging: --save-packaged copies model.pt and writes its sidecar, never past 2023-08."""
from __future__ import annotations

import hashlib
import json

import pytest

from gnn_market.errors import DataError
from gnn_market.training import PACKAGED_COMMAND, TrainConfig, save_packaged


def fake_metrics(val_end: str) -> dict:
    fold = {"train": {"hours": 10, "range": ["2023-01-05T00:00:00+00:00", "2023-06-12T00:00:00+00:00"]},
            "val": {"hours": 5, "range": ["2023-06-17T00:00:00+00:00", val_end]},
            "test": {"hours": 5, "range": ["2023-07-27T00:00:00+00:00", "2023-08-31T23:00:00+00:00"]}}
    return {"split": {"folds": [fold], "symbols": 30},
            "test": {"gnn": {"accuracy": 0.5, "macro_f1": 0.41234, "mcc": 0.1}}}


def test_save_packaged_writes_copy_and_sidecar(tmp_path) -> None:
    model = tmp_path / "run" / "model.pt"
    model.parent.mkdir()
    model.write_bytes(b"checkpoint bytes")
    target = tmp_path / "checkpoints" / "sample_gatv2.pt"
    assert save_packaged(model, fake_metrics("2023-07-22T00:00:00+00:00"), TrainConfig(), target) == target
    assert target.read_bytes() == b"checkpoint bytes"
    sidecar = json.loads(target.with_suffix(".json").read_text())
    assert sidecar["sha256"] == hashlib.sha256(b"checkpoint bytes").hexdigest() and sidecar["bytes"] == 16
    assert sidecar["command"] == PACKAGED_COMMAND and sidecar["fit_range"][1] == "2023-07-22T00:00:00+00:00"
    assert sidecar["test"] == {"gnn": {"accuracy": 0.5, "macro_f1": 0.4123, "mcc": 0.1}}
    assert sorted(p.name for p in target.parent.iterdir()) == ["sample_gatv2.json", "sample_gatv2.pt"]


def test_save_packaged_refuses_a_fit_range_into_the_rl_months(tmp_path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"x")
    target = tmp_path / "checkpoints" / "sample_gatv2.pt"
    with pytest.raises(DataError, match="reserved for the RL environment"):
        save_packaged(model, fake_metrics("2023-09-01T00:00:00+00:00"), TrainConfig(), target)
    assert not target.exists()
