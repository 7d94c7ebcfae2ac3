"""The GNN training loop: device, seeding, Adam on NLLLoss, early stopping on validation macro-F1."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..classes import IGNORE_INDEX
from ..errors import DataError
from ..hour_batches import HourBatcher, hour_batches
from ..model import GATv2Classifier, ModelConfig
from ..windows import NodeWindows
from .config import TrainConfig
from .distributed import gather_blocks, shard, sum_over_processes, world
from .metrics import classification_metrics


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda when available) -> a device; DataError otherwise."""
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
    """Per-epoch curves of one model (``metrics.json``'s ``history``)."""

    train_loss: list[float] = field(default_factory=list)
    val_macro_f1: list[float] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0

    @property
    def best_val_macro_f1(self) -> float:
        """Validation macro-F1 of the kept (best) epoch; -inf before any epoch."""
        return self.val_macro_f1[self.best_epoch - 1] if self.best_epoch else float("-inf")


def autocast(device: torch.device, enabled: bool):
    """``torch.autocast`` in bfloat16 on ``device`` when ``enabled`` (``--amp``), else a no-op context."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def predict_hours(model: GATv2Classifier, batcher: HourBatcher, hours: np.ndarray, batch_hours: int,
                  windows: NodeWindows | None = None, amp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(y [M], probs [M, 3])`` over the labelled nodes of ``hours``, hour by hour in the given order,
    nodes in panel order within an hour.

    ``windows``: the run's lookback windows (needed by temporal models). Under ``torchrun`` each
    process predicts its block of hours and every process gets all of them.
    """
    model.eval()
    ys, probs = [], []
    for chunk in hour_batches(shard(hours), batch_hours):
        batch = batcher.batch(chunk)
        with autocast(batcher.device, amp):
            log_probs, _ = model.forward_hours(batch, windows)
        log_probs = log_probs.float()
        y = batch.y.reshape(-1)
        keep = y != IGNORE_INDEX
        ys.append(y[keep].cpu().numpy())
        probs.append(log_probs[keep].exp().cpu().numpy())
    if not ys:
        ys, probs = [np.zeros(0, np.int64)], [np.zeros((0, 3), np.float32)]
    return gather_blocks(np.concatenate(ys), np.concatenate(probs))


class _HoursForward(torch.nn.Module):
    """:meth:`GATv2Classifier.forward_hours` as a ``forward``, the method DistributedDataParallel hooks."""

    def __init__(self, model: GATv2Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch, windows: NodeWindows | None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_hours(batch, windows)


def _batch_loss(log_probs: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None, size: int) -> torch.Tensor:
    """Class-weighted mean NLL of one process's part of a batch, scaled so that DDP's gradient average over
    ``size`` processes equals the gradient of the weighted mean over the whole batch."""
    labelled = y != IGNORE_INDEX
    local = weight[y[labelled]].sum() if weight is not None else labelled.sum().to(log_probs.dtype)
    total = sum_over_processes(local.detach()).clamp(min=1e-12)
    summed = torch.nn.functional.nll_loss(log_probs, y, weight=weight, ignore_index=IGNORE_INDEX, reduction="sum")
    return summed * size / total


def train_model(batcher: HourBatcher, train_hours: np.ndarray, val_hours: np.ndarray, model_config: ModelConfig,
                class_weights: np.ndarray | None, cfg: TrainConfig, device: torch.device,
                desc: str, windows: NodeWindows | None = None) -> tuple[GATv2Classifier, History]:
    """Adam on NLLLoss; keep the weights of the epoch with the best validation macro-F1.

    Batches of ``cfg.batch_hours`` training hours are built by ``batcher`` each step (shuffled with
    ``cfg.seed``); ``class_weights`` ``[3]`` (None = unweighted); ``windows`` the lookback windows of
    every hour (temporal models), gathered per batch. Returns the model in eval mode and its history.
    """
    seed_everything(cfg.seed)  # same init and batch order for the GNN and its ablation
    model = GATv2Classifier(model_config).to(device)
    processes = world()
    net = model.forward_hours
    if processes.size > 1:  # one process per device: DDP averages the gradients of every part of a batch
        net = torch.nn.parallel.DistributedDataParallel(_HoursForward(model), find_unused_parameters=True)
        torch.manual_seed(cfg.seed + 7919 * processes.rank)  # the same init everywhere, own dropout masks
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32, device=device)
    loss_fn = torch.nn.NLLLoss(weight=weight, ignore_index=IGNORE_INDEX)
    order = torch.Generator().manual_seed(cfg.seed)
    history, best_f1, best_state, stale = History(), -1.0, None, 0
    started = time.perf_counter()
    bar = tqdm(range(1, cfg.epochs + 1), desc=desc, unit="epoch", disable=not cfg.progress, leave=True)
    for epoch in bar:
        model.train()
        total, count = 0.0, 0
        for hours in hour_batches(train_hours, cfg.batch_hours, order):
            if processes.size > 1:
                if len(hours) < processes.size:  # every process needs a part of each batch
                    continue
                hours = shard(hours)
            batch = batcher.batch(hours)
            optimiser.zero_grad()
            with autocast(device, cfg.amp):
                log_probs, _ = net(batch, windows)
            log_probs = log_probs.float()
            if processes.size > 1:
                loss = _batch_loss(log_probs, batch.y.reshape(-1), weight, processes.size)
            else:
                loss = loss_fn(log_probs, batch.y.reshape(-1))
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * batch.num_hours
            count += batch.num_hours
        y_val, p_val = predict_hours(model, batcher, val_hours, cfg.batch_hours, windows, cfg.amp)
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
