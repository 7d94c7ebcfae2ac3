"""The environment's hours: the default range, the overlap rule, and one clear message when no hours are left.

Rule: with no ``start``, the range starts at the first UTC midnight after every
hour the checkpoint's training run used (train, validation and test splits), so
an agent never sees in-sample encoder outputs by default; with no ``end`` it
runs to the last stored hour. When that leaves nothing (a store from another
period, a checkpoint trained on the whole store) or the checkpoint is for the
other market, the error says what the store covers, what the checkpoint was
fitted on, and what to pass instead.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from gnn_market.errors import CheckpointError, DataError, EmptyRangeError, RangeOverlapError
from gnn_market.panel import Panel
from gnn_market.store import Store
from gnn_market.store_schema import MARKETS
from gnn_market.timeutil import HOUR, parse_utc

from .protocols import ObservationEncoder

#: With ``top=`` and no stored history before the default start, the first week ranks the pairs
#: and the range starts after it (ranking on the range itself would pick pairs with hindsight).
RANK_HOURS = 168


@dataclass(frozen=True)
class Coverage:
    """The hours some data covers, and how to name that data in a message."""

    first: pd.Timestamp
    last: pd.Timestamp
    source: str                  # "store data/ (perp)" or "the panel (spot)"
    store_root: str | None = None
    market: str = "spot"

    @classmethod
    def of_panel(cls, panel: Panel) -> "Coverage":
        if len(panel.times) == 0:
            raise EmptyRangeError("the panel holds no hours")
        return cls(panel.times[0], panel.times[-1], f"the panel ({panel.market})", market=panel.market)


def store_coverage(store: Store, market: str, symbols: Sequence[str] | None = None) -> Coverage:
    """First and last stored candle of ``market`` (of ``symbols`` if given), from the time columns only."""
    held_here = store.symbols(market)
    names = list(symbols) if symbols is not None else held_here
    if not held_here:
        held = [m for m in MARKETS if m != market and store.symbols(m)]
        hint = f" (it holds {', '.join(held)}: pass market={held[0]!r} with a checkpoint for it)" if held else ""
        raise DataError(f"store {store.root} holds no {market} candles{hint}")
    spans = [s for s in (store.stored_range(sym, market) for sym in names if sym in held_here) if s]
    if not spans:
        raise DataError(f"store {store.root} holds no {market} candles for {list(names)}")
    return Coverage(min(a for a, _ in spans), max(b for _, b in spans), f"store {store.root} ({market})",
                    store_root=str(store.root), market=market)


def default_start(encoder: ObservationEncoder) -> pd.Timestamp | None:
    """First UTC midnight after every hour the checkpoint's training run used.

    That is the fit range (train + validation) and, where the checkpoint
    records it, its test split too: the encoder's own held-out hours were seen
    by whoever chose the model, so the environment's default range starts after
    them (2023-09-01 for the packaged checkpoint on the bundled sample).
    """
    ends = [b for _, b in _used_spans(encoder).values() if b is not None]
    return (max(ends) + HOUR).ceil("D") if ends else None


def resolve_range(panel: Panel, encoder: ObservationEncoder, start: pd.Timestamp | None,
                  end: pd.Timestamp | None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end]`` within the panel's hours; ``start`` defaults to :func:`default_start`."""
    return resolve_within(Coverage.of_panel(panel), encoder, start, end)


def resolve_within(cov: Coverage, encoder: ObservationEncoder, start: pd.Timestamp | None,
                   end: pd.Timestamp | None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end]`` clipped to ``cov``; :class:`EmptyRangeError` with what to pass when nothing is left."""
    if start is None:
        after = default_start(encoder)
        start = max(after or cov.first, cov.first)
        stop = cov.last if end is None else min(end, cov.last)
        if start >= stop:
            if after is None:  # the encoder records no training hours: the data itself is too short
                raise EmptyRangeError(f"empty range: {cov.source} covers only {_span(cov.first, stop)}")
            raise EmptyRangeError(_no_default_hours(cov, encoder, after, end))
        return start, stop
    stop = cov.last if end is None else min(end, cov.last)
    if start >= stop:
        asked = f"start={start}" + ("" if end is None else f", end={end}")
        raise EmptyRangeError(f"empty range: {asked} leaves fewer than 2 hours of {cov.source}, which covers "
                              f"{_span(cov.first, cov.last)}; pass a start= and end= inside it")
    return start, stop


def rank_window(cov: Coverage, start: pd.Timestamp, explicit: bool) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``(range start, last ranking hour)`` for ``top=``: pairs are ranked on stored hours before the range.

    With no stored hour before the default start, the first :data:`RANK_HOURS`
    rank the pairs and the range starts at the first midnight after them; an
    explicit ``start`` with no history before it is an :class:`EmptyRangeError`.
    """
    if start > cov.first:
        return start, start - HOUR
    if explicit:
        raise EmptyRangeError(f"top= ranks pairs by volume on the hours before start={start}, and {cov.source} "
                              f"has none (it covers {_span(cov.first, cov.last)}); pass a later start=, or "
                              f"symbols= without top=")
    ranked_to = cov.first + (RANK_HOURS - 1) * HOUR
    moved = (ranked_to + HOUR).ceil("D")
    if moved >= cov.last:
        raise EmptyRangeError(f"top= ranks pairs on the {RANK_HOURS} hours before the range, and {cov.source} "
                              f"covers only {_span(cov.first, cov.last)}; pass symbols= instead")
    return moved, ranked_to


