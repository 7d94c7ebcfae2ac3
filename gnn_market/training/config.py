"""What defines a training run: :class:`TrainConfig` and the protocol's constants."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..errors import DataError
from ..store_schema import unique_symbols

LABEL_HORIZON = 1      # hours between the decision time and the labelled candle
MIN_SEGMENT_HOURS = 24  # fewest hours a train / val / test segment may have
#: Hours from here on are kept unseen by the packaged checkpoint (the RL environment's range).
RESERVED_START = pd.Timestamp("2023-09-01", tz="UTC")
PACKAGED_COMMAND = "python -m gnn_market.train --end 2023-08-31T23:00 --out runs/packaged --save-packaged"
#: Row order of the results tables and of ``metrics.json``'s per-model entries.
#: Largest accepted learning rate and hidden width: beyond them a run diverges or cannot allocate.
MAX_LR = 1.0
MAX_HIDDEN = 4096
#: Validation scores the node-encoder selection may use (``TrainConfig.encoder_criterion``).
ENCODER_CRITERIA = ("macro_f1", "log_loss")
#: ``gnn`` is the configured (or validation-selected) network, ``gnn_gru`` / ``gnn_no_temporal`` the
#: GRU-always / snapshot-always networks (``gnn_gru`` only under encoder selection), see ``folds.py``.
MODEL_ORDER = ("gnn", "gnn_no_edges", "gnn_gru", "gnn_no_temporal", "majority", "persistence", "logistic", "hist_gb",
               "hist_gb_context", "mlp")


def available_cores() -> int:
    """CPU cores this process may run on: its affinity mask (a container's or taskset's share), divided
    among the processes ``torchrun`` started on this machine (``LOCAL_WORLD_SIZE``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity API (macOS, Windows)
        cores = os.cpu_count() or 1
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    return max(1, cores // local)


def option(default: Any = None, help: str = "", *, flags: tuple[str, ...] = (), cli: bool = True,
           **argparse_kwargs: Any) -> Any:
    """A :class:`TrainConfig` field with what ``python -m gnn_market.train`` needs to offer it as a flag.

    ``help`` is the flag's help text; ``flags`` its option strings (default ``--field-name``);
    ``cli=False`` keeps a field out of the command line; any other keyword (``action``, ``choices``,
    ``type``, ``nargs``, ``group``) goes to ``argparse.add_argument`` (``group``: a mutually exclusive
    group name). The parser is generated from these (``gnn_market.train.build_parser``), so a new
    setting is one field here: its default, its flag and its help come from one place.
    """
    meta = {"help": help, "flags": flags, "cli": cli, **argparse_kwargs}
    if callable(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything that defines a training run (all of it lands in ``metrics.json``).

    The model fields (``hidden`` .. ``edge_gain``) fill :class:`~gnn_market.model.ModelConfig` by
    name (``training.folds.model_config``); every field with ``cli=True`` is a flag of
    ``python -m gnn_market.train`` with this help and default.
    """

    # data
    store: str | None = option(None, "market store folder (default: the bundled sample)", group="source")
    data: str = option("sample", "bundled data when no --store is given", choices=("sample", "synthetic"),
                       group="source")
    market: str = option("spot", "spot or USDT-M perpetuals (perp)", choices=("spot", "perp"))
    symbols: list[str] | None = option(None, "comma-separated symbols (default: all in the store)", type=str)
    top: int | None = option(None, "keep the N most liquid symbols (ranked before the first validation hour)",
                             type=int)
    start: str | None = option(None, "first hour (ISO, UTC)", type=str)
    end: str | None = option(None, "last hour (ISO, UTC)", type=str)
    threshold: float = option(0.01, "UP/DOWN return threshold (0.01 = 1%%)")
    # model
    hidden: int = option(32, "hidden width d of every layer and of the embeddings (a multiple of the heads)")
    heads: int = option(2, "attention heads per GATv2Conv layer (concatenated)")
    layers: int = option(2, "GATv2Conv layers, each followed by GraphNorm and ReLU (the task's 2-3; 1 = the old "
                            "default)")
    dropout: float = option(0.1, "dropout on hidden activations and attention coefficients")
    lookback: int = option(12, "hours of each pair's history read by the per-node GRU (0 = no temporal encoder)")
    context: bool = option(True, "add the per-hour mean node state (market context) to every node")
    current_skip: bool = option(False, "temporal models: add a projection of the current hour's features to "
                                       "the GRU state")
    context_inputs: bool = option(False, "market context: pool the current hour's input features instead of "
                                         "the node states")
    edge_gain: float = option(5.0, "init gain of the attention's edge projection")
    # graph
    window: int = option(100, "hours of returns behind each hour's correlation edges (the task's 100)")
    top_k: int | None = option(None, "keep each node's k strongest |correlation| edges (default: fully "
                                     "connected)", type=int)
    lead_lag: bool = option(True, "second edge feature: correlation of the source's previous-hour return with "
                                  "the target's")
    sparse_attention: bool = option(False, "run fully connected graphs through PyG's sparse GATv2Conv (the "
                                           "reference; slower and larger than the default dense path)",
                                    action="store_true")
    edge_memory_mb: float = option(512.0, "keep the run's hourly edge features in memory up to this size, else "
                                          "in a temporary file read per batch (TMPDIR)")
    amp: bool = option(False, "mixed precision: run the GNN's forward passes under torch.autocast in bfloat16 "
                              "(meant for GPUs; on a CPU it is usually slower)", action="store_true")
    # optimisation
    epochs: int = option(6, "training epochs of each network (early stopping on validation)")
    batch_hours: int = option(32, "hours (graphs) per optimisation step")
    lr: float = option(3e-3, "Adam learning rate")
    weight_decay: float = option(1e-4, "Adam weight decay")
    patience: int = option(3, "epochs without a better validation score before stopping")
    class_weighted: bool = option(True, "do not weight the loss by inverse class frequency",
                                  flags=("--no-class-weights",), action="store_false")
    # split
    val_fraction: float = option(0.15, "share of the hours for validation", cli=False)
    test_fraction: float = option(0.15, "share of the hours for test", cli=False)
    purge_hours: int | None = option(None, "hours dropped before validation and test (None = window + 1)",
                                     cli=False)
    folds: int = option(1, "walk-forward folds")
    # what to run
    ablation: bool = option(True, "skip both GNN ablations", flags=("--no-ablation",), action="store_false")
    temporal_ablation: bool = option(True, "skip gnn_no_temporal (the GNN without its temporal encoder)",
                                     flags=("--no-temporal-ablation",), action="store_false")
    select_encoder: bool = option(False, "temporal GNN: train it with and without the GRU (and the no-edge "
                                         "ablation both ways) and keep each one's validation winner; off by "
                                         "default (always the GRU): on held-out synthetic markets no criterion "
                                         "beat the GRU (benchmarks/encoder_selection_check.py)",
                                  flags=("--encoder-selection",))
    encoder_criterion: str = option("macro_f1", "--encoder-selection: the validation score that chooses",
                                    choices=ENCODER_CRITERIA)
    encoder_margin: float = option(0.0, "--encoder-selection: the snapshot encoder replaces the GRU only when "
                                        "it wins by more")
    baselines: bool = option(True, "skip the baselines", flags=("--no-baselines",), action="store_false")
    hist_gb_max_rows: int | None = option(60_000, "training rows subsampled for hist_gb and hist_gb_context",
                                          cli=False)
    mlp_window: int = option(24, "hours of lookback the MLP baseline sees per pair")
    mlp_max_rows: int | None = option(60_000, "training rows subsampled for the MLP baseline", cli=False)
    seed: int = option(0, "training seed (also the synthetic market's seed)")
    seeds: list[int] | None = option(None, "train every model once per seed (e.g. --seeds 0 1 2); metrics are "
                                           "means +- sd over seeds, model.pt is the first seed's GNN (default: "
                                           "--seed)", type=int, nargs="+")
    device: str = option("cpu", "torch device", choices=("cpu", "cuda", "auto"))
    threads: int = option(available_cores, "torch CPU threads: the cores this process may use unless given "
                                           "(fewer on a shared machine)")
    out: str | None = option(None, "output folder (default runs/<UTC timestamp>)", type=str)
    progress: bool = option(True, "no progress bars", flags=("--no-progress",), action="store_false")
    save_packaged: bool = option(False, "also install model.pt as gnn_market/checkpoints/sample_gatv2.pt (+ "
                                        ".json sidecar); the fit range must end before 2023-09-01",
                                 action="store_true")
    resume: bool = option(False, "save each (seed, fold) result under OUT/parts/ and re-use the ones already "
                                 "there (same flags): continues an interrupted run, or assembles seeds run in "
                                 "parallel", action="store_true")

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise DataError(f"--threshold must be in (0, 1), got {self.threshold}")
        if self.threads < 1:
            raise DataError(f"--threads must be >= 1, got {self.threads}")
        if not (math.isfinite(self.edge_memory_mb) and self.edge_memory_mb >= 0):
            raise DataError(f"--edge-memory-mb must be >= 0, got {self.edge_memory_mb}")
        if self.epochs < 1 or self.batch_hours < 1 or self.patience < 1:
            raise DataError("--epochs, batch hours and patience must be >= 1")
        if self.window < 2:
            raise DataError(f"--window must be >= 2 hours, got {self.window}")
        if self.folds < 1:
            raise DataError(f"--folds must be >= 1, got {self.folds}")
        if self.mlp_window < 1:
            raise DataError(f"--mlp-window must be >= 1, got {self.mlp_window}")
        if self.top_k is not None and self.top_k < 1:
            raise DataError(f"--top-k must be >= 1, got {self.top_k}")
        if self.lookback < 0:
            raise DataError(f"--lookback must be >= 0 (0 = no temporal encoder), got {self.lookback}")
        if self.encoder_criterion not in ENCODER_CRITERIA:
            raise DataError(f"--encoder-criterion must be one of {', '.join(ENCODER_CRITERIA)}, "
                            f"got {self.encoder_criterion!r}")
        if not (math.isfinite(self.encoder_margin) and self.encoder_margin >= 0):
            raise DataError(f"--encoder-margin must be a finite number >= 0, got {self.encoder_margin}")
        if self.edge_gain <= 0:
            raise DataError(f"--edge-gain must be > 0, got {self.edge_gain}")
        if not (math.isfinite(self.lr) and 0 < self.lr <= MAX_LR):
            raise DataError(f"--lr must be a finite number in (0, {MAX_LR}], got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise DataError(f"weight_decay must be finite and >= 0, got {self.weight_decay}")
        if not (math.isfinite(self.dropout) and 0 <= self.dropout < 1):
            raise DataError(f"--dropout must be in [0, 1), got {self.dropout}")
        for flag, value in (("--layers", self.layers), ("--hidden", self.hidden), ("--heads", self.heads)):
            if value < 1:
                raise DataError(f"{flag} must be >= 1, got {value}")
        if self.hidden > MAX_HIDDEN:
            raise DataError(f"--hidden must be <= {MAX_HIDDEN} (a larger width does not fit a CPU run), "
                            f"got {self.hidden}")
        if any(s < 0 for s in [self.seed, *(self.seeds or [])]):
            raise DataError(f"seeds must be >= 0, got {self.seeds or self.seed}")
        if self.hidden % self.heads:
            raise DataError(f"--hidden ({self.hidden}) must be a multiple of --heads ({self.heads})")
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise DataError(f"--seeds must list at least one seed, each once, got {self.seeds}")
        if self.symbols is not None:  # before any work, like the CLI's --symbols
            self.symbols = unique_symbols(self.symbols, "--symbols")
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 0.9):
            raise DataError("validation and test fractions must be in (0, 1) and leave >= 10% for training")

    @property
    def seed_list(self) -> list[int]:
        """The training seeds of the run, in the order given (``seeds``, or ``[seed]``)."""
        return [int(s) for s in self.seeds] if self.seeds is not None else [int(self.seed)]

    @property
    def purge(self) -> int:
        """Hours dropped before validation and before test (``window + LABEL_HORIZON`` by default)."""
        return self.window + LABEL_HORIZON if self.purge_hours is None else self.purge_hours
