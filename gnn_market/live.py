"""``collect --predict CHECKPOINT --predictions DIR``: the follower that runs inside the collect job.

    python -m gnn_market.data collect --store data/ --predict runs/X/model.pt --predictions runs/X/live

After each collect cycle, :func:`predict_after_cycle` makes one poll of a
:class:`Follower` (the rules of :mod:`gnn_market.follow`: complete hours only,
stopped pairs, each hour once) on the dataset folder ``DIR``
(:mod:`gnn_market.prediction_dataset`), so one process keeps both the store and
the predictions current. ``gnn_market.data`` imports this module (and with it
torch and the model) only when ``--predict`` is given.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import pandas as pd

from .encoder import GraphEncoder
from .errors import DataError
from .follow import FollowConfig, StuckPairs, check_symbols, model_id, output_for, poll_once
from .store import Store

log = logging.getLogger(__name__)


class Follower:
    """One follower: the encoder, the output and what earlier polls saw (``collect --predict`` keeps one).

    Creating it checks the configuration and the symbols, and reads the output once, so a
    wrong ``--out`` (another model, layout, damaged) is refused before the first poll.
    """

    def __init__(self, encoder: GraphEncoder, store: Store, config: FollowConfig) -> None:
        config.validate()
        self.encoder, self.store, self.config = encoder, store, config
        self.model = model_id(encoder)
        self.stuck = StuckPairs()
        if store.exists():
            check_symbols(store, encoder.market, config.symbols)
        output = output_for(config)
        if output.path.exists():
            with output.lock():
                output.written(self.model, config.embeddings)

    def poll(self) -> list[pd.Timestamp]:
        """Write every complete hour not yet written; returns them."""
        return poll_once(self.encoder, self.store, self.config, self.model, self.stuck)


def collect_predictions(checkpoint: str, predictions: str, store: Store, markets: Sequence[str]) -> Follower:
    """The follower of ``collect --predict CHECKPOINT --predictions DIR``, built before the first cycle.

    Refuses (one line) a checkpoint that does not load, a model of a market ``collect`` does not
    store, a ``DIR`` with a suffix (it must be a dataset folder) and a folder :class:`Follower` refuses.
    """
    config = FollowConfig(out=Path(predictions).expanduser(), interval_s=0.0)
    if not config.dataset:
        raise DataError(f"--predictions takes a folder (a name without suffix), got {predictions}")
    config.validate()
    encoder = GraphEncoder.load(checkpoint)
    if encoder.market not in markets:
        raise DataError(f"--predict {checkpoint} is a {encoder.market} model, but this collect stores "
                        f"{' and '.join(markets)} candles; pass --market {encoder.market} or both")
    return Follower(encoder, store, config)


def predict_after_cycle(follower: Follower) -> list[pd.Timestamp]:
    """One poll of ``follower`` after a ``collect`` cycle; a failure is one warning line, retried next cycle.

    Collecting the data must go on whatever happens to the model (a damaged predictions part, a full
    disk, a bug): every exception is caught here, and the next cycle's poll writes what this one missed.
    """
    try:
        return follower.poll()
    except Exception as exc:  # noqa: BLE001 (see the docstring: the data job must not stop)
        log.warning("prediction step failed (%s: %s); collecting goes on, the hours are written after a later "
                    "cycle", type(exc).__name__, " ".join(str(exc).split()))
        return []
