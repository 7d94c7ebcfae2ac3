"""Training graphs: the graph config of a run, its edge features, hour batchers and labelled rows."""
from __future__ import annotations

import numpy as np
import torch

from ..classes import IGNORE_INDEX
from ..graph_builder import GraphConfig
from ..hour_batches import DenseEdges, HourBatcher
from ..pipeline import MarketData
from .baselines import TabularData
from .config import TrainConfig
from .context import RowInputs, market_context
from .splits import Split


def graph_config(cfg: TrainConfig, edges: str = "correlation") -> GraphConfig:
    """The run's :class:`GraphConfig`; ``edges="none"`` for the no-edge ablation."""
    return GraphConfig(window=cfg.window, top_k=cfg.top_k, edges=edges, lead_lag=cfg.lead_lag)


def run_edges(market: MarketData, splits: list[Split], cfg: TrainConfig, device: torch.device) -> DenseEdges:
    """Edge features of every hour any of ``splits`` reads, computed once for the run (all folds and seeds).

    In memory up to ``cfg.edge_memory_mb``, else in a temporary file (see :class:`DenseEdges`). On a
    GPU the budget is at least half of the device's free memory: the edges then stay resident there and
    a batch is assembled on the device by indexing, with no host reads or copies per step.
    """
    lo = min(int(s.train.min()) for s in splits)
    hi = max(int(max(s.train.max(), s.val.max(), s.test.max())) for s in splits) + 1
    budget = cfg.edge_memory_mb
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = max(budget, 0.5 * free / 2**20)
    return DenseEdges(market.log_ret, lo, hi, graph_config(cfg), memory_mb=budget, device=device,
                      progress=cfg.progress)


def make_batchers(inputs: RowInputs, market: MarketData, cfg: TrainConfig, edges: DenseEdges | None,
                  device: torch.device) -> dict[str, HourBatcher]:
    """``{"graph": ..., "none": ...}``: batchers of the run's graphs and of the no-edge ablation's.

    Both read the fold's normalised features ``inputs.x`` (shared with the baselines, not copied).
    """
    y = market.require_labels().classes
    return {"graph": HourBatcher(inputs.x, inputs.valid, y, graph_config(cfg), edges, sparse=cfg.sparse_attention,
                                 device=device),
            "none": HourBatcher(inputs.x, inputs.valid, y, graph_config(cfg, edges="none"), device=device)}


def labelled_rows(batcher: HourBatcher, hours: np.ndarray, market: MarketData,
                  inputs: RowInputs | None = None) -> TabularData:
    """The labelled nodes of ``hours`` as flat rows, in the order the GNN's predictions come out
    (:func:`.loop.predict_hours`: hour by hour, pairs in panel order).

    Returns ``X [M, F]`` float32 (the normalised features the GNN reads), ``y [M]`` int64,
    ``current_return [M]``, ``hour [M]``, ``pair [M]`` and ``context [M, C]``. ``inputs``
    (:func:`.context.row_inputs`, once per fold) is attached for window models; without it
    the context is computed here.
    """
    hours = np.asarray(hours, dtype=np.int64)
    labels = batcher.labels(hours)                       # [H, N]
    h_idx, pair = np.nonzero(labels != IGNORE_INDEX)     # row-major: hour by hour, pairs in order
    hour = hours[h_idx]
    x = batcher.node_features(hour, pair)
    context = (inputs.context if inputs is not None and inputs.context is not None
               else market_context(market)).rows(hour, pair)
    return TabularData(np.asarray(x, dtype=np.float32), labels[h_idx, pair].astype(np.int64),
                       market.current_return[hour, pair], hour=hour, pair=pair.astype(np.int64), context=context,
                       inputs=inputs)
