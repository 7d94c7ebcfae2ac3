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

from .cli import DefaultsHelpFormatter, OneLineParser, parse_symbols, program_name, run_cli
from .training.config import TrainConfig  # light: --help must not import torch


def build_parser() -> argparse.ArgumentParser:
    """The flags, generated from :class:`TrainConfig`'s fields (help, default, choices: one place)."""
    p = OneLineParser(prog=program_name("gnn_market.train"), description=__doc__,
                      formatter_class=DefaultsHelpFormatter)
    defaults, groups = TrainConfig(), {}
    for f in fields(TrainConfig):
        if f.metadata.get("cli", False):
            meta = dict(f.metadata)
            group_name = meta.pop("group", None)
            if group_name and group_name not in groups:
                groups[group_name] = p.add_mutually_exclusive_group()
            target = groups[group_name] if group_name else p
            target.add_argument(*_flags(f.name, meta.pop("flags")), **_argument(f.name, meta, defaults))
        if f.name == "end":  # the one flag that is not a setting: a different command on the same data
            p.add_argument("--diagnose", action="store_true",
                           help="do not train: check whether the correlation graph adds to each pair's own "
                                "history on this data (python -m gnn_market.diagnose with --store/--data/--seed/"
                                "--market/--symbols/--start/--end; --out OUT writes OUT/diagnose.json)")
    return p


def _flags(name: str, flags: tuple[str, ...]) -> tuple[str, ...]:
    return flags or ("--" + name.replace("_", "-"),)


def _argument(name: str, meta: dict, defaults: TrainConfig) -> dict:
    """``add_argument`` keywords of one field: its help and default, and a type or action from the default."""
    meta.pop("cli")
    default = getattr(defaults, name)
    kwargs = {"dest": name, "help": meta.pop("help"), **meta}
    if "action" in kwargs:
        return kwargs                           # store_true / store_false: the default follows from the action
    if isinstance(default, bool):
        return {**kwargs, "action": argparse.BooleanOptionalAction, "default": default}
    kwargs.setdefault("type", str if default is None else type(default))  # None: str unless the field says
    return {**kwargs, "default": default}


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
