"""Train the GATv2 next-hour classifier and score it honestly against baselines.

    python -m gnn_market.train                      # bundled sample, a few minutes on 2 CPU cores
    python -m gnn_market.train --data synthetic --seed 1   # simulator (market seed 1) with planted lead-lag structure
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
- A temporal GNN (the GRU over ``--lookback`` hours) is also trained without
  its GRU (each node starts from its current hour's features): the
  snapshot-always row ``gnn_no_temporal``. ``--encoder-selection`` (opt-in)
  keeps the encoder with the better validation score (``--encoder-criterion``,
  ``--encoder-margin``) and adds the GRU-always row ``gnn_gru``.
- The network, hyper-parameters and seed are trained again on graphs
  without edges (self-loops only): the no-edge ablation (under
  ``--encoder-selection`` it chooses its encoder on its own validation). Majority,
  persistence, logistic regression and histogram gradient boosting are fitted
  on the same training rows and scored on the same test nodes.
- Every learned model's probabilities are vector-scaled and its decision rule
  (per-class weights) chosen on validation; ``--seeds 0 1 2`` repeats
  everything per seed and reports means +- sd and day-bootstrap intervals of
  the GNN minus every other model.

Artefacts in ``--out`` (default ``runs/<UTC timestamp>``): ``model.pt``
(see :mod:`gnn_market.checkpoint`), ``metrics.json``, ``report.md`` and PNG plots.
"""
from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Sequence

from .cli import DefaultsHelpFormatter, OneLineParser, parse_symbols, run_cli
from .training.config import ENCODER_CRITERIA, TrainConfig  # light: --help must not import torch


