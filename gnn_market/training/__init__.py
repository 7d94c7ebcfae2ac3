"""Training side of CryptoGraph: protocol, loop, baselines, metrics, report, packaging.

    from gnn_market.training import TrainConfig, run_training
    metrics = run_training(TrainConfig(data="synthetic", epochs=15, out="runs/syn"))   # = metrics.json

Modules: ``config`` (TrainConfig, protocol constants), ``splits`` (purged
chronological folds), ``graphs`` (training snapshots and their flat rows),
``loop`` (the GNN training loop), ``folds`` (one fold: GNN, ablation,
baselines), ``calibrate`` (validation-fitted vector scaling and decision rule
per model), ``evaluation`` (mean ± sd over seeds, GNN-vs-model day
bootstrap), ``universe`` (point-in-time ``--top`` universe and the split),
``run`` (the whole run and its artefacts), ``report`` (scores,
tables, plots), ``packaging`` (``--save-packaged``), ``baselines``,
``metrics``. The CLI is ``python -m gnn_market.train``. Inference
(:mod:`gnn_market.encoder`) never imports this package; both share
:mod:`gnn_market.pipeline`.
"""
from .config import LABEL_HORIZON, MIN_SEGMENT_HOURS, MODEL_ORDER, PACKAGED_COMMAND, RESERVED_START, TrainConfig
from .folds import FoldResult, run_fold
from .loop import History, predict_hours, resolve_device, seed_everything, train_model
from .packaging import save_packaged
from .report import markdown_table, results_table, score, write_report
from .run import make_checkpoint, run_training
from .splits import Split, candidate_hours, make_splits

__all__ = [
    "LABEL_HORIZON", "MIN_SEGMENT_HOURS", "MODEL_ORDER", "PACKAGED_COMMAND", "RESERVED_START", "TrainConfig",
    "Split", "candidate_hours", "make_splits",
    "History", "predict_hours", "resolve_device", "seed_everything", "train_model",
    "FoldResult", "run_fold", "make_checkpoint", "run_training",
    "markdown_table", "results_table", "score", "write_report",
    "save_packaged",
]
