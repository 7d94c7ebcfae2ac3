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
from __future__ import annotations

import importlib
from typing import Any

#: Public name -> its module in this package, imported on first access (PEP 562), so that
#: ``gnn_market.training.config`` (all a CLI's ``--help`` needs) does not pull in torch.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("LABEL_HORIZON", "MIN_SEGMENT_HOURS", "MODEL_ORDER", "PACKAGED_COMMAND", "RESERVED_START",
                     "TrainConfig"), "config"),
    **dict.fromkeys(("Split", "candidate_hours", "make_splits"), "splits"),
    **dict.fromkeys(("History", "predict_hours", "resolve_device", "seed_everything", "train_model"), "loop"),
    **dict.fromkeys(("FoldResult", "run_fold"), "folds"),
    **dict.fromkeys(("make_checkpoint", "run_training"), "run"),
    **dict.fromkeys(("markdown_table", "results_table", "score", "write_report"), "report"),
    "save_packaged": "packaging",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gnn_market.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
