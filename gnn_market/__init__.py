"""CryptoGraph: hourly cross-asset graphs of Binance markets and a GATv2 next-hour classifier.

The public API, importable from the package root::

    from gnn_market import GraphEncoder, TrainConfig, run_training, open_store

    metrics = run_training(TrainConfig(data="synthetic", out="runs/syn"))      # = metrics.json
    enc = GraphEncoder.load()                                                    # packaged checkpoint
    encoded = enc.encode_range(open_store("data/store"), start="2024-01-01")   # probabilities, embeddings

Every name below is imported on first use (PEP 562), so ``import gnn_market`` and
every CLI's ``--help`` stay light: torch and PyTorch Geometric load only when a
model, the encoder or training is touched.

Modules (one concept each): ``store`` (Parquet market store), ``binance``
(package: public REST client, weight pacing, universe rules, payload parsers),
``vision`` (archive importer), ``sample`` / ``synthetic`` (bundled and
simulated data), ``panel`` (aligned T x N arrays),
``feature_generator`` (node features, labels), ``graph_builder`` (correlation
edges, snapshots), ``model`` (GATv2Classifier), ``train`` / ``predict`` (CLIs),
``encoder`` (checkpoint -> probabilities and embeddings).
"""
from __future__ import annotations

import importlib
from typing import Any

from .version import __version__

#: Public name -> the module that defines it (imported on first access).
_EXPORTS: dict[str, str] = {
    # data
    "Store": "gnn_market.store",
    "open_store": "gnn_market.sources",
    "MarketSource": "gnn_market.market_source",
    "sample_store": "gnn_market.sample",
    "SyntheticConfig": "gnn_market.synthetic",
    "write_synthetic_store": "gnn_market.synthetic",
    "Panel": "gnn_market.panel",
    "load_panel": "gnn_market.panel",
    # features and graphs
    "FeatureConfig": "gnn_market.feature_generator",
    "MarketData": "gnn_market.pipeline",
    "prepare_market": "gnn_market.pipeline",
    # model, training, inference
    "GATv2Classifier": "gnn_market.model",
    "TrainConfig": "gnn_market.training.config",
    "run_training": "gnn_market.training.run",
    "GraphEncoder": "gnn_market.encoder",
    "EncodedRange": "gnn_market.encoder",
    "save_encoded": "gnn_market.export",
    # the Gymnasium environment (registered as CryptoGraph-v0 by ``import envs``)
    "make_crypto_graph_env": "envs.factory",
    # errors
    "CryptoGraphError": "gnn_market.errors",
    "DataError": "gnn_market.errors",
    "StoreError": "gnn_market.errors",
    "CheckpointError": "gnn_market.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access and cache the name in this module."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gnn_market' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

