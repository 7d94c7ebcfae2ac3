"""The GNN's node encoder (GRU over the lookback, or the current hour only): opt-in selection on validation.

With selection, the GRU-always (``gnn_gru``) and snapshot-always (``gnn_no_temporal``) networks are
rows of their own, and the no-edge ablation makes its own choice on its own validation scores.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import gnn_market.training.folds as folds_module
from gnn_market.checkpoint import load_checkpoint
from gnn_market.encoder import GraphEncoder
from gnn_market.errors import DataError
from gnn_market.sources import open_store
from gnn_market.train import build_parser, config_from_args
from gnn_market.training import TrainConfig, resolve_device, run_fold, run_training
from gnn_market.training.folds import choose_encoder
from gnn_market.training.loop import History
from gnn_market.training.metrics import safe_log_loss
from gnn_market.training.resume import load_part, part_spec, save_part
from gnn_market.training.universe import load_training_market

from train_fixtures import TINY_TRAIN, tiny_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tiny_store(tmp_path_factory.mktemp("encoder-selection"))


def _cfg(store, out, **kw) -> TrainConfig:
    return TrainConfig(store=str(store.root), out=str(out),
                       **{"lookback": 4, "baselines": False, "select_encoder": True, **TINY_TRAIN, **kw})


@pytest.fixture
def rigged(monkeypatch):
    """Train for real, then overwrite each model's validation curve so that the winner is known.

    ``rigged(temporal=a, snapshot=b)`` sets the best validation macro-F1 of every temporal
    (``lookback > 0``) and every snapshot network; ``no_edges=(c, d)`` sets those of the
    edgeless networks apart (default: the same as on graphs). Returns the list of trained model configs.
    """
    trained = []
    real = folds_module.train_model

    def install(temporal: float, snapshot: float, no_edges: tuple[float, float] | None = None) -> list:
        def fake(batcher, train_hours, val_hours, model_config, weights, cfg, device, name, *args, **kwargs):
            net, history = real(batcher, train_hours, val_hours, model_config, weights, cfg, device, name,
                                *args, **kwargs)
            trained.append(model_config)
            scores = no_edges if (no_edges and name.startswith("gnn_no_edges")) else (temporal, snapshot)
            score = scores[0] if model_config.temporal else scores[1]
            return net, History(train_loss=history.train_loss, val_macro_f1=[score], best_epoch=1,
                                seconds=history.seconds)
        monkeypatch.setattr(folds_module, "train_model", fake)
        return trained
    return install


def _fold(store, tmp_path, **kw):
    cfg = _cfg(store, tmp_path / "out", **kw)
    market, splits, _ = load_training_market(open_store(cfg.store, cfg.data, seed=0), cfg)
    return cfg, market, splits[0], run_fold(market, splits[0], cfg, resolve_device("cpu"))


def test_history_reports_the_kept_epochs_validation_score() -> None:
    assert History(val_macro_f1=[0.3, 0.5, 0.4], best_epoch=2).best_val_macro_f1 == 0.5
    assert History().best_val_macro_f1 == float("-inf")


def test_snapshot_encoder_is_kept_when_it_validates_better(store, tmp_path, rigged) -> None:
    trained = rigged(temporal=0.40, snapshot=0.45)
    _, _, _, result = _fold(store, tmp_path)
    assert result.encoder == "snapshot"
    assert (result.encoder_scores["temporal"], result.encoder_scores["snapshot"]) == (0.40, 0.45)
    assert result.model.config.lookback == 0
    # the GNN's rows are the snapshot network's; the no-edge ablation is the same (snapshot) network
    for split in ("test", "val"):
        np.testing.assert_array_equal(getattr(result, split)["gnn"][1], getattr(result, split)["gnn_no_temporal"][1])
    # GRU and snapshot on graphs, then both again on edgeless graphs (the no-edge ablation's own choice)
    assert [c.lookback for c in trained] == [4, 0, 4, 0]
    assert result.no_edges_encoder == "snapshot"
    assert result.histories["gnn"].best_val_macro_f1 == 0.45


def test_temporal_encoder_is_kept_when_it_validates_better_or_ties(store, tmp_path, rigged) -> None:
    trained = rigged(temporal=0.45, snapshot=0.45)
    _, _, _, result = _fold(store, tmp_path)
    assert result.encoder == "temporal" and result.model.config.lookback == 4
    assert [c.lookback for c in trained] == [4, 0, 4, 0] and result.no_edges_encoder == "temporal"
    assert not np.array_equal(result.test["gnn"][1], result.test["gnn_no_temporal"][1])


def test_no_selection_keeps_the_configured_encoder(store, tmp_path, rigged) -> None:
    trained = rigged(temporal=0.10, snapshot=0.90)
    _, _, _, result = _fold(store, tmp_path, select_encoder=False)
    assert result.encoder == "temporal" and result.encoder_scores is None and result.model.config.lookback == 4
    assert [c.lookback for c in trained] == [4, 0, 4]   # gnn, gnn_no_temporal (the ablation), gnn_no_edges


def test_candidate_is_trained_but_not_reported_without_the_temporal_ablation(store, tmp_path, rigged) -> None:
    trained = rigged(temporal=0.40, snapshot=0.45)
    _, _, _, result = _fold(store, tmp_path, temporal_ablation=False)
    assert result.encoder == "snapshot" and set(result.test) == {"gnn", "gnn_no_edges"}
    assert set(result.histories) == {"gnn", "gnn_no_edges"} and [c.lookback for c in trained] == [4, 0, 4, 0]


def test_a_snapshot_gnn_has_nothing_to_select(store, tmp_path, rigged) -> None:
    trained = rigged(temporal=0.9, snapshot=0.1)
    _, _, _, result = _fold(store, tmp_path, lookback=0)
    assert result.encoder == "snapshot" and result.encoder_scores is None
    assert [c.lookback for c in trained] == [0, 0] and set(result.test) == {"gnn", "gnn_no_edges"}


def test_choice_survives_a_saved_part(store, tmp_path, rigged) -> None:
    rigged(temporal=0.40, snapshot=0.45)
    cfg, market, split, result = _fold(store, tmp_path)
    spec, path = part_spec(cfg, market, split, seed=cfg.seed, fold=0), tmp_path / "p.pt"
    save_part(path, result, spec)
    loaded = load_part(path, spec)
    assert loaded.encoder == "snapshot" and loaded.encoder_scores == result.encoder_scores
    assert loaded.no_edges_encoder == result.no_edges_encoder is not None   # the ablation's own choice too
    assert loaded.model.config.lookback == 0


def test_run_records_the_choice_and_the_checkpoint_serves_the_chosen_network(store, tmp_path, rigged) -> None:
    rigged(temporal=0.40, snapshot=0.45)
    m = run_training(_cfg(store, tmp_path / "run", seeds=[0, 1], folds=2))
    for seed in ("0", "1"):
        assert [f["chosen"] for f in m["seeds"][seed]["encoder"]] == ["snapshot", "snapshot"]
        scores = m["seeds"][seed]["encoder"][0]["val_macro_f1"]
        assert (scores["temporal"], scores["snapshot"]) == (0.40, 0.45)
    assert m["encoder"] == {"selection": True, "lookback": 4, "counts": {"temporal": 0, "snapshot": 4}}
    # the GNN row is the snapshot candidate's on every seed and fold; the GRU-always network has its own row
    assert "gnn_gru" in m["test"] and "gnn_gru" in m["val"]
    assert m["test"]["gnn"]["macro_f1"] == pytest.approx(m["test"]["gnn_no_temporal"]["macro_f1"])
    ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    assert ckpt.model_config["lookback"] == 0 and ckpt.extra["encoder"] == "snapshot"
    encoded = GraphEncoder.load(tmp_path / "run" / "model.pt").encode(open_store(str(store.root)))
    assert encoded.probs.shape[-1] == 3 and torch.isfinite(torch.as_tensor(encoded.probs)).all()
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Node encoder chosen on validation" in report
    assert "the node encoder (GRU or snapshot" in report.split("so it is optimistic")[0].splitlines()[-1]


def test_selection_is_off_in_metrics_for_a_fixed_encoder(store, tmp_path) -> None:
    m = run_training(_cfg(store, tmp_path / "run", select_encoder=False, ablation=False))
    assert m["encoder"]["selection"] is False and m["seeds"]["0"]["encoder"] == [
        {"chosen": "temporal", "val_macro_f1": None}]
    assert "Node encoder chosen" not in (tmp_path / "run" / "report.md").read_text()


def test_no_edge_ablation_makes_its_own_encoder_choice(store, tmp_path, rigged) -> None:
    # the graph GNN prefers the snapshot encoder, the edgeless networks the GRU: each keeps its own winner
    trained = rigged(temporal=0.40, snapshot=0.45, no_edges=(0.50, 0.30))
    _, _, _, result = _fold(store, tmp_path)
    assert result.encoder == "snapshot" and result.no_edges_encoder == "temporal"
    assert [c.lookback for c in trained] == [4, 0, 4, 0]
    assert result.histories["gnn_no_edges"].best_val_macro_f1 == 0.50
    assert result.encoder_scores["no_edges_temporal"] == 0.50 and result.encoder_scores["no_edges_snapshot"] == 0.30
    # the edgeless candidates are not rows of their own
    assert set(result.test) == {"gnn", "gnn_gru", "gnn_no_temporal", "gnn_no_edges"} == set(result.val)


def test_gru_always_and_snapshot_always_are_rows_of_their_own(store, tmp_path, rigged) -> None:
    rigged(temporal=0.40, snapshot=0.45)
    _, _, _, result = _fold(store, tmp_path)
    for split in ("test", "val"):
        rows = getattr(result, split)
        np.testing.assert_array_equal(rows["gnn"][1], rows["gnn_no_temporal"][1])   # snapshot chosen
        assert not np.array_equal(rows["gnn"][1], rows["gnn_gru"][1])               # the GRU's own row
    assert result.histories["gnn_gru"].best_val_macro_f1 == 0.40
    # the recorded validation log-losses are those of the candidate rows' raw probabilities
    for encoder, row in (("temporal", "gnn_gru"), ("snapshot", "gnn_no_temporal")):
        assert result.encoder_scores[f"{encoder}_log_loss"] == pytest.approx(
            safe_log_loss(result.y_val, result.val[row][1]), abs=1e-12)


def test_a_snapshot_win_inside_the_margin_keeps_the_gru(store, tmp_path, rigged) -> None:
    rigged(temporal=0.40, snapshot=0.405)
    _, _, _, result = _fold(store, tmp_path, encoder_margin=0.01)
    assert result.encoder == "temporal" and result.model.config.lookback == 4


@pytest.mark.parametrize("criterion, margin, snapshot, expected", [
    ("macro_f1", 0.0, {"macro_f1": 0.41, "log_loss": 1.10}, "snapshot"),
    ("macro_f1", 0.0, {"macro_f1": 0.40, "log_loss": 0.90}, "temporal"),     # a tie keeps the GRU
    ("macro_f1", 0.02, {"macro_f1": 0.41, "log_loss": 0.90}, "temporal"),    # inside the margin
    ("macro_f1", 0.02, {"macro_f1": 0.43, "log_loss": 1.10}, "snapshot"),
    ("log_loss", 0.0, {"macro_f1": 0.30, "log_loss": 0.99}, "snapshot"),     # lower log-loss wins
    ("log_loss", 0.0, {"macro_f1": 0.50, "log_loss": 1.01}, "temporal"),
    ("log_loss", 0.005, {"macro_f1": 0.30, "log_loss": 0.997}, "temporal"),
])
def test_choose_encoder_criteria(criterion, margin, snapshot, expected) -> None:
    gru = {"macro_f1": 0.40, "log_loss": 1.00}
    assert choose_encoder(gru, snapshot, criterion, margin) == expected


def test_selection_is_opt_in_and_the_gru_is_the_default() -> None:
    cfg = TrainConfig()
    assert cfg.select_encoder is False and cfg.lookback > 0
    assert (cfg.encoder_criterion, cfg.encoder_margin) == ("macro_f1", 0.0)


@pytest.mark.parametrize("kw, message", [
    ({"encoder_criterion": "accuracy"}, "--encoder-criterion must be one of macro_f1, log_loss"),
    ({"encoder_margin": -0.1}, "--encoder-margin must be a finite number >= 0"),
    ({"encoder_margin": float("nan")}, "--encoder-margin must be a finite number >= 0"),
])
def test_bad_selection_settings_are_refused(kw, message) -> None:
    with pytest.raises(DataError, match=message):
        TrainConfig(**kw)


def test_cli_selection_flags() -> None:
    cfg = config_from_args(build_parser().parse_args(
        ["--encoder-selection", "--encoder-criterion", "log_loss", "--encoder-margin", "0.01"]))
    assert (cfg.select_encoder, cfg.encoder_criterion, cfg.encoder_margin) == (True, "log_loss", 0.01)
    assert config_from_args(build_parser().parse_args([])).select_encoder is False
