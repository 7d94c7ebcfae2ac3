"""A full training run: data, splits, every fold, ``metrics.json``, ``model.pt``, the report.

Protocol (see ``docs/model.md``): one graph per hour, chronological splits
with purge gaps (:mod:`.splits`), normaliser and class weights fitted on
training hours only, early stopping on validation macro-F1, the no-edge
ablation and the baselines on the same rows (:mod:`.folds`).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .. import __version__
from ..checkpoint import Checkpoint, iso_range, save_checkpoint
from ..pipeline import MarketData, load_market
from ..sources import open_store
from .config import LABEL_HORIZON, TrainConfig
from .folds import FoldResult, run_fold
from .graphs import graph_config
from .loop import resolve_device
from .packaging import save_packaged
from .report import score, write_report
from .splits import candidate_hours, make_splits


def default_out() -> Path:
    """``runs/<UTC timestamp>``."""
    return Path("runs") / pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")


def run_training(cfg: TrainConfig) -> dict[str, Any]:
    """Run the full protocol and write the artefacts; returns ``metrics.json``'s content.

    Torch's thread count and deterministic-algorithms flag are set for the run
    and restored afterwards.
    """
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(max(1, cfg.threads))
    try:
        return _run_training(cfg)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _run_training(cfg: TrainConfig) -> dict[str, Any]:
    started = time.perf_counter()
    device = resolve_device(cfg.device)
    out = Path(cfg.out) if cfg.out else default_out()
    store = open_store(cfg.store, cfg.data, seed=cfg.seed)  # --data synthetic: the seed also draws the market
    t0 = time.perf_counter()
    market = load_market(store, cfg.market, cfg.symbols, cfg.top, cfg.start, cfg.end, cfg.threshold)
    load_s = time.perf_counter() - t0
    splits = make_splits(candidate_hours(market, cfg.window), cfg)
    results = []
    for k, split in enumerate(splits):
        fold_name = f" fold {k + 1}/{len(splits)}" if len(splits) > 1 else ""
        results.append(run_fold(market, split, cfg, device, fold_name))
    last = results[-1]
    times = market.times
    metrics: dict[str, Any] = {
        "test": score(results, "test"),
        "val": score(results, "val"),
        "config": asdict(cfg),
        "split": {
            "purge_hours": cfg.purge,
            "label_horizon_hours": LABEL_HORIZON,
            "symbols": len(market.panel.symbols),
            "folds": [r.split.describe(times) for r in results],
        },
        "history": {name: asdict(h) for name, h in last.histories.items()},
        "timings": {"load_s": load_s, **{f"fold{k + 1}_{key}": v for k, r in enumerate(results)
                                         for key, v in r.timings.items()}},
        "package_version": __version__,
    }
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(make_checkpoint(last, market, cfg), out / "model.pt")
    metrics["timings"]["total_s"] = time.perf_counter() - started
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    write_report(out, cfg, metrics, results)
    if cfg.save_packaged:
        save_packaged(out / "model.pt", metrics, cfg)
    metrics["out"] = str(out)
    return metrics


def make_checkpoint(result: FoldResult, market: MarketData, cfg: TrainConfig) -> Checkpoint:
    """The :class:`Checkpoint` of a fold's GNN: weights, configs, normaliser, feature schema, ranges."""
    times = market.times
    return Checkpoint(
        state_dict=result.model.state_dict(),
        model_config=result.model.config.to_dict(),
        graph_config=graph_config(cfg).to_dict(),
        feature_config=market.feature_config.to_dict(),
        feature_names=list(market.features.names),
        normalizer=result.normalizer.state_dict(),
        threshold=cfg.threshold,
        market=cfg.market,
        symbols=list(market.panel.symbols),
        ranges={"train": iso_range(times[result.split.train]), "val": iso_range(times[result.split.val]),
                "test": iso_range(times[result.split.test])},
        extra={"seed": cfg.seed, "data": cfg.store or cfg.data,
               "best_epoch": result.histories["gnn"].best_epoch},
    )