def check_overlap(encoder: ObservationEncoder, start: pd.Timestamp, end: pd.Timestamp, allow: bool) -> None:
    """Refuse (:class:`RangeOverlapError`) or, with ``allow``, loudly warn about hours the encoder was fitted on."""
    fit = encoder.fit_range
    if not fit or fit[0] is None or fit[1] is None:
        warnings.warn("the encoder reports no fit range: cannot check that the environment's hours are "
                      "unseen by it", stacklevel=3)
        return
    fit_start, fit_end = parse_utc(fit[0]), parse_utc(fit[1])
    if start > fit_end or end < fit_start:
        return
    message = (f"environment range {start} .. {end} overlaps the checkpoint's fit range {fit_start} .. "
               f"{fit_end}: the encoder was trained on those hours, so an agent evaluated there sees "
               f"in-sample predictions")
    if not allow:
        raise RangeOverlapError(message + f". Start after {fit_end}, or pass allow_overlap=True.")
    warnings.warn("!!! " + message + " (allow_overlap=True) — results on these hours are optimistic !!!",
                  UserWarning, stacklevel=3)


def check_market(encoder: ObservationEncoder, market: str, store_root: str = "DIR") -> None:
    """A checkpoint reads one market's features (perp adds funding): refuse the other with what to pass."""
    own = getattr(encoder, "market", None)
    if not own or own == market:
        return
    raise CheckpointError(
        f"the checkpoint {_name(encoder)} is a {own} model (trained on {own} candles: "
        f"{_describe_spans(encoder) or 'hours unknown'}) and cannot encode the {market} market of store {store_root}. "
        f"Pass checkpoint= a {market} checkpoint trained on this store's earlier hours (python -m "
        f"gnn_market.train --store {store_root} --market {market} --end HOUR), or market={own!r} for a {own} "
        f"store")


# ----------------------------------------------------------------- messages
def _no_default_hours(cov: Coverage, encoder: ObservationEncoder, after: pd.Timestamp,
                      end: pd.Timestamp | None) -> str:
    store = cov.store_root or "DIR"
    used = _describe_spans(encoder) or "hours it does not record"
    limit = "" if end is None else f" (up to end={end})"
    fit = encoder.fit_range
    overlap = "" if not fit or fit[1] is None else (
        f" (one up to {parse_utc(fit[1]):%Y-%m-%d %H:%M}, inside the fit range, also needs allow_overlap=True "
        f"and gives in-sample results)")
    return (f"no hours left for the environment: {cov.source} covers {_span(cov.first, cov.last)}{limit}, and "
            f"the checkpoint {_name(encoder)} was fitted on {used}; the default range starts after every hour "
            f"its training run used, at {after:%Y-%m-%d %H:%M} UTC, which leaves nothing. Pass start= an hour "
            f"of the store{overlap}, or checkpoint= a model trained on this store's earlier hours only "
            f"(python -m gnn_market.train --store {store} --market {cov.market} --end HOUR), which leaves the "
            f"later hours unseen for the environment")


def _used_spans(encoder: ObservationEncoder) -> dict[str, tuple[pd.Timestamp | None, pd.Timestamp | None]]:
    """The checkpoint's fit range and its recorded train/val/test splits, as timestamps."""
    spans: dict[str, tuple[Any, Any]] = {}
    fit = encoder.fit_range
    if fit and fit[1] is not None:
        spans["fit"] = (parse_utc(fit[0]) if fit[0] is not None else None, parse_utc(fit[1]))
    ranges = encoder.checkpoint.ranges if encoder.checkpoint is not None else {}
    for name, span in (ranges or {}).items():
        if span and span[1] is not None:
            spans[name] = (parse_utc(span[0]) if span[0] is not None else None, parse_utc(span[1]))
    return spans


def _describe_spans(encoder: ObservationEncoder) -> str:
    spans = _used_spans(encoder)
    if len(spans) > 1:
        spans.pop("fit", None)  # the splits say more than their union
    labels = {"fit": "train + validation", "train": "train", "val": "validation", "test": "test"}
    parts = [f"{labels.get(k, k)} {_span(a, b)}" for k, (a, b) in spans.items() if a is not None]
    return ", ".join(parts)


def _span(a: pd.Timestamp, b: pd.Timestamp) -> str:
    return f"{a:%Y-%m-%d %H:%M} .. {b:%Y-%m-%d %H:%M} UTC"


def _name(encoder: ObservationEncoder) -> str:
    path = getattr(encoder, "path", None)
    return str(path) if path is not None else type(encoder).__name__
