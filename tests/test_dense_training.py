"""The training run on the dense path: the same network as PyG's sparse path, edges on disk = in memory, --amp."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gnn_market.training import TrainConfig, run_training
from gnn_market.training.resume import NEUTRAL_FIELDS

from train_fixtures import TINY_TRAIN, tiny_store

#: No dropout, so the two attention paths compute the same function and only float rounding differs.
RUN = dict(TINY_TRAIN, epochs=2, dropout=0.0, threads=1, lookback=4, select_encoder=False, baselines=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tiny_store(tmp_path_factory.mktemp("dense_training"))


def _run(store, out, **kw) -> dict:
    return run_training(TrainConfig(store=str(store.root), out=str(out), **{**RUN, **kw}))


def _state(out) -> dict:
    return torch.load(out / "model.pt", weights_only=True)["state_dict"]


def test_dense_and_sparse_attention_train_the_same_network(store, tmp_path) -> None:
    dense = _run(store, tmp_path / "dense")
    sparse = _run(store, tmp_path / "sparse", sparse_attention=True)
    for model in ("gnn", "gnn_no_edges"):
        assert dense["test"][model]["macro_f1"] == pytest.approx(sparse["test"][model]["macro_f1"], abs=0.01)
        assert dense["test"][model]["log_loss"] == pytest.approx(sparse["test"][model]["log_loss"], abs=1e-3)
    a, b = _state(tmp_path / "dense"), _state(tmp_path / "sparse")
    assert a.keys() == b.keys()  # one checkpoint layout for both paths
    # Weights are not compared one by one: a conv bias followed by GraphNorm has a zero gradient up to
    # rounding, and Adam turns the sign of that rounding noise into lr-sized steps on either path.


def test_edges_in_a_temporary_file_give_identical_results(store, tmp_path) -> None:
    assert "edge_memory_mb" in NEUTRAL_FIELDS  # a resumed run may switch between the two
    memory = _run(store, tmp_path / "memory", ablation=False)
    on_disk = _run(store, tmp_path / "disk", ablation=False, edge_memory_mb=0)
    assert memory["test"]["gnn"] == on_disk["test"]["gnn"]


def test_mixed_precision_run_completes_with_finite_scores(store, tmp_path) -> None:
    metrics = _run(store, tmp_path / "amp", amp=True, ablation=False)
    assert metrics["config"]["amp"] is True
    assert np.isfinite(metrics["test"]["gnn"]["log_loss"]) and 0 <= metrics["test"]["gnn"]["macro_f1"] <= 1
