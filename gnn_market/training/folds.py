"""One fold of the protocol: the GNN, its ablations and the baselines on one split.

**Rows** (same seed, initial weights where the architecture allows, batch order
and hyper-parameters for every GNN network):

- ``gnn``: the configured network (by default the GRU temporal encoder over the
  last ``lookback`` hours), or, with encoder selection, the validation winner
  of the two candidates below;
- ``gnn_no_temporal``: the *snapshot-always* network (each node starts from its
  current hour's features, no GRU), reported beside a temporal GNN;
- ``gnn_gru``: the *GRU-always* network, reported only with encoder selection
  (without it ``gnn`` is that network);
- ``gnn_no_edges``: the no-edge ablation, the same network on graphs without
  edges (self-loops only). With encoder selection it makes the same choice as
  the GNN on **its own** validation scores (both encoders trained edgeless),
  so it is not handed the graph model's choice.

**Encoder selection** (``TrainConfig.select_encoder``, opt-in: the held-out
synthetic check in ``benchmarks/encoder_selection_check.py`` found no criterion
that beats always using the GRU). The snapshot encoder replaces the GRU only
when it beats it on validation by more than ``encoder_margin`` on
``encoder_criterion`` (``"macro_f1"``: best-epoch validation macro-F1, the
early-stopping metric; ``"log_loss"``: the raw validation log-loss of the kept
epoch); a tie keeps the GRU. Test rows play no part. The choice is recorded in
:attr:`FoldResult.encoder`, :attr:`FoldResult.no_edges_encoder` and
:attr:`FoldResult.encoder_scores` (``temporal`` / ``snapshot``: validation
macro-F1; ``*_log_loss``: validation log-loss; ``no_edges_*``: the same for
the edgeless candidates).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ..errors import DataError
from ..hour_batches import DenseEdges, HourBatcher
from ..model import GATv2Classifier, ModelConfig
from ..normalizer import FeatureNormalizer
from ..pipeline import MarketData
from ..windows import NodeWindows
from .baselines import balanced_weights, make_baselines
from .config import TrainConfig
from .context import row_inputs
from .distributed import world
from .graphs import graph_config, labelled_rows, make_batchers, run_edges
from .loop import History, predict_hours, train_model
from .metrics import safe_log_loss
from .splits import Split


@dataclass
class FoldResult:
    """Predictions of every model on one fold's labelled validation and test nodes (M_val, M_test rows)."""

    split: Split
    test: dict[str, tuple[np.ndarray, np.ndarray]]   # model -> (y_pred [M_test], probs [M_test, 3])
    val: dict[str, tuple[np.ndarray, np.ndarray]]    # model -> (y_pred [M_val], probs [M_val, 3])
    y_test: np.ndarray                               # [M_test] true classes
    y_val: np.ndarray                                # [M_val]
    histories: dict[str, History]
    model: GATv2Classifier
    normalizer: FeatureNormalizer
    timings: dict[str, float]
    test_hours: np.ndarray | None = None             # [M_test] hour index (panel T axis) of each test row
    val_hours: np.ndarray | None = None              # [M_val] the same for the validation rows
    encoder: str = "temporal"                        # the GNN's node encoder: "temporal" or "snapshot"
    encoder_scores: dict[str, float] | None = None   # validation scores of each candidate (module docstring)
    no_edges_encoder: str | None = None              # the no-edge ablation's own choice (None: not selected)


def model_config_of(cfg: TrainConfig, in_channels: int) -> ModelConfig:
    """The network's :class:`ModelConfig` from the run's settings, field by field name (no hand copy):
    every ``ModelConfig`` field that ``TrainConfig`` also has is taken from it; the input width and the
    edge features per edge come from the data and the graph settings."""
    shared = {f.name: getattr(cfg, f.name) for f in fields(ModelConfig) if hasattr(cfg, f.name)}
    return ModelConfig(**{**shared, "in_channels": in_channels, "edge_dim": graph_config(cfg).edge_dim})


