"""Scoring and reporting: pooled metrics per model, text/Markdown tables, plots and ``report.md``."""
from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import numpy as np

from ..atomic import write_text_atomic
from ..calibration import reliability_curve
from ..classes import CLASS_NAMES
from ..version import __version__
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


def _cell(m: dict[str, Any], key: str, sd: bool, signed: bool = False) -> str:
    """``mean`` or ``mean ± sd`` of ``m[key]``; ``n/a`` where the metric is None."""
    value = m.get(key)
    if value is None:
        return "n/a"
    text = f"{value:+.4f}" if signed else f"{value:.4f}"
    return f"{text} ± {m[key + '_sd']:.4f}" if sd and f"{key}_sd" in m else text


#: Columns of the results tables: (header, metric key, show ± sd with several seeds).
_COLUMNS = (("accuracy", "accuracy", False), ("macro-F1", "macro_f1", True), ("F1 DOWN", "f1.DOWN", False),
            ("F1 SIDE", "f1.SIDEWAYS", False), ("F1 UP", "f1.UP", False), ("MCC", "mcc", True),
            ("log-loss", "log_loss", True), ("Brier", "brier", True))


def _row(m: dict[str, Any], n_seeds: int) -> list[str]:
    cells = []
    for _, key, with_sd in _COLUMNS:
        if key.startswith("f1."):
            cells.append(f"{m['f1'][key[3:]]:.4f}")
        else:
            cells.append(_cell(m, key, with_sd and n_seeds > 1))
    return cells


