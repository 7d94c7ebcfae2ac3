"""Scoring and reporting: pooled metrics per model, text/Markdown tables, plots and ``report.md``."""
from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..classes import CLASS_NAMES
from .config import MODEL_ORDER, TrainConfig
from .folds import FoldResult
from .metrics import classification_metrics


def score(results: Sequence[FoldResult], which: str) -> dict[str, dict[str, Any]]:
    """Metrics per model (in :data:`MODEL_ORDER`) on ``which`` = ``"test"`` or ``"val"``, pooling all folds."""
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
    w = max([14, len(title) + 1, *(len(name) + 1 for name in metrics)])   # e.g. gnn_no_temporal
    head = f"{title:<{w}}{'accuracy':>10}{'macro-F1':>10}{'F1 DOWN':>9}{'F1 SIDE':>9}{'F1 UP':>9}{'MCC':>9}{'log-loss':>10}"
    lines = [head, "-" * len(head)]
    for name, m in metrics.items():
        ll = "n/a" if m["log_loss"] is None else f"{m['log_loss']:.4f}"
        lines.append(f"{name:<{w}}{m['accuracy']:>10.4f}{m['macro_f1']:>10.4f}{m['f1']['DOWN']:>9.4f}"
                     f"{m['f1']['SIDEWAYS']:>9.4f}{m['f1']['UP']:>9.4f}{m['mcc']:>9.4f}{ll:>10}")
    return "\n".join(lines)


def markdown_table(metrics: dict[str, dict[str, Any]]) -> str:
    """The :func:`results_table` columns as a Markdown table."""
    lines = ["| model | accuracy | macro-F1 | F1 DOWN | F1 SIDEWAYS | F1 UP | MCC | log-loss |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in metrics.items():
        ll = "n/a" if m["log_loss"] is None else f"{m['log_loss']:.4f}"
        lines.append(f"| {name} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['f1']['DOWN']:.4f} | "
                     f"{m['f1']['SIDEWAYS']:.4f} | {m['f1']['UP']:.4f} | {m['mcc']:.4f} | {ll} |")
    return "\n".join(lines)


def _pyplot() -> ModuleType:
    """matplotlib's pyplot on the Agg backend.

    Imported here, not at module level: pyplot is a heavy optional dependency
    (~0.5 s to import) that only the report needs, and selecting the Agg backend
    at import time would change matplotlib's global state for every importer.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(results: Sequence[FoldResult], path: Path) -> None:
    """Training loss and validation macro-F1 per epoch, every model and fold, as a PNG."""
    plt = _pyplot()
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
    """Test confusion matrix per model (counts and row shares) as a PNG."""
    plt = _pyplot()
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
    """``report.md`` with ``learning_curves.png`` and ``confusion.png`` in ``out``."""
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