def run_fold(market: MarketData, split: Split, cfg: TrainConfig, device: torch.device,
             fold_name: str = "", edges: DenseEdges | None = None) -> FoldResult:
    """Fit the normaliser on ``split.train``, train the GNN (and ablation, baselines) and predict val/test.

    ``edges``: the run's edge features (:func:`.graphs.run_edges`, shared by every fold and seed);
    None computes this fold's own.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    normalizer = FeatureNormalizer(graph_config(cfg).normalisation).fit(market.features, split.train)
    inputs = row_inputs(market, normalizer)  # the fold's normalised [T, N, F] and market context, once
    own_edges = edges is None and graph_config(cfg).edges != "none"
    if own_edges:
        edges = run_edges(market, [split], cfg, device)
    try:
        batchers = make_batchers(inputs, market, cfg, edges, device)
        hours = {"train": split.train, "val": split.val, "test": split.test}
        rows = {name: labelled_rows(batchers["graph"], idx, market, inputs) for name, idx in hours.items()}
        timings["graphs_s"] = time.perf_counter() - t0
        if len(rows["train"].y) == 0 or len(rows["val"].y) == 0 or len(rows["test"].y) == 0:
            raise DataError("a split has no labelled nodes (is the data mostly missing?)")
        weights = balanced_weights(rows["train"].y) if cfg.class_weighted else None
        model_config = model_config_of(cfg, in_channels=market.features.values.shape[-1])
        windows = None
        if cfg.lookback:  # one shared [T, N, F + 1] array; each batch gathers its [B * N, L, F + 1] windows
            windows = NodeWindows(inputs.x, inputs.valid, cfg.lookback, device)

        test, val, histories = {}, {}, {}

        def fit(name: str, config: ModelConfig, batcher: HourBatcher) -> GATv2Classifier:
            net, histories[name] = train_model(batcher, split.train, split.val, config, weights, cfg, device,
                                               f"{name}{fold_name}", windows)
            timings[f"{name}_s"] = histories[name].seconds
            for split_name, out in (("test", test), ("val", val)):
                _, probs = predict_hours(net, batcher, hours[split_name], cfg.batch_hours, windows, cfg.amp)
                out[name] = (probs.argmax(1), probs)
            return net

        model, encoder, encoder_scores, no_edges_encoder = _fit_gnns(fit, model_config, batchers, rows, cfg,
                                                                     (test, val, histories))
    finally:
        if own_edges:
            edges.close()

    if cfg.baselines and world().is_main:  # under torchrun: once, by rank 0
        t0 = time.perf_counter()
        threshold = market.require_labels().threshold
        for baseline in make_baselines(threshold, cfg.class_weighted, cfg.seed, cfg.hist_gb_max_rows,
                                       cfg.mlp_window, cfg.mlp_max_rows):
            t1 = time.perf_counter()
            baseline.fit(rows["train"])
            for split_name, out in (("test", test), ("val", val)):
                out[baseline.name] = (baseline.predict(rows[split_name]), baseline.predict_proba(rows[split_name]))
            timings[f"{baseline.name}_s"] = time.perf_counter() - t1
        timings["baselines_s"] = time.perf_counter() - t0
    return FoldResult(split, test, val, rows["test"].y, rows["val"].y, histories, model, normalizer, timings,
                      test_hours=rows["test"].hour, val_hours=rows["val"].hour, encoder=encoder,
                      encoder_scores=encoder_scores, no_edges_encoder=no_edges_encoder)


#: Row name of each candidate node encoder's network when the encoder is selected.
CANDIDATE_ROWS = {"temporal": "gnn_gru", "snapshot": "gnn_no_temporal"}


def validation_scores(history: History, val_probs: np.ndarray, y_val: np.ndarray) -> dict[str, float]:
    """A candidate's selection scores: best-epoch validation macro-F1 and the raw validation log-loss."""
    return {"macro_f1": history.best_val_macro_f1, "log_loss": safe_log_loss(y_val, val_probs)}


