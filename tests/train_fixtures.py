"""Small synthetic stores and tiny trained checkpoints for the train/encoder/predict tests."""
from __future__ import annotations

from pathlib import Path

from gnn_market.synthetic import SyntheticConfig, write_synthetic_store
from gnn_market.training import TrainConfig, run_training

#: 8 pairs x 480 hours: the smallest market that fits the 100-hour window and two purge gaps.
TINY_MARKET = SyntheticConfig(n_symbols=8, hours=480, seed=3, n_sectors=2, leaders_per_sector=1,
                              with_funding=False, with_book=False)
#: Tiny, fast training: one epoch, small model.
TINY_TRAIN = dict(epochs=1, hidden=8, heads=2, batch_hours=32, progress=False, hist_gb_max_rows=2_000)


def tiny_store(root: Path, config: SyntheticConfig = TINY_MARKET):
    return write_synthetic_store(root / f"store-{config.fingerprint()}", config)


def tiny_checkpoint(root: Path, store_path: Path, **overrides) -> Path:
    """Train a tiny model on ``store_path`` (no ablation, no baselines); returns model.pt.

    The node encoder is fixed (no selection), so the checkpoint is the architecture asked for
    (a temporal model by default) whatever one epoch's validation score says.
    """
    out = root / "run"
    cfg = TrainConfig(store=str(store_path), out=str(out), ablation=False, baselines=False,
                      **{**TINY_TRAIN, "select_encoder": False, **overrides})
    run_training(cfg)
    return out / "model.pt"