def build_parser() -> argparse.ArgumentParser:
    """The flags; each sets the :class:`TrainConfig` field of its name and defaults to its default."""
    d = TrainConfig()
    p = OneLineParser(prog="python -m gnn_market.train", description=__doc__,
                                formatter_class=DefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--store", help="market store folder (default: the bundled sample)")
    src.add_argument("--data", choices=("sample", "synthetic"), default=d.data)
    p.add_argument("--market", default=d.market, choices=("spot", "perp"))
    p.add_argument("--symbols", help="comma-separated symbols (default: all in the store)")
    p.add_argument("--top", type=int, help="keep the N most liquid symbols")
    p.add_argument("--start", help="first hour (ISO, UTC)")
    p.add_argument("--end", help="last hour (ISO, UTC)")
    p.add_argument("--diagnose", action="store_true",
                   help="do not train: check whether the correlation graph adds to each pair's own history on this "
                        "data (python -m gnn_market.diagnose with --store/--data/--seed/--market/--symbols/--start/"
                        "--end; --out OUT writes OUT/diagnose.json)")
    p.add_argument("--threshold", type=float, default=d.threshold, help="UP/DOWN return threshold (0.01 = 1%%)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument("--heads", type=int, default=d.heads)
    p.add_argument("--layers", type=int, default=d.layers,
                   help="GATv2Conv layers, each followed by GraphNorm and ReLU (the task's 2-3; 1 = the old default)")
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--lookback", type=int, default=d.lookback,
                   help="hours of each pair's history read by the per-node GRU (0 = no temporal encoder)")
    p.add_argument("--context", action=argparse.BooleanOptionalAction, default=d.context,
                   help="add the per-hour mean node state (market context) to every node")
    p.add_argument("--current-skip", action=argparse.BooleanOptionalAction, default=d.current_skip,
                   dest="current_skip",
                   help="temporal models: add a projection of the current hour's features to the GRU state")
    p.add_argument("--context-inputs", action=argparse.BooleanOptionalAction, default=d.context_inputs,
                   dest="context_inputs",
                   help="market context: pool the current hour's input features instead of the node states")
    p.add_argument("--lead-lag", action=argparse.BooleanOptionalAction, default=d.lead_lag, dest="lead_lag",
                   help="second edge feature: correlation of the source's previous-hour return with the target's")
    p.add_argument("--edge-gain", type=float, default=d.edge_gain, dest="edge_gain",
                   help="init gain of the attention's edge projection")
    p.add_argument("--top-k", type=int, dest="top_k",
                   help="keep each node's k strongest |correlation| edges (default: fully connected)")
    p.add_argument("--sparse-attention", action="store_true", dest="sparse_attention",
                   help="run fully connected graphs through PyG's sparse GATv2Conv (the reference; slower and "
                        "larger than the default dense path)")
    p.add_argument("--edge-memory-mb", type=float, default=d.edge_memory_mb, dest="edge_memory_mb",
                   help="keep the run's hourly edge features in memory up to this size, else in a temporary "
                        "file read per batch (TMPDIR)")
    p.add_argument("--batch-hours", type=int, default=d.batch_hours, dest="batch_hours")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--no-class-weights", action="store_false", dest="class_weighted")
    p.add_argument("--folds", type=int, default=d.folds, help="walk-forward folds")
    p.add_argument("--no-ablation", action="store_false", dest="ablation", help="skip both GNN ablations")
    p.add_argument("--no-temporal-ablation", action="store_false", dest="temporal_ablation",
                   help="skip gnn_no_temporal (the GNN without its temporal encoder)")
    p.add_argument("--encoder-selection", action=argparse.BooleanOptionalAction, default=d.select_encoder,
                   dest="select_encoder",
                   help="temporal GNN: train it with and without the GRU (and the no-edge ablation both ways) and "
                        "keep each one's validation winner; off by default (always the GRU): on held-out "
                        "synthetic markets no criterion beat the GRU (benchmarks/encoder_selection_check.py)")
    p.add_argument("--encoder-criterion", choices=ENCODER_CRITERIA, default=d.encoder_criterion,
                   dest="encoder_criterion", help="--encoder-selection: the validation score that chooses")
    p.add_argument("--encoder-margin", type=float, default=d.encoder_margin, dest="encoder_margin",
                   help="--encoder-selection: the snapshot encoder replaces the GRU only when it wins by more")
    p.add_argument("--no-baselines", action="store_false", dest="baselines")
    p.add_argument("--mlp-window", type=int, default=d.mlp_window, dest="mlp_window",
                   help="hours of lookback the MLP baseline sees per pair")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--seeds", type=int, nargs="+", help="train every model once per seed (e.g. --seeds 0 1 2); "
                   "metrics are means +- sd over seeds, model.pt is the first seed's GNN (default: --seed)")
    p.add_argument("--device", default=d.device, choices=("cpu", "cuda", "auto"))
    p.add_argument("--amp", action="store_true",
                   help="mixed precision: run the GNN's forward passes under torch.autocast in bfloat16 (meant for "
                        "GPUs; on a CPU it is usually slower)")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch CPU threads (default: the cores this process may use; fewer on a shared machine)")
    p.add_argument("--out", help="output folder (default runs/<UTC timestamp>)")
    p.add_argument("--resume", action="store_true",
                   help="save each (seed, fold) result under OUT/parts/ and re-use the ones already there "
                        "(same flags): continues an interrupted run, or assembles seeds run in parallel")
    p.add_argument("--no-progress", action="store_false", dest="progress")
    p.add_argument("--save-packaged", action="store_true", dest="save_packaged",
                   help="also install model.pt as gnn_market/checkpoints/sample_gatv2.pt (+ .json sidecar); "
                        "the fit range must end before 2023-09-01")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Parsed flags -> :class:`TrainConfig` (validated there)."""
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    values["symbols"] = parse_symbols(values.get("symbols"))
    return TrainConfig(**values)


def main(argv: Sequence[str] | None = None) -> int:
    """Train, print the test table and where the artefacts went."""
    args = build_parser().parse_args(argv)
    if args.diagnose:
        from .diagnose import main_from_train_args  # only this mode needs it

        return main_from_train_args(args)
    cfg = config_from_args(args)
    from .training.report import results_table, significance_caption, significance_table, trading_console
    from .training.run import run_training  # torch and PyG load here, after the flags are parsed

    metrics = run_training(cfg)
    if "rank" in metrics:  # a torchrun process other than rank 0: rank 0 prints the results
        return 0
    print(results_table(metrics["test"], "test", n_seeds=len(cfg.seed_list)))
    print(f"\n{significance_caption(metrics['significance'])}:\n{significance_table(metrics['significance'])}")
    print(f"\n{trading_console(metrics, len(cfg.seed_list))}")
    total = metrics["timings"]["total_s"]
    print(f"\nartefacts in {metrics['out']} (model.pt, metrics.json, report.md); {total:.0f} s total")
    return 0


def __getattr__(name: str):
    """``from gnn_market.train import run_training`` keeps working (older docs); it loads torch on use.
    The public home is the package root: ``from gnn_market import TrainConfig, run_training``."""
    if name == "run_training":
        from .training.run import run_training

        return run_training
    raise AttributeError(f"module 'gnn_market.train' has no attribute {name!r}")


def cli() -> int:
    """Console-script entry point ``cryptograph-train``."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