def choose_encoder(temporal: dict[str, float], snapshot: dict[str, float], criterion: str, margin: float) -> str:
    """``"snapshot"`` when it beats the GRU by more than ``margin`` on ``criterion``, else ``"temporal"``.

    ``temporal`` / ``snapshot``: :func:`validation_scores` of each candidate. The GRU is the
    default; a tie, or a snapshot win inside the margin, keeps it (less noise in the choice).
    """
    if criterion == "log_loss":  # lower is better
        return "snapshot" if snapshot["log_loss"] < temporal["log_loss"] - margin else "temporal"
    return "snapshot" if snapshot["macro_f1"] > temporal["macro_f1"] + margin else "temporal"


def _fit_gnns(fit: Callable[[str, ModelConfig, HourBatcher], GATv2Classifier], model_config: ModelConfig,
              batchers: dict[str, HourBatcher], rows: dict, cfg: TrainConfig, outputs: tuple[dict, dict, dict]) -> tuple[GATv2Classifier, str, dict[str, float] | None, str | None]:
    """Train the GNN and its ablation rows; returns ``(model, encoder, encoder_scores, no_edges_encoder)``.

    Without selection (or a snapshot GNN) the rows are the configured network (``gnn``), the
    snapshot network (``gnn_no_temporal``) and the configured network on edgeless graphs
    (``gnn_no_edges``). With selection, both encoders are trained on the graphs and again on
    edgeless graphs; each of ``gnn`` and ``gnn_no_edges`` keeps its own validation winner, and
    the two graph candidates are reported as ``gnn_gru`` and ``gnn_no_temporal``.
    """
    snapshot_config = replace(model_config, lookback=0)
    report_candidates = model_config.temporal and cfg.ablation and cfg.temporal_ablation
    if not (model_config.temporal and cfg.select_encoder):
        model = fit("gnn", model_config, batchers["graph"])
        if report_candidates:
            fit("gnn_no_temporal", snapshot_config, batchers["graph"])
        if cfg.ablation:
            fit("gnn_no_edges", model_config, batchers["none"])
        return model, ("temporal" if model_config.temporal else "snapshot"), None, None

    configs = {"temporal": model_config, "snapshot": snapshot_config}

    def select(row: str, batcher: HourBatcher, names: dict[str, str], keep: bool) -> tuple:
        """Train both candidates as ``names``, copy the validation winner to ``row``; drop them unless ``keep``."""
        nets = {enc: fit(name, configs[enc], batcher) for enc, name in names.items()}
        scores = {enc: validation_scores(outputs[2][name], outputs[1][name][1], rows["val"].y)
                  for enc, name in names.items()}
        chosen = choose_encoder(scores["temporal"], scores["snapshot"], cfg.encoder_criterion, cfg.encoder_margin)
        for out in outputs:
            out[row] = out[names[chosen]]
            if not keep:
                for name in names.values():
                    del out[name]
        return nets[chosen], chosen, scores

    model, encoder, scores = select("gnn", batchers["graph"], CANDIDATE_ROWS, report_candidates)
    encoder_scores = {enc: s["macro_f1"] for enc, s in scores.items()}
    encoder_scores.update({f"{enc}_log_loss": s["log_loss"] for enc, s in scores.items()})
    no_edges_encoder = None
    if cfg.ablation:
        _, no_edges_encoder, no_edge_scores = select(
            "gnn_no_edges", batchers["none"], {"temporal": "gnn_no_edges_gru", "snapshot": "gnn_no_edges_snapshot"},
            keep=False)
        encoder_scores.update({f"no_edges_{enc}": s["macro_f1"] for enc, s in no_edge_scores.items()})
        encoder_scores.update({f"no_edges_{enc}_log_loss": s["log_loss"] for enc, s in no_edge_scores.items()})
    return model, encoder, encoder_scores, no_edges_encoder
