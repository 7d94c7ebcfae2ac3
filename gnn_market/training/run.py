"""A full training run: data, splits, every fold, ``metrics.json``, ``model.pt``, the report.

Protocol (see ``docs/model.md``): one graph per hour, chronological splits
with purge gaps (:mod:`.splits`), normaliser and class weights fitted on
training hours only, early stopping on validation macro-F1, the no-edge
ablation and the baselines on the same rows (:mod:`.folds`), every
model's probabilities calibrated and its decision rule fitted on validation
(:mod:`.calibrate`), all of it once per training seed; metrics averaged over
seeds with the GNN's paired day-bootstrap comparisons (:mod:`.evaluation`); the
Qlib-style trading metrics of every model's score on the same test cells
(:mod:`gnn_market.trading_metrics`: IC, Rank IC, a costed hourly portfolio);
the ``--top`` universe ranked before the first validation hour (:mod:`.universe`).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from ..atomic import write_text_atomic
from ..checkpoint import Checkpoint, iso_range, save_checkpoint
from ..errors import DataError
from ..hour_batches import DenseEdges
from ..machine import machine_info
from ..pipeline import MarketData
from ..significance import day_ids
from ..sources import open_store
from ..trading_metrics import HourSeries, PortfolioConfig, gnn_differences
from ..version import __version__
from .calibrate import CalibratedFold, ModelCalibration, calibrate_fold
from .config import LABEL_HORIZON, MODEL_ORDER, TrainConfig
from .distributed import World, broadcast, init_distributed, shutdown, world
from .evaluation import aggregate_seeds, score_seed, significance_vs_gnn, stack_seeds, trading_rows, trading_series
from .folds import FoldResult, run_fold
from .graphs import graph_config, run_edges
from .loop import resolve_device
from .packaging import save_packaged
from .report import write_report
from .resume import data_fingerprint, load_part, part_path, part_spec, save_part
from .splits import Split
from .universe import load_training_market


def default_out() -> Path:
    """``runs/<UTC timestamp>``."""
    return Path("runs") / pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")


def run_training(cfg: TrainConfig) -> dict[str, Any]:
    """Run the full protocol and write the artefacts; returns ``metrics.json``'s content.

    Torch's thread count and deterministic-algorithms flag are set for the run
    and restored afterwards; OpenMP pools (scikit-learn's gradient boosting) are
    limited to ``cfg.threads`` too: with more threads than free cores they spin-wait
    (on the shared 2-core box the tiny hist_gb fit took 36 s instead of 4 s).
    """
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(max(1, cfg.threads))
    try:
        with threadpool_limits(max(1, cfg.threads), user_api="openmp"):
            return _run_training(cfg)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _run_training(cfg: TrainConfig) -> dict[str, Any]:
    started = time.perf_counter()
    processes, device_name = init_distributed(cfg.device)  # a plain run: World(), cfg.device
    try:
        device = resolve_device(device_name) if processes.size == 1 else torch.device(device_name)
        out = Path(broadcast(str(Path(cfg.out) if cfg.out else default_out())))  # one folder, rank 0's name
        created = prepare_out(out, cfg.resume) if processes.is_main else False
        parts_existed = (out / "parts").exists()
        try:
            return _train_into(out, cfg, device, started, processes)
        except BaseException:
            if processes.is_main:
                remove_created(out, created, parts_existed)
            raise
    finally:
        shutdown()


def _train_into(out: Path, cfg: TrainConfig, device: torch.device, started: float,
                processes: World) -> dict[str, Any]:
    """Load, train every (seed, fold), score, and write ``model.pt``, ``metrics.json`` and the report."""
    store = open_store(cfg.store, cfg.data, seed=cfg.seed)  # --data synthetic: the seed also draws the market
    t0 = time.perf_counter()
    market, splits, data = load_training_market(store, cfg)
    load_s = time.perf_counter() - t0
    per_seed, edges_s = _train_seeds(out, cfg, device, market, splits)
    if not processes.is_main:  # under torchrun the other processes only train: rank 0 reports
        return {"out": str(out), "rank": processes.rank}
    seeds, first = cfg.seed_list, per_seed[cfg.seed_list[0]]
    t0 = time.perf_counter()
    portfolio = PortfolioConfig(long_short=cfg.market == "perp")  # perps: long-short; spot: long-only vs equal weight
    rows = trading_rows(first, market)                                # the same test cells for every seed and model
    series = {seed: trading_series(folds, rows, portfolio) for seed, folds in per_seed.items()}
    trading = trading_summary(series, portfolio, day_ids(market.times[rows.hours])[0])
    timings = {"load_s": load_s, "edges_s": edges_s, "trading_s": time.perf_counter() - t0}
    seed_metrics = {str(seed): _seed_metrics(folds, series[seed]) for seed, folds in per_seed.items()}
    t0 = time.perf_counter()
    y_test, test_hours, test_preds = stack_seeds(list(per_seed.values()))
    # the primary comparison: GNN vs the best other model on validation (never on test)
    val_f1 = {name: float(np.mean([m["val"][name]["macro_f1"] for m in seed_metrics.values()])) for name in test_preds}
    significance = significance_vs_gnn(y_test, test_preds, market.times[test_hours], val_macro_f1=val_f1)
    timings["significance_s"] = time.perf_counter() - t0
    metrics = _metrics(cfg, market, data, seed_metrics, per_seed, significance, trading, timings, processes)
    last = first[-1]
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(make_checkpoint(last.raw, market, replace(cfg, seed=seeds[0], seeds=None),
                                    last.calibrations.get("gnn")), out / "model.pt")
    metrics["timings"]["total_s"] = time.perf_counter() - started
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2, default=str) + "\n")
    write_report(out, cfg, metrics, [f.raw for f in first], reliability_curves(first, metrics["val"]),
                 equity=(market.times[rows.hours], equity_curves(series)))
    if cfg.save_packaged:
        save_packaged(out / "model.pt", metrics, replace(cfg, seed=seeds[0], seeds=None))  # model.pt's seed
    metrics["out"] = str(out)
    return metrics


def _seed_metrics(folds: list[CalibratedFold], series: dict[str, HourSeries]) -> dict[str, Any]:
    """``metrics.json``'s ``seeds.<seed>``: test and validation scores, calibrations, history, encoder."""
    return {
        "test": score_seed(folds, "test", series),
        "val": score_seed(folds, "val"),
        "calibration": [{name: c.state_dict() for name, c in f.calibrations.items()} for f in folds],
        "history": {name: asdict(h) for name, h in folds[-1].raw.histories.items()},
        "encoder": [{"chosen": f.raw.encoder, "val_macro_f1": f.raw.encoder_scores} for f in folds],
    }


def _metrics(cfg: TrainConfig, market: MarketData, data: dict[str, Any], seed_metrics: dict[str, Any],
             per_seed: dict[int, list[CalibratedFold]], significance: dict[str, Any], trading: dict[str, Any],
             timings: dict[str, float], processes: World) -> dict[str, Any]:
    """``metrics.json``: seed means, intervals, trading, the split, the config and where the time went."""
    seeds, first = cfg.seed_list, per_seed[cfg.seed_list[0]]
    fold_timings = {(f"seed{seed}_" if len(seeds) > 1 else "") + f"fold{k + 1}_{key}": v
                    for seed, folds in per_seed.items() for k, f in enumerate(folds) for key, v in f.raw.timings.items()}
    return {
        "test": aggregate_seeds([m["test"] for m in seed_metrics.values()]),
        "val": aggregate_seeds([m["val"] for m in seed_metrics.values()]),
        "significance": significance,
        "trading": trading,
        "seeds": seed_metrics,
        "data": data,
        "config": asdict(cfg),
        "split": {
            "purge_hours": cfg.purge,
            "label_horizon_hours": LABEL_HORIZON,
            "symbols": len(market.panel.symbols),
            "folds": [f.raw.split.describe(market.times) for f in first],
        },
        "history": seed_metrics[str(seeds[0])]["history"],
        "encoder": encoder_summary(cfg, seed_metrics),
        "timings": {**timings, **fold_timings},
        "package_version": __version__,
        "machine": machine_info(cfg.threads),  # results are bit-reproducible on one machine only
        "distributed": processes.describe(),
    }


def trading_summary(series: dict[int, dict[str, HourSeries]], portfolio: PortfolioConfig,
                    day: np.ndarray) -> dict[str, Any]:
    """``metrics.json``'s ``trading``: how the score and portfolio are defined, and GNN minus each
    model on Rank IC and Sharpe (:func:`~gnn_market.trading_metrics.gnn_differences`, seeds x 7-day blocks)."""
    seeds = list(series)
    order = {name: k for k, name in enumerate(MODEL_ORDER)}  # the results tables' order, whatever the fit order
    names = sorted(series[seeds[0]], key=lambda n: (order.get(n, len(order)), n))
    differences = gnn_differences({name: [series[s][name] for s in seeds] for name in names}, day)
    return {"score": "P(UP) - P(DOWN) of the calibrated test probabilities",
            "return": "label return close[t+1] / close[t] - 1 (log for the IC)",
            "portfolio": portfolio.to_dict(), **differences}


def equity_curves(series: dict[int, dict[str, HourSeries]]) -> dict[str, np.ndarray]:
    """Per model, ``[H]`` summed cumulative net return of its portfolio, mean over seeds (``equity.png``)."""
    seeds = list(series)
    return {name: np.mean([np.cumsum(series[s][name].net) for s in seeds], axis=0) for name in series[seeds[0]]}


class _RunEdges:
    """The run's edge features, computed on first use (a fully resumed run never needs them) and closed once."""

    def __init__(self, market: MarketData, splits: list[Split], cfg: TrainConfig, device: torch.device) -> None:
        self._args, self._edges = (market, splits, cfg, device), None
        self._needed = graph_config(cfg).edges != "none"
        self.seconds = 0.0

    def get(self) -> DenseEdges | None:
        if self._edges is None and self._needed:
            t0 = time.perf_counter()
            self._edges = run_edges(*self._args)
            self.seconds = time.perf_counter() - t0
        return self._edges

    def close(self) -> None:
        if self._edges is not None:
            self._edges.close()


def _train_seeds(out: Path, cfg: TrainConfig, device: torch.device, market: MarketData,
                 splits: list[Split]) -> tuple[dict[int, list[CalibratedFold]], float]:
    """Every (seed, fold): trained, or loaded from its part with ``--resume``; then calibrated.

    Also returns the seconds spent computing the run's edge features (0 when every fold was resumed)."""
    seeds = cfg.seed_list
    per_seed: dict[int, list[CalibratedFold]] = {}
    edges = _RunEdges(market, splits, cfg, device)
    main = world().is_main
    fingerprint: str | None = None
    try:
        for seed in seeds:
            seed_cfg = replace(cfg, seed=seed, seeds=None)
            folds = []
            for k, split in enumerate(splits):
                name = ((f" seed {seed}" if len(seeds) > 1 else "")
                        + (f" fold {k + 1}/{len(splits)}" if len(splits) > 1 else ""))
                fold = None
                if cfg.resume:  # parts: finished (seed, fold) results survive an interruption
                    if fingerprint is None:  # the market's values, hashed once per run
                        fingerprint = data_fingerprint(market)
                    spec, path = part_spec(cfg, market, split, seed, k, fingerprint), part_path(out, seed, k)
                    fold = load_part(path, spec) if main else None
                    if fold is not None and cfg.progress:
                        print(f"loaded{name or ' the fold'} from {path}", flush=True)
                if not broadcast(fold is not None):  # every process trains the folds rank 0 has no part of
                    fold = run_fold(market, split, seed_cfg, device, name, edges=edges.get())
                    if cfg.resume and main:
                        save_part(path, fold, spec)
                if not main:
                    continue
                t0 = time.perf_counter()
                folds.append(calibrate_fold(fold))
                fold.timings["calibration_s"] = time.perf_counter() - t0
            per_seed[seed] = folds
    finally:
        edges.close()
    return per_seed, edges.seconds


def encoder_summary(cfg: TrainConfig, seed_metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``metrics.json``'s ``encoder``: whether the node encoder was selected and how often each won.

    ``counts`` tallies the (seed, fold) choices; each seed's ``encoder`` entry holds the per-fold
    choice with both candidates' validation macro-F1.
    """
    chosen = [f["chosen"] for m in seed_metrics.values() for f in m["encoder"]]
    return {"selection": bool(cfg.select_encoder and cfg.lookback > 0), "lookback": cfg.lookback,
            "counts": {name: chosen.count(name) for name in ("temporal", "snapshot")}}


def prepare_out(out: Path, resume: bool) -> bool:
    """Refuse an unusable ``--out`` before any work (not after hours of training); True if it was created.

    An existing run is never silently overwritten: it is continued with ``--resume``.
    """
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file, not a folder")
    if not resume and out.is_dir() and any((out / name).exists() for name in ("metrics.json", "model.pt", "parts")):
        raise DataError(f"--out {out} already holds a training run; pass --resume to continue or re-assemble it, "
                        f"or choose another folder")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / ".write-check", "")
        (out / ".write-check").unlink()
    except OSError as exc:
        raise DataError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    return created


def remove_created(out: Path, created: bool, parts_existed: bool) -> None:
    """After a failed run (a full disk, Ctrl-C, a refused part): remove what it created.

    In an ``--out`` this run created, the artefacts already written (``model.pt`` without
    ``metrics.json``, say) go: half a run would make the next run refuse the folder as holding one.
    Then the folders it created, once empty: ``parts/`` and ``--out``. Finished parts are results,
    not debris: they stay, so that ``--resume`` continues from them. An ``--out`` that existed
    before keeps its files (every file is replaced atomically: the old content or the new).
    """
    if created and out.is_dir():
        for item in out.iterdir():
            if item.name != "parts" and (item.is_file() or item.is_symlink()):
                item.unlink()
    for folder, made in ((out / "parts", not parts_existed), (out, created)):
        if made and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def reliability_curves(folds: list[CalibratedFold], val_metrics: dict[str, dict[str, Any]]
                       ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Test labels ``[M]`` and the probabilities ``[M, 3]`` that ``reliability.png`` draws (one seed's folds).

    The GNN before and after calibration and, calibrated, the other calibrated model with the best
    mean validation macro-F1 (chosen on validation, like everything else).
    """
    y = np.concatenate([f.fold.y_test for f in folds])
    pooled = {name: np.concatenate([f.fold.test[name][1] for f in folds]) for name in folds[0].fold.test}
    curves = {"gnn (uncalibrated)": np.concatenate([f.raw.test["gnn"][1] for f in folds])}
    if "gnn" in folds[0].calibrations:
        curves["gnn (calibrated)"] = pooled["gnn"]
    others = [name for name in folds[0].calibrations if name != "gnn"]
    if others:
        best = max(others, key=lambda name: (val_metrics[name]["macro_f1"], name))
        curves[f"{best} (calibrated)"] = pooled[best]
    return y, curves


def make_checkpoint(result: FoldResult, market: MarketData, cfg: TrainConfig,
                    calibration: ModelCalibration | None = None) -> Checkpoint:
    """The :class:`Checkpoint` of a fold's GNN: weights, configs, normaliser, feature schema, ranges and,
    when given, its validation-fitted calibration and decision rule."""
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
               "best_epoch": result.histories["gnn"].best_epoch, "encoder": result.encoder},
        calibration=None if calibration is None else calibration.scaling.state_dict(),
        decision_rule=None if calibration is None else calibration.rule.state_dict(),
    )
