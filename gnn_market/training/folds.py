"""One fold of the protocol: the GNN, its no-edge ablation and the baselines on one split."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DataError
from ..graph_builder import FeatureNormalizer
from ..model import GATv2Classifier, ModelConfig
from ..pipeline import MarketData
from .baselines import balanced_weights, make_baselines
from .config import TrainConfig
from .context import row_inputs
from .graphs import build_graphs, graph_config, labelled_rows
from .loop import History, predict_graphs, train_model
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


def run_fold(market: MarketData, split: Split, cfg: TrainConfig, device: torch.device,
             fold_name: str = "") -> FoldResult:
    """Fit the normaliser on ``split.train``, train the GNN (and ablation, baselines) and predict val/test."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    normalizer = FeatureNormalizer(graph_config(cfg).normalisation).fit(market.features, split.train)
    graphs = {name: build_graphs(market, idx, graph_config(cfg), normalizer,
                                 f"graphs {name}{fold_name}" if cfg.progress else None)
              for name, idx in (("train", split.train), ("val", split.val), ("test", split.test))}
    timings["graphs_s"] = time.perf_counter() - t0
    inputs = row_inputs(market, normalizer)  # the fold's normalised [T, N, F] and market context, once
    rows = {name: labelled_rows(g, market, inputs) for name, g in graphs.items()}
    if len(rows["train"].y) == 0 or len(rows["val"].y) == 0 or len(rows["test"].y) == 0:
        raise DataError("a split has no labelled nodes (is the data mostly missing?)")
    weights = balanced_weights(rows["train"].y) if cfg.class_weighted else None
    model_config = ModelConfig(in_channels=market.features.values.shape[-1], hidden=cfg.hidden,
                               heads=cfg.heads, layers=cfg.layers, dropout=cfg.dropout)

    test, val, histories = {}, {}, {}
    model, histories["gnn"] = train_model(graphs["train"], graphs["val"], model_config, weights, cfg, device,
                                          f"gnn{fold_name}")
    timings["gnn_s"] = histories["gnn"].seconds
    for split_name, out in (("test", test), ("val", val)):
        _, probs = predict_graphs(model, graphs[split_name], cfg.batch_hours, device)
        out["gnn"] = (probs.argmax(1), probs)

    if cfg.ablation:
        t0 = time.perf_counter()
        bare = {name: build_graphs(market, idx, graph_config(cfg, edges="none"), normalizer)
                for name, idx in (("train", split.train), ("val", split.val), ("test", split.test))}
        timings["graphs_s"] += time.perf_counter() - t0
        ablated, histories["gnn_no_edges"] = train_model(bare["train"], bare["val"], model_config, weights, cfg,
                                                         device, f"gnn_no_edges{fold_name}")
        timings["gnn_no_edges_s"] = histories["gnn_no_edges"].seconds
        for split_name, out in (("test", test), ("val", val)):
            _, probs = predict_graphs(ablated, bare[split_name], cfg.batch_hours, device)
            out["gnn_no_edges"] = (probs.argmax(1), probs)

    if cfg.baselines:
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
                      test_hours=rows["test"].hour)
