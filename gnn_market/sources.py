"""Where market data comes from: a store folder, the bundled sample, or the simulator.

Every command accepts ``--store DIR`` or ``--data sample|synthetic``; this is
the one place that turns that choice into a :class:`~gnn_market.store.Store`.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import StoreError
from .sample import sample_store
from .store import Store
from .store_layout import LAYOUT_VERSION

DATA_SOURCES = ("sample", "synthetic")


def cache_dir() -> Path:
    """Folder for derived, re-creatable files (``$CRYPTOGRAPH_CACHE`` or ~/.cache/cryptograph)."""
    root = os.environ.get("CRYPTOGRAPH_CACHE") or Path.home() / ".cache" / "cryptograph"
    return Path(root)


def open_store(store: str | os.PathLike | Store | None = None, data: str = "sample", seed: int = 0) -> Store:
    """Resolve a user's data choice to a readable :class:`Store`.

    Args:
        store: a store folder or a :class:`Store`; wins over ``data``.
        data: ``"sample"`` (bundled real data) or ``"synthetic"`` (the
            simulator with the default config and ``seed``, generated once into
            the cache, one folder per seed).
        seed: the simulated market's seed (``data="synthetic"`` only).
    """
    if isinstance(store, Store):
        resolved = store
    elif store is not None:
        resolved = Store(store)
    elif data == "sample":
        resolved = sample_store()
    elif data == "synthetic":
        from .synthetic import SyntheticConfig, write_synthetic_store

        config = SyntheticConfig(seed=seed)  # the fingerprint, and so the cache folder, includes the seed
        # the store format too: a cached market written in an older layout is regenerated, never refused
        path = cache_dir() / f"synthetic-{config.fingerprint()}-f{LAYOUT_VERSION}"
        resolved = Store(path) if (path / "STORE.json").exists() else write_synthetic_store(path, config)
    else:
        raise StoreError(f"unknown data source {data!r}: expected a store folder or one of {DATA_SOURCES}")
    if not resolved.exists():
        raise StoreError(f"store not found: {resolved.root}")
    if not resolved.markets():
        raise StoreError(f"store {resolved.root} holds no klines (empty store)")
    return resolved
