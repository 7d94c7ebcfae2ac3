"""Train the GATv2 next-hour classifier and score it honestly against baselines.

    python -m gnn_market.train                      # bundled sample, a few minutes on 2 CPU cores
    python -m gnn_market.train --data synthetic     # simulator with planted lead-lag structure
    python -m gnn_market.train --store DIR --top 100 --top-k 10 --folds 3

Protocol (see ``docs/model.md``):

- One graph per hour t (features known at t, edges from the last ``window``
  hourly log returns), label = class of the candle at t + 1h.
- Chronological split train | purge | validation | purge | test. The purge
  gap is ``window + horizon`` hours (101 by default): the correlation window of
  the first validation hour then starts after the last training label's
  candle, so no price that shaped a training target or edge is re-used by a
  later split's inputs. ``--folds K`` runs K walk-forward folds (expanding
  training window, consecutive test blocks); test metrics pool all folds.
- The feature normaliser and the class weights are fitted on training hours
  only; early stopping and every other choice use validation macro-F1, never
  test.
- The same network, hyper-parameters and seed are trained again on graphs
  without edges (self-loops only): the no-edge ablation. Majority,
  persistence, logistic regression and histogram gradient boosting are fitted
  on the same training rows and scored on the same test nodes.

Artefacts in ``--out`` (default ``runs/<UTC timestamp>``): ``model.pt``
(see :mod:`gnn_market.checkpoint`), ``metrics.json``, ``report.md`` and PNG plots.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from . import __version__
from .baselines import TabularData, balanced_weights, make_baselines
from .checkpoint import Checkpoint, iso_range, save_checkpoint
from .cli import parse_symbols, run_cli
from .errors import DataError
from .classes import CLASS_NAMES, IGNORE_INDEX
from .metrics import classification_metrics
from .model import GATv2Classifier, ModelConfig
from .timeutil import parse_utc

log = logging.getLogger(__name__)

LABEL_HORIZON = 1      # hours between the decision time and the labelled candle
MIN_SEGMENT_HOURS = 24  # fewest hours a train / val / test segment may have
#: Hours from here on are kept unseen by the packaged checkpoint (the RL environment's range).
RESERVED_START = pd.Timestamp("2023-09-01", tz="UTC")
PACKAGED_COMMAND = "python -m gnn_market.train --end 2023-08-31T23:00 --out runs/packaged --save-packaged"
MODEL_ORDER = ("gnn", "gnn_no_edges", "majority", "persistence", "logistic", "hist_gb")


# ----------------------------------------------------------------- configuration
@dataclass
class TrainConfig:
    """Everything that defines a training run (all of it lands in ``metrics.json``)."""

    store: str | None = None
    data: str = "sample"
    market: str = "spot"
    symbols: list[str] | None = None
    top: int | None = None
    start: str | None = None
    end: str | None = None
    threshold: float = 0.01
    # model
    hidden: int = 32
    heads: int = 2
    layers: int = 2
    dropout: float = 0.1
    # graph
    window: int = 100
    top_k: int | None = None
    # optimisation
    epochs: int = 8
    batch_hours: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 3
    class_weighted: bool = True
    # split
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    purge_hours: int | None = None   # None = window + LABEL_HORIZON
    folds: int = 1
    # what to run
    ablation: bool = True
    baselines: bool = True
    hist_gb_max_rows: int | None = 60_000
    seed: int = 0
    device: str = "cpu"
    threads: int = 1                 # torch intra-op threads (see docs/model.md: >1 thrashes when the CPU is shared)
    out: str | None = None
    progress: bool = True
    save_packaged: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise DataError(f"--threshold must be in (0, 1), got {self.threshold}")
        if self.epochs < 1 or self.batch_hours < 1 or self.patience < 1:
            raise DataError("--epochs, batch hours and patience must be >= 1")
        if self.folds < 1:
            raise DataError(f"--folds must be >= 1, got {self.folds}")
        if self.top_k is not None and self.top_k < 1:
            raise DataError(f"--top-k must be >= 1, got {self.top_k}")
        if self.hidden % self.heads:
            raise DataError(f"--hidden ({self.hidden}) must be a multiple of --heads ({self.heads})")
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 0.9):
            raise DataError("validation and test fractions must be in (0, 1) and leave >= 10% for training")

    @property
    def purge(self) -> int:
        return self.window + LABEL_HORIZON if self.purge_hours is None else self.purge_hours


# ----------------------------------------------------------------- data
@dataclass
class MarketData:
    """Features, labels and returns of a panel, computed once per run."""

    panel: Any
    features: Any
    labels: Any
    log_ret: np.ndarray          # [T, N]
    current_return: np.ndarray   # [T, N] simple return of the candle at t (NaN if unknown)
    feature_config: Any

    @property
    def times(self) -> pd.DatetimeIndex:
        return self.features.times


def simple_returns(close: np.ndarray) -> np.ndarray:
    """[T, N] ``close[t] / close[t-1] - 1``; NaN for the first hour or a missing close."""
    out = np.full(close.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[1:] = close[1:] / close[:-1] - 1.0
    out[~np.isfinite(out)] = np.nan
    return out


def load_market(store, market: str = "spot", symbols: Sequence[str] | None = None, top: int | None = None,
                start: str | None = None, end: str | None = None, threshold: float = 0.01) -> MarketData:
    """Store -> panel -> features, labels, returns (with the default feature config)."""
    from .panel import load_panel

    panel = load_panel(store, market=market, symbols=list(symbols) if symbols else None,
                       start=parse_utc(start, "--start"), end=parse_utc(end, "--end"), top=top)
    return prepare_market(panel, threshold)


def prepare_market(panel, threshold: float = 0.01, feature_config=None) -> MarketData:
    """Panel -> features, labels, log returns: the pipeline shared by train, encoder and predict."""
    from .feature_generator import FeatureConfig, compute_features, make_labels
    from .graph_builder import log_returns

    if len(panel.times) == 0 or len(panel.symbols) == 0:
        raise DataError("no candles in the requested range")
    feature_config = FeatureConfig() if feature_config is None else feature_config
    return MarketData(
        panel=panel,
        features=compute_features(panel, feature_config),
        labels=make_labels(panel, threshold=threshold),
        log_ret=log_returns(panel),
        current_return=simple_returns(np.where(panel.mask, panel.close, np.nan)),
        feature_config=feature_config,
    )


# ----------------------------------------------------------------- splits
@dataclass
class Split:
    """Hour indices (into the panel's T axis) of one train / validation / test fold."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def describe(self, times: pd.DatetimeIndex) -> dict[str, Any]:
        return {name: {"hours": int(len(idx)), "range": iso_range(times[idx])}
                for name, idx in (("train", self.train), ("val", self.val), ("test", self.test))}


def candidate_hours(market: MarketData, window: int) -> np.ndarray:
    """Hours with a full correlation window behind them and at least one labelled, valid node."""
    labelled = (market.labels.classes != IGNORE_INDEX) & market.features.valid
    hours = np.flatnonzero(labelled.any(axis=1))
    return hours[hours >= window - 1]


def make_splits(hours: np.ndarray, cfg: TrainConfig) -> list[Split]:
    """Chronological folds with ``cfg.purge`` hours dropped before validation and before test.

    One fold: train | purge | val | purge | test with the configured fractions.
    K folds: the test share is cut into K consecutive blocks; fold k tests on
    block k, validates on the ``val_fraction`` hours before it and trains on
    everything earlier (an expanding window). The last fold equals the one-fold split.
    """
    n, gap = len(hours), cfg.purge
    n_val = int(round(cfg.val_fraction * n))
    n_test_total = int(round(cfg.test_fraction * n))
    block = n_test_total // cfg.folds
    need = 2 * gap + 3 * MIN_SEGMENT_HOURS
    if n < need or block < MIN_SEGMENT_HOURS or n_val < MIN_SEGMENT_HOURS:
        raise DataError(
            f"too few hours: {n} usable hours (after the {cfg.window}-hour correlation window) but a "
            f"split with {cfg.folds} fold(s), two {gap}-hour purge gaps and >= {MIN_SEGMENT_HOURS} hours "
            f"per segment needs about {max(need, int((2 * gap + 3 * MIN_SEGMENT_HOURS) / cfg.test_fraction))}")
    splits = []
    for k in range(cfg.folds):
        test_end = n - (cfg.folds - 1 - k) * block
        test_start = test_end - block
        val_end = test_start - gap
        val_start = val_end - n_val
        train_end = val_start - gap
        if train_end < MIN_SEGMENT_HOURS:
            raise DataError(f"too few hours for fold {k + 1} of {cfg.folds}: only {max(train_end, 0)} training hours")
        splits.append(Split(hours[:train_end], hours[val_start:val_end], hours[test_start:test_end]))
    return splits


# ----------------------------------------------------------------- graphs
def graph_config(cfg: TrainConfig, edges: str = "correlation"):
    from .graph_builder import GraphConfig

    return GraphConfig(window=cfg.window, top_k=cfg.top_k, edges=edges)


def build_graphs(market: MarketData, hours: np.ndarray, gconfig, normalizer, desc: str | None = None) -> list[Data]:
    """Materialise one snapshot per hour (built once, re-used by every epoch); a progress bar if ``desc``."""
    from .graph_builder import HourlyGraphDataset

    dataset = HourlyGraphDataset(market.features, market.labels, market.log_ret, hours, gconfig, normalizer)
    indices = tqdm(range(len(dataset)), desc=desc, unit="hour", leave=False, disable=desc is None)
    return [dataset[i] for i in indices]


def labelled_rows(graphs: list[Data], market: MarketData) -> TabularData:
    """The GNN's labelled test nodes as flat rows, in the same order its predictions come out."""
    xs, ys, rets = [], [], []
    for g in graphs:
        keep = (g.y != IGNORE_INDEX).numpy()
        hour = int(g.hour.reshape(-1)[0])
        xs.append(g.x.numpy()[keep])
        ys.append(g.y.numpy()[keep])
        rets.append(market.current_return[hour][keep])
    return TabularData(np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64),
                       np.concatenate(rets))


