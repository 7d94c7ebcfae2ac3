"""What defines a training run: :class:`TrainConfig` and the protocol's constants."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

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
    layers: int = 2                  # GATv2Conv layers, GraphNorm + ReLU after each (the task's 2-3; 1 = ablation)
    dropout: float = 0.1
    lookback: int = 12               # L hours read by the per-node GRU (0 = no temporal encoder)
    context: bool = True             # per-hour market summary added to every node
    current_skip: bool = False       # add the projected current hour to the GRU state
    context_inputs: bool = False     # market context pools the current hour's inputs, not the node states
    edge_gain: float = 5.0           # init gain of the edge projections (model.EDGE_INIT_GAIN)
    # graph
    window: int = 100
    top_k: int | None = None
    lead_lag: bool = True            # second edge feature: corr(r_j[s-1], r_i[s])
    sparse_attention: bool = False   # fully connected graphs through PyG's sparse GATv2Conv (the slow reference)
    edge_memory_mb: float = 512.0    # the run's edge features stay in memory up to this size, else a temp file
    amp: bool = False                # mixed precision: torch.autocast in bfloat16 for the GNN's forward passes
    # optimisation
    epochs: int = 6
    batch_hours: int = 32
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
    ablation: bool = True            # the no-edge ablation (and the no-temporal one, see temporal_ablation)
    temporal_ablation: bool = True   # gnn_no_temporal beside a temporal GNN (needs ablation)
    select_encoder: bool = False     # train GRU and snapshot node encoders, keep the validation winner (folds.py)
    encoder_criterion: str = "macro_f1"   # selection score: "macro_f1" (higher wins) or "log_loss" (lower wins)
    encoder_margin: float = 0.0      # the snapshot encoder must win by more than this to replace the GRU
    baselines: bool = True
    hist_gb_max_rows: int | None = 60_000   # also hist_gb_context's (same rows as hist_gb)
    mlp_window: int = 24             # hours of each pair's normalised features the MLP baseline sees
    mlp_max_rows: int | None = 60_000
    seed: int = 0
    seeds: list[int] | None = None   # training seeds, each a full run (None = [seed]); model.pt = the first's
    device: str = "cpu"
    threads: int = field(default_factory=available_cores)  # torch intra-op threads (default: every core allowed)
    out: str | None = None
    progress: bool = True
    save_packaged: bool = False
    resume: bool = False             # save each (seed, fold) result in out/parts/ and re-use saved ones

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise DataError(f"--threshold must be in (0, 1), got {self.threshold}")
        if self.threads < 1:
            raise DataError(f"--threads must be >= 1, got {self.threads}")
        if not (math.isfinite(self.edge_memory_mb) and self.edge_memory_mb >= 0):
            raise DataError(f"--edge-memory-mb must be >= 0, got {self.edge_memory_mb}")
        if self.epochs < 1 or self.batch_hours < 1 or self.patience < 1:
            raise DataError("--epochs, batch hours and patience must be >= 1")
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
