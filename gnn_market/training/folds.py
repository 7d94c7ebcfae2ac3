"""One fold of the protocol: the GNN, its ablations and the baselines on one split.

**Node encoder chosen on validation** (``TrainConfig.select_encoder``, on by
default). A temporal GNN (``lookback > 0``) is trained twice on the same
graphs: with its GRU over the last ``lookback`` hours and without it (each
node starts from its current hour's features, the *snapshot* encoder). The
fold's GNN is the one with the better best-epoch validation macro-F1, the
metric early stopping already uses; a tie keeps the temporal one. Test rows
play no part. The choice is recorded in :attr:`FoldResult.encoder` and
:attr:`FoldResult.encoder_scores`.

Ablations (same seed, initial weights where the architecture allows, batch
order and hyper-parameters as the GNN):

- ``gnn_no_edges``: the chosen network (its node encoder, context, edge width)
  on graphs without edges (self-loops only);
- ``gnn_no_temporal``: the same graphs and network without the temporal
  encoder, reported when the configured GNN has one (``lookback > 0``). It is
  the snapshot candidate of the selection: where the snapshot encoder is
  chosen, its row equals the GNN's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

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
    encoder_scores: dict[str, float] | None = None   # best validation macro-F1 of each candidate encoder


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
        model_config = ModelConfig(in_channels=market.features.values.shape[-1], hidden=cfg.hidden,
                                   heads=cfg.heads, layers=cfg.layers, dropout=cfg.dropout, lookback=cfg.lookback,
                                   context=cfg.context, edge_dim=graph_config(cfg).edge_dim,
                                   edge_gain=cfg.edge_gain, current_skip=cfg.current_skip,
                                   context_inputs=cfg.context_inputs)
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

        model = fit("gnn", model_config, batchers["graph"])
        encoder, encoder_scores = ("temporal" if model_config.temporal else "snapshot"), None
        report_snapshot = model_config.temporal and cfg.ablation and cfg.temporal_ablation
        if model_config.temporal and (cfg.select_encoder or report_snapshot):
            snapshot = fit("gnn_no_temporal", replace(model_config, lookback=0), batchers["graph"])
            if cfg.select_encoder:
                encoder_scores = {"temporal": histories["gnn"].best_val_macro_f1,
                                  "snapshot": histories["gnn_no_temporal"].best_val_macro_f1}
                if encoder_scores["snapshot"] > encoder_scores["temporal"]:  # a tie keeps the configured encoder
                    encoder, model = "snapshot", snapshot
                    for out in (test, val, histories):
                        out["gnn"] = out["gnn_no_temporal"]
            if not report_snapshot:  # trained only as a candidate
                for out in (test, val, histories):
                    del out["gnn_no_temporal"]
        if cfg.ablation:
            fit("gnn_no_edges", model.config, batchers["none"])
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
                      encoder_scores=encoder_scores)