# ----------------------------------------------------------------- training
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda: no CUDA device is available (use cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise DataError(f"--device must be cpu, cuda or auto, got {name!r}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed torch and NumPy and ask for deterministic kernels (CPU scatter ops are)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_macro_f1: list[float] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0


@torch.no_grad()
def predict_graphs(model: GATv2Classifier, graphs: list[Data], batch_hours: int,
                   device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """``(y [M], probs [M, 3])`` over the labelled nodes of ``graphs``, in graph order."""
    model.eval()
    ys, probs = [], []
    for batch in DataLoader(graphs, batch_size=batch_hours, shuffle=False):
        batch = batch.to(device)
        log_probs, _ = model(batch.x, batch.edge_index, batch.edge_attr, batch.batch)
        keep = batch.y != IGNORE_INDEX
        ys.append(batch.y[keep].cpu().numpy())
        probs.append(log_probs[keep].exp().cpu().numpy())
    return np.concatenate(ys), np.concatenate(probs)


def train_model(train_graphs: list[Data], val_graphs: list[Data], model_config: ModelConfig,
                class_weights: np.ndarray | None, cfg: TrainConfig, device: torch.device,
                desc: str) -> tuple[GATv2Classifier, History]:
    """Adam on NLLLoss; keep the weights of the epoch with the best validation macro-F1."""
    seed_everything(cfg.seed)  # same init and batch order for the GNN and its ablation
    model = GATv2Classifier(model_config).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32, device=device)
    loss_fn = torch.nn.NLLLoss(weight=weight, ignore_index=IGNORE_INDEX)
    loader = DataLoader(train_graphs, batch_size=cfg.batch_hours, shuffle=True,
                        generator=torch.Generator().manual_seed(cfg.seed))
    history, best_f1, best_state, stale = History(), -1.0, None, 0
    started = time.perf_counter()
    bar = tqdm(range(1, cfg.epochs + 1), desc=desc, unit="epoch", disable=not cfg.progress, leave=True)
    for epoch in bar:
        model.train()
        total, count = 0.0, 0
        for batch in loader:
            batch = batch.to(device)
            optimiser.zero_grad()
            log_probs, _ = model(batch.x, batch.edge_index, batch.edge_attr, batch.batch)
            loss = loss_fn(log_probs, batch.y)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * batch.num_graphs
            count += batch.num_graphs
        y_val, p_val = predict_graphs(model, val_graphs, cfg.batch_hours, device)
        f1 = classification_metrics(y_val, p_val.argmax(1))["macro_f1"]
        history.train_loss.append(total / max(count, 1))
        history.val_macro_f1.append(f1)
        bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}", val_f1=f"{f1:.4f}")
        if f1 > best_f1:
            best_f1, history.best_epoch, stale = f1, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    bar.close()
    model.load_state_dict(best_state)
    history.seconds = time.perf_counter() - started
    return model.eval(), history


# ----------------------------------------------------------------- one fold
@dataclass
class FoldResult:
    split: Split
    test: dict[str, tuple[np.ndarray, np.ndarray]]   # model -> (y_pred, probs) on test rows
    val: dict[str, tuple[np.ndarray, np.ndarray]]
    y_test: np.ndarray
    y_val: np.ndarray
    histories: dict[str, History]
    model: GATv2Classifier
    normalizer: Any
    timings: dict[str, float]


def run_fold(market: MarketData, split: Split, cfg: TrainConfig, device: torch.device,
             fold_name: str = "") -> FoldResult:
    from .graph_builder import FeatureNormalizer

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    normalizer = FeatureNormalizer(graph_config(cfg).normalisation).fit(market.features, split.train)
    graphs = {name: build_graphs(market, idx, graph_config(cfg), normalizer,
                                 f"graphs {name}{fold_name}" if cfg.progress else None)
              for name, idx in (("train", split.train), ("val", split.val), ("test", split.test))}
    timings["graphs_s"] = time.perf_counter() - t0
    rows = {name: labelled_rows(g, market) for name, g in graphs.items()}
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
        for baseline in make_baselines(market.labels.threshold, cfg.class_weighted, cfg.seed, cfg.hist_gb_max_rows):
            baseline.fit(rows["train"])
            for split_name, out in (("test", test), ("val", val)):
                out[baseline.name] = (baseline.predict(rows[split_name]), baseline.predict_proba(rows[split_name]))
        timings["baselines_s"] = time.perf_counter() - t0
    return FoldResult(split, test, val, rows["test"].y, rows["val"].y, histories, model, normalizer, timings)


# ----------------------------------------------------------------- reporting
def score(results: Sequence[FoldResult], which: str) -> dict[str, dict[str, Any]]:
    """Metrics per model, pooling the rows of all folds."""
    y = np.concatenate([getattr(r, f"y_{which}") for r in results])
    out = {}
    for name in MODEL_ORDER:
        if name not in getattr(results[0], which):
            continue
        pred = np.concatenate([getattr(r, which)[name][0] for r in results])
        probs = np.concatenate([getattr(r, which)[name][1] for r in results])
        out[name] = classification_metrics(y, pred, probs)
    return out


def results_table(metrics: dict[str, dict[str, Any]], title: str = "test") -> str:
    """Plain-text table: one row per model, accuracy / macro-F1 / per-class F1 / MCC / log-loss."""
    head = f"{title:<14}{'accuracy':>10}{'macro-F1':>10}{'F1 DOWN':>9}{'F1 SIDE':>9}{'F1 UP':>9}{'MCC':>9}{'log-loss':>10}"
    lines = [head, "-" * len(head)]
    for name, m in metrics.items():
        ll = "n/a" if m["log_loss"] is None else f"{m['log_loss']:.4f}"
        lines.append(f"{name:<14}{m['accuracy']:>10.4f}{m['macro_f1']:>10.4f}{m['f1']['DOWN']:>9.4f}"
                     f"{m['f1']['SIDEWAYS']:>9.4f}{m['f1']['UP']:>9.4f}{m['mcc']:>9.4f}{ll:>10}")
    return "\n".join(lines)


def markdown_table(metrics: dict[str, dict[str, Any]]) -> str:
    lines = ["| model | accuracy | macro-F1 | F1 DOWN | F1 SIDEWAYS | F1 UP | MCC | log-loss |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in metrics.items():
        ll = "n/a" if m["log_loss"] is None else f"{m['log_loss']:.4f}"
        lines.append(f"| {name} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['f1']['DOWN']:.4f} | "
                     f"{m['f1']['SIDEWAYS']:.4f} | {m['f1']['UP']:.4f} | {m['mcc']:.4f} | {ll} |")
    return "\n".join(lines)


def plot_learning_curves(results: Sequence[FoldResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(10, 3.8))
    for k, r in enumerate(results):
        suffix = f" (fold {k + 1})" if len(results) > 1 else ""
        for name, h in r.histories.items():
            epochs = np.arange(1, len(h.train_loss) + 1)
            style = "-" if name == "gnn" else "--"
            ax_loss.plot(epochs, h.train_loss, style, marker="o", ms=3, label=name + suffix)
            ax_f1.plot(epochs, h.val_macro_f1, style, marker="o", ms=3, label=name + suffix)
            ax_f1.axvline(h.best_epoch, color="grey", lw=0.5, ls=":")
    ax_loss.set(title="training loss (weighted NLL)", xlabel="epoch")
    ax_f1.set(title="validation macro-F1 (early stopping)", xlabel="epoch")
    ax_f1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_confusions(metrics: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(metrics)
    cols = 3
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        cm = np.asarray(metrics[name]["confusion"], dtype=float)
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
        for i in range(3):
            for j in range(3):
                ax.text(j, i, f"{int(cm[i, j])}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.6 else "black")
        ax.set_xticks(range(3), [c[:4] for c in CLASS_NAMES], fontsize=7)
        ax.set_yticks(range(3), [c[:4] for c in CLASS_NAMES], fontsize=7)
        ax.set_title(f"{name} (macro-F1 {metrics[name]['macro_f1']:.3f})", fontsize=8)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(out: Path, cfg: TrainConfig, metrics: dict[str, Any], results: Sequence[FoldResult]) -> None:
    plot_learning_curves(results, out / "learning_curves.png")
    plot_confusions(metrics["test"], out / "confusion.png")
    balance = metrics["test"]["gnn"]["class_balance"]
    folds = metrics["split"]["folds"]
    split_lines = "\n".join(
        f"| {k + 1} | {f['train']['range'][0]} .. {f['train']['range'][1]} ({f['train']['hours']} h) | "
        f"{f['val']['range'][0]} .. {f['val']['range'][1]} ({f['val']['hours']} h) | "
        f"{f['test']['range'][0]} .. {f['test']['range'][1]} ({f['test']['hours']} h) |"
        for k, f in enumerate(folds))
    best = {name: h.best_epoch for name, h in results[-1].histories.items()}
    text = f"""# Training report

CryptoGraph {__version__}; data `{cfg.store or cfg.data}` ({cfg.market}), {metrics['split']['symbols']} symbols;
label threshold {cfg.threshold:.2%}; seed {cfg.seed}; purge gap {cfg.purge} h; folds {cfg.folds}.

## Test results (pooled over folds)

Test class balance: DOWN {balance['DOWN']:.1%}, SIDEWAYS {balance['SIDEWAYS']:.1%}, UP {balance['UP']:.1%}
({metrics['test']['gnn']['n']} labelled pair-hours).

{markdown_table(metrics['test'])}

Validation (used for early stopping; reported for completeness):

{markdown_table(metrics['val'])}

Macro-F1 weighs the rare UP/DOWN classes like SIDEWAYS; MCC is 0 for any
constant or random prediction; log-loss of class-weighted models is inflated
by the re-weighting (their probabilities over-state UP/DOWN).

## Split

| fold | train | validation | test |
|---|---|---|---|
{split_lines}

## Learning curves

Best epochs (last fold): {best}

![learning curves](learning_curves.png)

## Test confusion matrices (rows: true class; counts and row shares)

![confusion matrices](confusion.png)
"""
    (out / "report.md").write_text(text)


# ----------------------------------------------------------------- the run
def default_out() -> Path:
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
    from .sources import open_store

    started = time.perf_counter()
    device = resolve_device(cfg.device)
    out = Path(cfg.out) if cfg.out else default_out()
    store = open_store(cfg.store, cfg.data)
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


def save_packaged(model_path: Path, metrics: dict[str, Any], cfg: TrainConfig) -> Path:
    """Copy ``model.pt`` to the packaged checkpoint and write its JSON sidecar.

    Refused unless the fit range (train + validation) ends before
    :data:`RESERVED_START`: those later hours belong to the RL environment.
    """
    from .encoder import PACKAGED_CHECKPOINT

    fold = metrics["split"]["folds"][-1]
    fit_end = pd.Timestamp(fold["val"]["range"][1])
    if fit_end >= RESERVED_START:
        raise DataError(f"--save-packaged: the fit range ends {fit_end}, but hours from {RESERVED_START} on are "
                        f"reserved for the RL environment; pass --end before that (e.g. --end 2023-08-31T23:00)")
    PACKAGED_CHECKPOINT.parent.mkdir(parents=True, exist_ok=True)
    tmp = PACKAGED_CHECKPOINT.with_name(PACKAGED_CHECKPOINT.name + ".tmp")
    shutil.copyfile(model_path, tmp)
    os.replace(tmp, PACKAGED_CHECKPOINT)
    sidecar = {
        "file": PACKAGED_CHECKPOINT.name,
        "sha256": hashlib.sha256(PACKAGED_CHECKPOINT.read_bytes()).hexdigest(),
        "bytes": PACKAGED_CHECKPOINT.stat().st_size,
        "command": PACKAGED_COMMAND,
        "package_version": __version__,
        "data": cfg.store or cfg.data,
        "market": cfg.market,
        "symbols": metrics["split"]["symbols"],
        "threshold": cfg.threshold,
        "seed": cfg.seed,
        "fit_range": [fold["train"]["range"][0], fold["val"]["range"][1]],
        "split": fold,
        "model": {k: getattr(cfg, k) for k in ("hidden", "heads", "layers", "dropout", "top_k", "window")},
        "reserved_for_rl": [RESERVED_START.isoformat(), "end of the sample"],
        "test": {name: {k: round(m[k], 4) for k in ("accuracy", "macro_f1", "mcc")}
                 for name, m in metrics["test"].items()},
    }
    PACKAGED_CHECKPOINT.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return PACKAGED_CHECKPOINT


def make_checkpoint(result: FoldResult, market: MarketData, cfg: TrainConfig) -> Checkpoint:
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


# ----------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m gnn_market.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--store", help="market store folder (default: the bundled sample)")
    src.add_argument("--data", choices=("sample", "synthetic"), default=d.data)
    p.add_argument("--market", default=d.market, choices=("spot", "perp"))
    p.add_argument("--symbols", help="comma-separated symbols (default: all in the store)")
    p.add_argument("--top", type=int, help="keep the N most liquid symbols")
    p.add_argument("--start", help="first hour (ISO, UTC)")
    p.add_argument("--end", help="last hour (ISO, UTC)")
    p.add_argument("--threshold", type=float, default=d.threshold, help="UP/DOWN return threshold (0.01 = 1%%)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument("--heads", type=int, default=d.heads)
    p.add_argument("--layers", type=int, default=d.layers)
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--top-k", type=int, dest="top_k", help="keep each node's k strongest |correlation| edges")
    p.add_argument("--batch-hours", type=int, default=d.batch_hours, dest="batch_hours")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--no-class-weights", action="store_false", dest="class_weighted")
    p.add_argument("--folds", type=int, default=d.folds, help="walk-forward folds")
    p.add_argument("--no-ablation", action="store_false", dest="ablation")
    p.add_argument("--no-baselines", action="store_false", dest="baselines")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, choices=("cpu", "cuda", "auto"))
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads")
    p.add_argument("--out", help="output folder (default runs/<UTC timestamp>)")
    p.add_argument("--no-progress", action="store_false", dest="progress")
    p.add_argument("--save-packaged", action="store_true", dest="save_packaged",
                   help="also install model.pt as gnn_market/checkpoints/sample_gatv2.pt (+ .json sidecar); "
                        "the fit range must end before 2023-09-01")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    values["symbols"] = parse_symbols(values.get("symbols"))
    return TrainConfig(**values)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = config_from_args(build_parser().parse_args(argv))
    metrics = run_training(cfg)
    print(results_table(metrics["test"], "test"))
    total = metrics["timings"]["total_s"]
    print(f"\nartefacts in {metrics['out']} (model.pt, metrics.json, report.md); {total:.0f} s total")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
