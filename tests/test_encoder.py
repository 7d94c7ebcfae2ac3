"""GraphEncoder: batched == per-hour, schema check, no look-ahead (temporal and legacy models), packaged
checkpoint, legacy checkpoints with identical outputs, training and inference paths agree."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gnn_market.checkpoint import PACKAGED_CHECKPOINT, load_checkpoint, save_checkpoint
from gnn_market.classes import IGNORE_INDEX
from gnn_market.encoder import EncodedRange, GraphEncoder
from gnn_market.errors import CheckpointError, DataError
from gnn_market.graph_builder import GraphConfig
from gnn_market.hour_batches import DenseEdges, HourBatcher
from gnn_market.normalizer import FeatureNormalizer
from gnn_market.panel import load_panel
from gnn_market.pipeline import load_market
from gnn_market.training import predict_hours
from gnn_market.windows import NodeWindows

from pit_fixtures import late_liquidity, ranked_before, scale_volume
from train_fixtures import TINY_MARKET, tiny_checkpoint, tiny_store


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoder")
    store = tiny_store(root)
    return store, tiny_checkpoint(root, store.root)


@pytest.fixture(scope="module")
def encoder(trained) -> GraphEncoder:
    return GraphEncoder.load(trained[1])


def test_attributes_come_from_the_checkpoint(trained, encoder) -> None:
    ckpt = load_checkpoint(trained[1])
    assert encoder.embedding_dim == 8 and encoder.market == "spot" and encoder.threshold == 0.01
    assert encoder.feature_names == ckpt.feature_names
    assert encoder.fit_range == (ckpt.range("train")[0], ckpt.range("val")[1])
    assert encoder.fit_range[1] < ckpt.range("test")[0]
    assert len(encoder.fingerprint()) == 64


def test_encode_range_equals_per_hour_encode(trained, encoder) -> None:
    store = trained[0]
    times = load_panel(store).times
    start, end = times[200], times[-1]
    full = encoder.encode_range(store.root, start=start, end=end, batch_hours=16)
    assert isinstance(full, EncodedRange)
    assert full.probs.shape == (len(times) - 200, TINY_MARKET.n_symbols, 3)
    assert full.embeddings.shape == (len(times) - 200, TINY_MARKET.n_symbols, 8)
    assert full.times[0] == start and full.times[-1] == end and full.symbols == TINY_MARKET.symbols
    np.testing.assert_allclose(full.probs[full.mask].sum(-1), 1.0, atol=1e-5)
    assert (full.probs[~full.mask] == 0).all() and (full.embeddings[~full.mask] == 0).all()
    for k in (0, 57, len(full.times) - 1):
        one = encoder.encode(store.root, time=full.times[k])
        assert one.probs.shape == (1, TINY_MARKET.n_symbols, 3) and one.times[0] == full.times[k]
        np.testing.assert_allclose(one.probs[0], full.probs[k], atol=1e-5)
        np.testing.assert_allclose(one.embeddings[0], full.embeddings[k], atol=1e-4)
        np.testing.assert_array_equal(one.mask[0], full.mask[k])
    latest = encoder.encode(store.root)
    assert latest.times[0] == times[-1]


def test_no_look_ahead(trained, encoder) -> None:
    """Changing every candle after hour t leaves the encoding of hours <= t unchanged (temporal model:
    lookback windows, lead-lag edges and market context included)."""
    assert encoder.model.config.temporal and encoder.model.config.context and encoder.graph_config.lead_lag
    panel = load_panel(trained[0])
    t = 300
    rng = np.random.default_rng(0)
    noisy = {name: getattr(panel, name).copy() for name in ("open", "high", "low", "close", "volume", "quote_volume")}
    factor = np.exp(rng.normal(scale=0.05, size=noisy["close"][t + 1:].shape))
    for values in noisy.values():
        values[t + 1:] *= factor
    perturbed = dataclasses.replace(panel, **noisy)
    a = encoder.encode_range(panel, start=panel.times[250], end=panel.times[-1])
    b = encoder.encode_range(perturbed, start=panel.times[250], end=panel.times[-1])
    upto = t - 250 + 1
    # Tolerance, not bit-identity: the batches holding hours <= t also hold perturbed later hours, and
    # a GEMM may round differently with other values beside a row on other CPUs; a leak of 5 % price
    # noise moves outputs by orders of magnitude more than 1e-6.
    np.testing.assert_allclose(a.probs[:upto], b.probs[:upto], rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.embeddings[:upto], b.embeddings[:upto], rtol=0, atol=1e-5)
    assert not np.allclose(a.probs[upto:], b.probs[upto:])  # the perturbation does reach later hours


def test_feature_schema_mismatch_is_refused(trained, tmp_path) -> None:
    ckpt = load_checkpoint(trained[1])
    ckpt.feature_names = list(reversed(ckpt.feature_names))
    path = save_checkpoint(ckpt, tmp_path / "swapped.pt")
    enc = GraphEncoder.load(path)
    with pytest.raises(CheckpointError, match="feature schema mismatch"):
        enc.encode(trained[0].root)


def test_bad_checkpoints_are_refused(trained, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        GraphEncoder.load(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(trained[1].read_bytes()[:500])
    with pytest.raises(CheckpointError, match="cannot read"):
        GraphEncoder.load(corrupt)
    ckpt = load_checkpoint(trained[1])
    ckpt.state_dict = {k: v for k, v in ckpt.state_dict.items() if not k.startswith("head")}
    with pytest.raises(CheckpointError, match="weights"):
        GraphEncoder.load(save_checkpoint(ckpt, tmp_path / "partial.pt"))


@pytest.mark.skipif(not PACKAGED_CHECKPOINT.is_file(), reason="packaged checkpoint not built")
def test_packaged_checkpoint_is_unseen_after_august_2023() -> None:
    enc = GraphEncoder.load()
    assert enc.fit_range[1] < pd.Timestamp("2023-09-01", tz="UTC")
    assert PACKAGED_CHECKPOINT.stat().st_size < 2_000_000
    sidecar = json.loads(PACKAGED_CHECKPOINT.with_suffix(".json").read_text())
    assert sidecar["sha256"] == hashlib.sha256(PACKAGED_CHECKPOINT.read_bytes()).hexdigest()
    assert pd.Timestamp(sidecar["fit_range"][1]) < pd.Timestamp("2023-09-01", tz="UTC")
    out = enc.encode_range(None, start="2023-09-01", end="2023-09-01T23:00")
    assert out.probs.shape == (24, 30, 3) and out.mask.all()
    np.testing.assert_allclose(out.probs.sum(-1), 1.0, atol=1e-5)


def test_checkpoint_round_trip_and_foreign_files(trained, tmp_path) -> None:
    ckpt = load_checkpoint(trained[1])
    again = load_checkpoint(save_checkpoint(ckpt, tmp_path / "copy.pt"))
    assert again.feature_names == ckpt.feature_names and again.normalizer == ckpt.normalizer
    assert again.ranges == ckpt.ranges and again.model_config == ckpt.model_config
    assert all(torch.equal(again.state_dict[k], v) for k, v in ckpt.state_dict.items())
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a CryptoGraph"):
        load_checkpoint(tmp_path / "foreign.pt")
    raw = torch.load(trained[1], weights_only=True)
    raw["format_version"] = 99
    torch.save(raw, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(tmp_path / "future.pt")


def test_progress_bar_only_when_asked(trained, encoder, capsys) -> None:
    store, _ = trained
    quiet = encoder.encode_range(store, start="2024-01-12", end="2024-01-13")
    assert capsys.readouterr().err == ""
    shown = encoder.encode_range(store, start="2024-01-12", end="2024-01-13", batch_hours=8, progress=True)
    err = capsys.readouterr().err
    assert "encoding" in err and f"{len(shown.times)}/{len(shown.times)}" in err
    # Batching and the bar change nothing beyond float rounding: batch sizes 64 and 8 give other GEMM
    # shapes, which round differently on some CPUs (~6e-8 seen), so no bit-identity is promised.
    np.testing.assert_allclose(quiet.probs, shown.probs, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- calibration in the checkpoint
SCALING = {"scale": [0.7, 1.3, 0.9], "bias": [-0.4, 0.8, -0.2]}
RULE = {"weights": [3.0, 1.0, 0.5]}


def variant(trained, tmp_path, name: str, calibration, decision_rule):
    ckpt = load_checkpoint(trained[1])
    return save_checkpoint(dataclasses.replace(ckpt, calibration=calibration, decision_rule=decision_rule),
                           tmp_path / name)


def test_run_stores_the_gnn_calibration(trained) -> None:
    metrics = json.loads((trained[1].parent / "metrics.json").read_text())
    ckpt = load_checkpoint(trained[1])
    fitted = metrics["seeds"]["0"]["calibration"][-1]["gnn"]
    assert ckpt.calibration == {k: fitted[k] for k in ("scale", "bias")}
    assert ckpt.decision_rule == {"weights": fitted["weights"]}


def test_encoder_serves_calibrated_probabilities_and_its_decision_rule(trained, tmp_path) -> None:
    store = trained[0]
    plain = GraphEncoder.load(variant(trained, tmp_path, "plain.pt", None, None))
    tuned = GraphEncoder.load(variant(trained, tmp_path, "tuned.pt", SCALING, RULE))
    assert not plain.calibrated and tuned.calibrated and plain.fingerprint() != tuned.fingerprint()
    raw = plain.encode_range(store.root, start="2024-01-12", end="2024-01-14")
    cal = tuned.encode_range(store.root, start="2024-01-12", end="2024-01-14")
    # independent reference: softmax(a * log p + b) of the uncalibrated output, by hand
    z = np.log(np.clip(raw.probs[raw.mask].astype(np.float64), 1e-7, 1)) * SCALING["scale"] + SCALING["bias"]
    expect = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    np.testing.assert_allclose(cal.probs[cal.mask], expect, atol=1e-6)
    assert (cal.probs[~cal.mask] == 0).all()
    decided = np.argmax(cal.probs * np.array(RULE["weights"]), axis=-1)
    np.testing.assert_array_equal(tuned.decide(cal.probs), decided)
    frame = cal.to_frame(embeddings=False)
    names = np.array(["DOWN", "SIDEWAYS", "UP"], dtype=object)[decided.reshape(-1)]
    valid = frame["valid"].to_numpy()
    assert (frame["prediction"].to_numpy()[valid] == names[valid]).all()
    assert (decided != cal.probs.argmax(-1))[cal.mask].any()   # the rule really differs from argmax here


def test_checkpoint_without_calibration_behaves_as_before(trained, tmp_path) -> None:
    path = variant(trained, tmp_path, "old.pt", None, None)
    raw = torch.load(path, weights_only=True)
    assert "calibration" not in raw and "decision_rule" not in raw   # the file an older run wrote
    enc = GraphEncoder.load(path)
    out = enc.encode_range(trained[0].root, start="2024-01-12", end="2024-01-13")
    assert out.rule_weights is None
    np.testing.assert_array_equal(out.predictions(), out.probs.argmax(-1))
    np.testing.assert_array_equal(enc.decide(out.probs), out.probs.argmax(-1))
    # identity scaling = the network's softmax: the fixture's own (calibrated) encoder, undone
    tuned = GraphEncoder.load(trained[1])
    cal = tuned.encode_range(trained[0].root, start="2024-01-12", end="2024-01-13")
    np.testing.assert_allclose(cal.probs[cal.mask], tuned.scaling.transform(out.probs[out.mask]), atol=1e-6)


@pytest.mark.parametrize("calibration, rule", [
    ({"scale": [1.0, float("nan"), 1.0], "bias": [0.0, 0.0, 0.0]}, None),
    ({"scale": [1.0, 1.0], "bias": [0.0, 0.0]}, None),
    ({"scale": [1.0, 1.0, 1.0]}, None),
    ("identity", None),
    (None, {"weights": [1.0, -1.0, 1.0]}),
    (None, {"weights": [1.0, float("inf"), 1.0]}),
    (None, {"w": [1.0, 1.0, 1.0]}),
])
def test_malformed_calibration_is_refused(trained, tmp_path, calibration, rule) -> None:
    path = variant(trained, tmp_path, "bad.pt", calibration, rule)
    with pytest.raises(CheckpointError, match="calibration or decision rule"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        GraphEncoder.load(path)


# --------------------------------------------------------------------------- temporal model and legacy checkpoints
FIXTURES = Path(__file__).parent / "fixtures"


def test_default_checkpoint_is_the_temporal_model_and_matches_the_training_path(trained, encoder) -> None:
    """The encoder feeds the temporal model the same windows and graphs as training does."""
    config = encoder.model.config
    assert config.temporal and config.context and config.edge_dim == 2 and encoder.graph_config.lead_lag
    store, path = trained
    market = load_market(store)
    hours = np.arange(300, 340)
    ckpt = load_checkpoint(path)
    normalizer = FeatureNormalizer.from_state_dict(ckpt.normalizer)
    gconfig = GraphConfig.from_dict(ckpt.graph_config)
    x = normalizer.transform(market.features.values, market.features.valid)
    x[~market.features.valid] = 0.0
    windows = NodeWindows(x, market.features.valid, config.lookback)
    edges = DenseEdges(market.log_ret, 300, 340, gconfig)
    preds = {}
    for sparse in (False, True):  # the dense fast path and PyG's sparse GATv2Conv give the same network
        batcher = HourBatcher(x, market.features.valid, market.labels.classes, gconfig, edges, sparse=sparse)
        preds[sparse] = predict_hours(encoder.model, batcher, hours, 16, windows)
    np.testing.assert_array_equal(preds[False][0], preds[True][0])
    np.testing.assert_allclose(preds[False][1], preds[True][1], atol=1e-5)
    y, probs = preds[False]
    out = encoder.encode_range(store.root, start=market.times[300], end=market.times[339])
    labelled = (market.labels.classes[hours] != IGNORE_INDEX) & market.features.valid[hours]
    assert labelled.sum() == len(y) > 0
    # the encoder serves the checkpoint's calibration of the network's softmax
    np.testing.assert_allclose(out.probs[labelled], encoder.scaling.transform(probs), atol=1e-5)


def test_legacy_tiny_checkpoint_loads_as_the_original_network_with_identical_outputs(trained) -> None:
    """A checkpoint written before the temporal model (no lookback/context/edge_dim/lead_lag fields)."""
    enc = GraphEncoder.load(FIXTURES / "legacy_tiny.pt")
    assert "lookback" not in enc.checkpoint.model_config and "lead_lag" not in enc.checkpoint.graph_config
    assert not enc.model.config.temporal and enc.model.context is None and enc.model.config.edge_dim == 1
    ref = np.load(FIXTURES / "legacy_tiny_outputs.npz")
    out = enc.encode_range(trained[0].root)
    n = len(ref["probs"])
    np.testing.assert_array_equal(out.mask[-n:], ref["mask"])
    np.testing.assert_allclose(out.probs[-n:], ref["probs"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out.embeddings[-n:], ref["emb"], rtol=0, atol=1e-5)


@pytest.mark.skipif(not PACKAGED_CHECKPOINT.is_file(), reason="packaged checkpoint not built")
def test_packaged_checkpoint_outputs_are_unchanged() -> None:
    enc = GraphEncoder.load()
    ref = np.load(FIXTURES / "packaged_outputs.npz")
    out = enc.encode_range(None, start="2023-09-01", end="2023-09-01T11:00")
    np.testing.assert_allclose(out.probs, ref["probs"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out.embeddings, ref["emb"], rtol=0, atol=1e-5)


def test_legacy_model_has_no_look_ahead_either(trained) -> None:
    panel = load_panel(trained[0])
    enc = GraphEncoder.load(FIXTURES / "legacy_tiny.pt")
    t = 300
    factor = np.exp(np.random.default_rng(1).normal(scale=0.05, size=panel.close[t + 1:].shape))
    perturbed = dataclasses.replace(panel, **{name: np.concatenate([getattr(panel, name)[:t + 1],
                                                                    getattr(panel, name)[t + 1:] * factor])
                                              for name in ("open", "high", "low", "close")})
    a = enc.encode_range(panel, start=panel.times[250])
    b = enc.encode_range(perturbed, start=panel.times[250])
    np.testing.assert_allclose(a.probs[:t - 250 + 1], b.probs[:t - 250 + 1], rtol=0, atol=1e-6)


def test_edge_width_mismatch_is_refused(trained, tmp_path) -> None:
    ckpt = load_checkpoint(trained[1])
    ckpt.graph_config = {**ckpt.graph_config, "lead_lag": False}
    with pytest.raises(CheckpointError, match="edge feature"):
        GraphEncoder.load(save_checkpoint(ckpt, tmp_path / "mismatch.pt"))


def test_non_finite_outputs_are_refused_never_served(trained) -> None:
    """A model that produces NaN (weights damaged after loading, or inputs it cannot handle) raises
    instead of serving NaN probabilities (issue 11)."""
    enc = GraphEncoder.load(trained[1])
    with torch.no_grad():
        next(p for p in enc.model.parameters() if p.dim() == 2).fill_(float("nan"))
    with pytest.raises(CheckpointError, match=r"non-finite probabilities or embeddings .* refusing to serve"):
        enc.encode(trained[0].root)
    with pytest.raises(CheckpointError, match="refusing to serve"):
        enc.encode_range(trained[0].root, batch_hours=16)


# ------------------------------------------------ encode_range(store, top=): ranked before start (issue 22 item 5)
def test_encode_range_top_ranks_on_the_hours_before_start(trained, encoder, tmp_path) -> None:
    store = trained[0]
    times = load_panel(store).times
    since, end = times[400], times[430]
    copy, before = late_liquidity(store, tmp_path / "late", 3, since)  # other pairs 10^4 x as liquid from `since`
    quiet = scale_volume(store, tmp_path / "quiet", before, since, 1e-6)  # chosen pairs' volume: changed too
    base = encoder.encode_range(store.root, start=since, end=end, top=3)
    assert base.symbols == before and base.times[0] == since and base.times[-1] == end
    late = encoder.encode_range(copy.root, start=since, end=end, top=3)
    assert late.symbols == before  # the same pairs with the same data: bit-identical outputs
    np.testing.assert_array_equal(late.probs, base.probs)
    np.testing.assert_array_equal(late.embeddings, base.embeddings)
    assert encoder.encode_range(quiet.root, start=since, end=end, top=3).symbols == before
    among = sorted(store.symbols())[1:]
    among_top = encoder.encode_range(copy.root, start=since, end=end, top=2, symbols=among)
    assert among_top.symbols == ranked_before(store, 2, since, symbols=among)


def test_encode_range_top_without_history_before_start_is_refused(trained, encoder) -> None:
    store = trained[0]
    first = load_panel(store).times[0]
    with pytest.raises(DataError) as err:
        encoder.encode_range(store.root, top=3)  # from the first stored hour: only the range could rank
    assert "no start= was given" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="holds no spot candles before it"):
        encoder.encode_range(store.root, start=first, top=3)