def results_table(metrics: dict[str, dict[str, Any]], title: str = "test", n_seeds: int = 1) -> str:
    """Plain-text table, one row per model: accuracy, macro-F1, per-class F1, MCC, log-loss, Brier.

    With ``n_seeds > 1`` the values are means over seeds and the main metrics show ``± sd``.
    """
    rows = [[name] + _row(m, n_seeds) for name, m in metrics.items()]
    first = f"{title} (mean ± sd over {n_seeds} seeds)" if n_seeds > 1 else title
    head = [first] + [h for h, _, _ in _COLUMNS]
    widths = [max(len(r[i]) for r in rows + [head]) + 2 for i in range(len(head))]
    lines = ["".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [head] + rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown_table(metrics: dict[str, dict[str, Any]], n_seeds: int = 1) -> str:
    """The :func:`results_table` columns as a Markdown table."""
    lines = ["| model | " + " | ".join(h for h, _, _ in _COLUMNS) + " |",
             "|---|" + "---:|" * len(_COLUMNS)]
    for name, m in metrics.items():
        lines.append(f"| {name} | " + " | ".join(_row(m, n_seeds)) + " |")
    return "\n".join(lines)


def verdict(interval: dict[str, float]) -> str:
    """``"tie"`` when the interval contains 0, else ``"gnn better"`` / ``"gnn worse"``."""
    if interval["ci_low"] > 0:
        return "gnn better"
    if interval["ci_high"] < 0:
        return "gnn worse"
    return "tie"


def _interval(interval: dict[str, float]) -> str:
    return (f"{interval['diff']:+.4f} [{interval['ci_low']:+.4f}, {interval['ci_high']:+.4f}] "
            f"{verdict(interval)}")


def significance_caption(significance: dict[str, Any]) -> str:
    """What the significance table is: what each interval resamples, the primary comparison, the family.

    A ``significance`` block written before the seed x block bootstrap (no
    ``block_days``) is described as what it was: single days, seeds fixed.
    """
    days, seeds = significance["days"], significance["seeds"]
    if "block_days" not in significance:
        how = (f"paired bootstrap over {days} test days (single days, the {seeds} trained seed(s) fixed: "
               f"neither persistence nor seed noise is in the interval)")
    else:
        seed_text = (f"{seeds} training seeds resampled, paired" if significance.get("seed_noise")
                     else f"{seeds} training seed(s) NOT resampled: seed noise is not in the interval")
        block = significance["block_days"]
        how = (f"paired bootstrap over {days} test days in circular blocks of {block} consecutive "
               f"day{'s' if block != 1 else ''} x {seed_text}")
    text = (f"GNN minus each model, {how}; {significance['replicates']} replicates, "
            f"{significance['level']:.0%} percentile interval")
    primary = significance.get("primary")
    if primary is not None:
        text += (f"; primary comparison (first, marked *): gnn vs {primary}, the best other model on "
                 f"validation macro-F1")
    adjusted = significance.get("adjusted")
    if adjusted and adjusted["gnn_vs"]:
        which = "the other" if primary is not None else "all"
        text += (f"; {which} {adjusted['comparisons']} comparisons also get a Bonferroni verdict "
                 f"({adjusted['level']:.2%} interval)")
    for note in significance.get("notes", []):
        text += f"; NOTE: {note}"
    return text + "; \"tie\" = the interval contains 0"


def _adjusted_cell(significance: dict[str, Any], name: str) -> str:
    """``macro-F1 / MCC`` Bonferroni verdicts of one comparison, or ``primary``."""
    if name == significance.get("primary"):
        return "primary (not adjusted)"
    adjusted = (significance.get("adjusted") or {}).get("gnn_vs", {}).get(name)
    if adjusted is None:
        return "-"
    return f"{verdict(adjusted['macro_f1'])} / {verdict(adjusted['mcc'])}"


def significance_table(significance: dict[str, Any], markdown: bool = False) -> str:
    """GNN minus each model: macro-F1 and MCC differences with their intervals and verdicts.

    The primary comparison comes first, marked ``*``; a last column gives the
    Bonferroni-adjusted verdicts (macro-F1 / MCC) of the other comparisons.
    """
    primary = significance.get("primary")
    names = sorted(significance["gnn_vs"], key=lambda n: n != primary)   # stable: the rest keep table order
    rows = [(f"{name} *" if name == primary else name, _interval(significance["gnn_vs"][name]["macro_f1"]),
             _interval(significance["gnn_vs"][name]["mcc"]), _adjusted_cell(significance, name)) for name in names]
    if not rows:
        return significance.get("note", "no other model to compare with")
    level = f"{significance['level']:.0%}"
    head = ("gnn minus", f"macro-F1 diff [{level} CI]", f"MCC diff [{level} CI]", "Bonferroni (F1 / MCC)")
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|---|---|---|---|"]
                         + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in rows + [head]) + 2 for i in range(len(head))]
    lines = ["".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
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
                ax.text(j, i, f"{cm[i, j]:.0f}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.6 else "black")
        ax.set_xticks(range(3), [c[:4] for c in CLASS_NAMES], fontsize=7)
        ax.set_yticks(range(3), [c[:4] for c in CLASS_NAMES], fontsize=7)
        ax.set_title(f"{name} (macro-F1 {metrics[name]['macro_f1']:.3f})", fontsize=8)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


#: A reliability bin with fewer rows is not drawn: its observed frequency is mostly noise.
MIN_BIN_ROWS = 30


def drawn_bins(y: np.ndarray, probs: np.ndarray, bins: int = 10) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per class, the reliability points that are drawn: ``(mean predicted, observed frequency, rows)``
    of the bins holding at least :data:`MIN_BIN_ROWS` rows (``y`` ``[M]``, ``probs`` ``[M, 3]``)."""
    curve = reliability_curve(y, probs, bins)
    out = []
    for k in range(len(CLASS_NAMES)):
        kept = curve["count"][k] >= MIN_BIN_ROWS
        out.append((curve["predicted"][k][kept], curve["observed"][k][kept], curve["count"][k][kept]))
    return out


def plot_reliability(y: np.ndarray, curves: dict[str, np.ndarray], path: Path, bins: int = 10) -> None:
    """Reliability diagram: per class, mean predicted probability vs observed frequency per bin.

    ``y`` ``[M]`` labels; ``curves`` maps a legend label to probabilities ``[M, 3]`` of the same rows.
    Bins with fewer than :data:`MIN_BIN_ROWS` rows are hidden; each drawn point of the first curve
    is labelled with its row count.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    for k, ax in enumerate(axes):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="perfect")
        for c, (label, probs) in enumerate(curves.items()):
            x, obs, counts = drawn_bins(y, probs, bins)[k]
            ax.plot(x, obs, marker="o", ms=3, label=label)
            for xi, oi, n in zip(x, obs, counts) if c == 0 else ():
                ax.annotate(f"{int(n)}", (xi, oi), fontsize=5, xytext=(2, -7), textcoords="offset points")
        ax.set(title=f"{CLASS_NAMES[k]} (share {np.mean(y == k):.1%}; bins < {MIN_BIN_ROWS} rows hidden)",
               xlabel="predicted probability",
               ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1))
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


#: Columns of the trading table: (header, metric key inside a model's test metrics, show ± sd with several seeds).
_TRADING_COLUMNS = (("IC", "ic", False), ("Rank IC", "rank_ic", True), ("ICIR", "icir", False),
                    ("Rank ICIR", "rank_icir", False), ("return/yr", "portfolio.return_ann", False),
                    ("Sharpe", "portfolio.sharpe", True), ("max DD", "portfolio.max_drawdown", False),
                    ("turnover/h", "portfolio.turnover", False))


