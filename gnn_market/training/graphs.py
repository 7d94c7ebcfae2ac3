"""Training snapshots: the graph config of a run, materialised hourly graphs, and their labelled rows."""
from __future__ import annotations

import numpy as np
from torch_geometric.data import Data
from tqdm.auto import tqdm

from ..classes import IGNORE_INDEX
from ..graph_builder import GraphConfig, HourlyGraphDataset
from ..normalizer import FeatureNormalizer
from ..pipeline import MarketData
from .baselines import TabularData
from .config import TrainConfig
from .context import RowInputs, market_context


def graph_config(cfg: TrainConfig, edges: str = "correlation") -> GraphConfig:
    """The run's :class:`GraphConfig`; ``edges="none"`` for the no-edge ablation."""
    return GraphConfig(window=cfg.window, top_k=cfg.top_k, edges=edges, lead_lag=cfg.lead_lag)


def build_graphs(market: MarketData, hours: np.ndarray, gconfig: GraphConfig, normalizer: FeatureNormalizer,
                 desc: str | None = None) -> list[Data]:
    """Materialise one snapshot per hour (built once, re-used by every epoch); a progress bar if ``desc``.

    Each ``Data`` has ``x [N, F]``, ``edge_index [2, E]``, ``edge_attr [E, 1]``, ``y [N]`` (labelled).
    """
    dataset = HourlyGraphDataset(market.features, market.require_labels(), market.log_ret, hours, gconfig,
                                 normalizer)
    indices = tqdm(range(len(dataset)), desc=desc, unit="hour", leave=False, disable=desc is None)
    return [dataset[i] for i in indices]


def labelled_rows(graphs: list[Data], market: MarketData, inputs: RowInputs | None = None) -> TabularData:
    """The GNN's labelled test nodes as flat rows, in the same order its predictions come out.

    Returns ``X [M, F]`` float32, ``y [M]`` int64, ``current_return [M]``,
    ``hour [M]``, ``pair [M]`` and ``context [M, C]`` over the M labelled nodes
    of ``graphs``, graph by graph. ``inputs`` (:func:`.context.row_inputs`, once
    per fold) is attached for window models; without it the context is computed here.
    """
    xs, ys, rets, hours, pairs = [], [], [], [], []
    for g in graphs:
        keep = (g.y != IGNORE_INDEX).numpy()
        hour = int(g.hour.reshape(-1)[0])
        xs.append(g.x.numpy()[keep])
        ys.append(g.y.numpy()[keep])
        rets.append(market.current_return[hour][keep])
        pairs.append(np.flatnonzero(keep))
        hours.append(np.full(len(pairs[-1]), hour, dtype=np.int64))
    hour, pair = np.concatenate(hours), np.concatenate(pairs).astype(np.int64)
    context = (inputs.context if inputs is not None and inputs.context is not None
               else market_context(market)).rows(hour, pair)
    return TabularData(np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64),
                       np.concatenate(rets), hour=hour, pair=pair, context=context, inputs=inputs)