def _trading_row(m: dict[str, Any], n_seeds: int) -> list[str]:
    cells = []
    for _, key, with_sd in _TRADING_COLUMNS:
        group, _, name = key.rpartition(".")
        cells.append(_cell(m.get(group, {}) if group else m, name, with_sd and n_seeds > 1))
    return cells


def trading_table(metrics: dict[str, dict[str, Any]], n_seeds: int = 1, markdown: bool = False) -> str:
    """One row per model: IC, Rank IC, ICIR, Rank ICIR and the portfolio's annual return, Sharpe,
    max drawdown and mean hourly turnover (``metrics``: ``metrics.json``'s ``test``).

    Models without trading metrics are left out; ``n/a`` where a value is undefined (a flat book's Sharpe).
    """
    rows = [[name] + _trading_row(m, n_seeds) for name, m in metrics.items() if "portfolio" in m]
    head = ["trading (test)" + (f", mean ± sd over {n_seeds} seeds" if n_seeds > 1 else "")] + \
        [h for h, _, _ in _TRADING_COLUMNS]
    if markdown:
        return "\n".join(["| model | " + " | ".join(head[1:]) + " |", "|---|" + "---:|" * len(_TRADING_COLUMNS)]
                         + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in rows + [head]) + 2 for i in range(len(head))]
    lines = ["".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [head] + rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def trading_caption(trading: dict[str, Any]) -> str:
    """What the trading numbers are: the score, the portfolio, the costs and the intervals."""
    p = trading["portfolio"]
    intervals = (trading.get("note") or
                 f"GNN minus each model with {trading['level']:.0%} percentile intervals from a paired "
                 f"bootstrap of {trading['replicates']} replicates over blocks of {trading['block_days']} "
                 f"consecutive test days and the {trading['seeds']} training seed(s), as for macro-F1")
    return (f"Score P(UP) - P(DOWN) (calibrated); IC / Rank IC: per-hour cross-sectional Pearson / Spearman "
            f"correlation with the next hour's log return, ICIR = mean / sd per hour (not annualised). "
            f"Portfolio: {p['style']}, k = {p['k_fraction']:.0%} of the valid pairs, held while inside the "
            f"top (bottom) {p['band']:g} k, rebalanced hourly, net of {p['cost_bps']:g} bps per unit of "
            f"turnover; return/yr = mean hourly net x 8760, Sharpe annualised (sqrt 8760), max DD of the "
            f"summed curve. {intervals}")


def trading_differences_table(trading: dict[str, Any], markdown: bool = False) -> str:
    """GNN minus each model: Rank IC and portfolio Sharpe differences with their intervals and verdicts."""
    def cell(d: dict[str, Any]) -> str:
        return "n/a" if d["diff"] is None or d["ci_low"] is None else _interval(d)

    rows = [(name, cell(r["rank_ic"]), cell(r["sharpe"])) for name, r in trading.get("gnn_vs", {}).items()]
    if not rows:
        return trading.get("note", "no other model to compare with")
    head = ("gnn minus", "Rank IC diff [CI]", "Sharpe diff [CI]")
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in rows + [head]) + 2 for i in range(3)]
    lines = ["".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def plot_equity(times: Sequence[Any], curves: dict[str, np.ndarray], path: Path) -> None:
    """Summed cumulative net return of each model's portfolio over the test hours; the GNN drawn thick."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    for name, curve in curves.items():
        gnn = name == "gnn"
        ax.plot(times, curve, lw=2.4 if gnn else 0.9, color="black" if gnn else None, alpha=1.0 if gnn else 0.8,
                label=name, zorder=3 if gnn else 2)
    ax.axhline(0, color="grey", lw=0.6, ls=":")
    ax.set(title="portfolio: cumulative net return (summed, after costs)", ylabel="cumulative net return")
    ax.legend(fontsize=7, ncol=3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def trading_console(metrics: dict[str, Any], n_seeds: int) -> str:
    """The trading table and the GNN differences as plain text, for the end-of-run summary."""
    trading = metrics.get("trading")
    if trading is None:
        return ""
    return (f"{trading_table(metrics['test'], n_seeds)}\n\n{trading_caption(trading)}:\n"
            f"{trading_differences_table(trading)}")


def trading_section(metrics: dict[str, Any], n_seeds: int, equity_png: bool) -> str:
    """``report.md``'s trading section (empty without ``metrics["trading"]``)."""
    trading = metrics.get("trading")
    if trading is None:
        return ""
    plot = "![portfolio equity](equity.png)\n\n" if equity_png else ""
    return (f"## Trading metrics (test)\n\n{trading_caption(trading)}.\n\n"
            f"{trading_table(metrics['test'], n_seeds, markdown=True)}\n\n"
            f"{trading_differences_table(trading, markdown=True)}\n\n{plot}")


def validation_fitted(cfg: TrainConfig) -> str:
    """What the validation rows choose, for the report's "optimistic" note."""
    fitted = ["early stopping", "calibration", "decision rules"]
    if cfg.select_encoder and cfg.lookback > 0:
        fitted.append(f"the node encoder (GRU or snapshot, on validation {cfg.encoder_criterion.replace('_', '-')}, "
                      "for the GNN and, separately, the no-edge ablation)")
    return ", ".join(fitted[:-1]) + " and " + fitted[-1]


def encoder_line(summary: dict[str, Any] | None, seeds: dict[str, dict[str, Any]],
                 criterion: str = "macro_f1", margin: float = 0.0) -> str:
    """One sentence on the GNN's node encoder: fixed, or chosen on validation per (seed, fold).

    ``seeds``: ``metrics.json``'s per-seed entries, whose ``encoder`` list holds each fold's
    choice and validation scores (``temporal`` / ``snapshot`` macro-F1, ``*_log_loss``,
    ``no_edges_*`` for the no-edge ablation's own candidates).
    """
    if not summary or not summary.get("selection"):
        return ""
    log_loss = criterion == "log_loss"

    def value(scores: dict[str, float], prefix: str, encoder: str) -> str:
        key = f"{prefix}{encoder}" + ("_log_loss" if log_loss else "")
        return f"{scores[key]:.4f}" if key in scores else "?"

    parts = []
    for seed, m in seeds.items():
        for k, f in enumerate(m.get("encoder", [])):
            scores = f.get("val_macro_f1")
            if not scores:
                continue
            text = (f"seed {seed} fold {k + 1}: {f['chosen']} ({value(scores, '', 'temporal')} with the GRU, "
                    f"{value(scores, '', 'snapshot')} without)")
            if "no_edges_temporal" in scores:
                text += (f", no-edge ablation {value(scores, 'no_edges_', 'temporal')} / "
                         f"{value(scores, 'no_edges_', 'snapshot')}")
            parts.append(text)
    rule = "lower wins" if log_loss else "higher wins"
    rule += f"; the snapshot must win by more than {margin:g}" if margin else "; a tie keeps the GRU"
    return (f"\nNode encoder chosen on validation {criterion.replace('_', '-')} ({rule}; GRU over "
            f"{summary['lookback']} h, or the current hour only; the no-edge ablation chooses on its own "
            f"validation): {'; '.join(parts)}. `gnn_gru` and `gnn_no_temporal` are the GRU-always and "
            f"snapshot-always networks.\n")


def write_report(out: Path, cfg: TrainConfig, metrics: dict[str, Any], results: Sequence[FoldResult],
                 reliability: tuple[np.ndarray, dict[str, np.ndarray]] | None = None,
                 equity: tuple[Sequence[Any], dict[str, np.ndarray]] | None = None) -> None:
    """``report.md`` with ``learning_curves.png``, ``confusion.png``, ``reliability.png`` and ``equity.png`` in ``out``.

    ``results``: the first seed's folds (learning curves); ``reliability``: test labels ``[M]`` and
    the probabilities ``[M, 3]`` to draw (see :func:`plot_reliability`); ``equity``: test hour times
    ``[H]`` and each model's cumulative net return ``[H]`` (see :func:`plot_equity`).
    One function per section below; this one draws the plots and joins the sections.
    """
    if equity is not None:
        plot_equity(equity[0], equity[1], out / "equity.png")
    plot_learning_curves(results, out / "learning_curves.png")
    plot_confusions(metrics["test"], out / "confusion.png")
    if reliability is not None:
        plot_reliability(reliability[0], reliability[1], out / "reliability.png")
    n_seeds = len(cfg.seed_list)
    sections = [_header_section(cfg, metrics), _results_section(cfg, metrics),
                _significance_section(metrics.get("significance")),
                trading_section(metrics, n_seeds, equity is not None),
                _calibration_section(cfg, reliability is not None), _split_section(metrics["split"]["folds"]),
                _curves_section(cfg, results), _confusion_section(n_seeds)]
    write_text_atomic(out / "report.md", "".join(sections))


def _header_section(cfg: TrainConfig, metrics: dict[str, Any]) -> str:
    """Title, data, universe, threshold, seeds, purge, folds and the node-encoder choice."""
    seeds = cfg.seed_list
    data = metrics.get("data", {})
    universe = (f"universe: the {data['top']} most liquid pairs on hours up to {data['universe_ranked_until']} "
                f"(before the first validation hour)" if data.get("top") else "universe: all pairs loaded")
    seed_text = (f"seeds {', '.join(map(str, seeds))} (every number is the mean over seeds ± sample sd; "
                 f"`model.pt` is seed {seeds[0]}'s network)" if len(seeds) > 1 else f"seed {seeds[0]}")
    encoder_text = encoder_line(metrics.get("encoder"), metrics.get("seeds", {}), cfg.encoder_criterion,
                                cfg.encoder_margin)
    return (f"# Training report\n\nCryptoGraph {__version__}; data `{cfg.store or cfg.data}` ({cfg.market}), "
            f"{metrics['split']['symbols']} symbols\n({universe}); label threshold {cfg.threshold:.2%}; "
            f"{seed_text}; purge gap {cfg.purge} h; folds {cfg.folds}.\n{encoder_text}\n")


def _results_section(cfg: TrainConfig, metrics: dict[str, Any]) -> str:
    """Test and validation tables with the class balance and how to read the metrics."""
    n_seeds = len(cfg.seed_list)
    balance = metrics["test"]["gnn"]["class_balance"]
    return f"""## Test results (pooled over folds)

Test class balance: DOWN {balance['DOWN']:.1%}, SIDEWAYS {balance['SIDEWAYS']:.1%}, UP {balance['UP']:.1%}
({metrics['test']['gnn']['n']} labelled pair-hours).

{markdown_table(metrics['test'], n_seeds)}

Validation ({validation_fitted(cfg)} are fitted here, so it is optimistic):

{markdown_table(metrics['val'], n_seeds)}

Every model (`majority` and `persistence` too) is scored on vector-scaled probabilities and
decides with per-class weights chosen on validation macro-F1; `log_loss_uncalibrated` /
`brier_uncalibrated` in `metrics.json` are the raw probabilities' scores. Macro-F1 weighs the
rare UP/DOWN classes like SIDEWAYS; MCC is 0 for any constant or random prediction; log-loss and
Brier score the probabilities (lower is better).

"""


def _significance_section(significance: dict[str, Any] | None) -> str:
    if significance is None:
        return ""
    return (f"## Is the GNN better? (significance)\n\n{significance_caption(significance)}.\n\n"
            f"{significance_table(significance, markdown=True)}\n\n")


def _calibration_section(cfg: TrainConfig, drawn: bool) -> str:
    if not drawn:
        return ""
    return ("## Calibration\n\nReliability diagram of the test rows (seed "
            f"{cfg.seed_list[0]}): per class, mean predicted probability against the observed "
            "frequency in 10 probability bins (bins with fewer than "
            f"{MIN_BIN_ROWS} rows are not drawn; the others are labelled with their row count); the GNN "
            "before and after vector scaling (fitted on validation) and the other learned model with the "
            "best validation macro-F1.\n\n![reliability diagram](reliability.png)\n\n")


def _split_section(folds: Sequence[dict[str, Any]]) -> str:
    rows = "\n".join(
        f"| {k + 1} | {f['train']['range'][0]} .. {f['train']['range'][1]} ({f['train']['hours']} h) | "
        f"{f['val']['range'][0]} .. {f['val']['range'][1]} ({f['val']['hours']} h) | "
        f"{f['test']['range'][0]} .. {f['test']['range'][1]} ({f['test']['hours']} h) |"
        for k, f in enumerate(folds))
    return f"## Split\n\n| fold | train | validation | test |\n|---|---|---|---|\n{rows}\n\n"


def _curves_section(cfg: TrainConfig, results: Sequence[FoldResult]) -> str:
    best = {name: h.best_epoch for name, h in results[-1].histories.items()}
    return (f"## Learning curves\n\nBest epochs (seed {cfg.seed_list[0]}, last fold): {best}\n\n"
            "![learning curves](learning_curves.png)\n\n")


def _confusion_section(n_seeds: int) -> str:
    over = ", mean over seeds" if n_seeds > 1 else ""
    return (f"## Test confusion matrices (rows: true class; counts and row shares{over})\n\n"
            "![confusion matrices](confusion.png)\n")
