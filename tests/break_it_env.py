"""Break-it attempts: env, the Gymnasium environment ``CryptoGraph-v0`` (see tests/break_it.py).

The environment is a library, not a command: a user error must be one
:class:`~gnn_market.errors.CryptoGraphError` (a subclass) whose message is one
line saying what is wrong, and nothing served from the cache may differ from a
fresh build. The attempts use the fakes of ``tests/env_fakes.py`` (no model),
and the bundled sample store where a store is what the user passes.
"""
from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from break_it import Attempt, Mishandled, check, expect_raises

AREA = "env"


def _make(**kwargs: Any):
    import gymnasium as gym

    import envs  # noqa: F401  (registers CryptoGraph-v0)

    return gym.make("CryptoGraph-v0", **kwargs).unwrapped


def _fakes(**kwargs: Any) -> dict[str, Any]:
    from env_fakes import FakeEncoder, make_panel

    return {"panel": make_panel(), "encoder": FakeEncoder(), "use_cache": False, **kwargs}


def _sample(**kwargs: Any) -> dict[str, Any]:
    from gnn_market.sample import sample_store

    from env_fakes import FakeEncoder

    return {"store": sample_store(), "encoder": FakeEncoder(), "use_cache": False, "start": "2023-09-10",
            "end": "2023-09-20", **kwargs}


def _refused(error: type[BaseException], fn: Callable[[], object], *needles: str) -> None:
    """``fn()`` raises ``error`` (a CryptoGraphError) whose one-line message holds every needle."""
    from gnn_market.errors import CryptoGraphError

    exc = expect_raises(error, fn, *needles)
    check(isinstance(exc, CryptoGraphError), f"{type(exc).__name__} is not a CryptoGraphError")
    check("\n" not in str(exc), f"message over several lines: {exc}")


def _same_observations(env, fresh) -> None:
    for name in ("probs", "embeddings", "mask"):
        check(np.array_equal(getattr(env._data, name), getattr(fresh._data, name)),
              f"served {name} differ from a fresh build")
    for e in (env, fresh):
        e.reset(options={"start": 40})
    check(np.array_equal(env.step(np.zeros(5))[0], fresh.step(np.zeros(5))[0]), "observations differ")


# ----------------------------------------------------------------------------- item 10: the cache
def _tampered_entry(damage: Callable[[Path], None]) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        from env_fakes import FakeEncoder, make_panel

        panel, enc = make_panel(), FakeEncoder()
        _make(panel=panel, encoder=enc, cache_dir=tmp)
        (entry,) = tmp.glob("encoded-*")
        damage(entry)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            env = _make(panel=panel, encoder=enc, cache_dir=tmp)
        check(any("rebuilding it" in str(w.message) for w in seen), f"no rebuild warning: {[str(w.message) for w in seen]}")
        check(len(enc.calls) == 2, "the altered entry was served, not re-encoded")
        _same_observations(env, _make(**_fakes(panel=panel)))
    return run


def _edit(name: str, change: Callable[[np.ndarray, tuple[int, int]], None]) -> Callable[[Path], None]:
    def damage(entry: Path) -> None:
        values = np.load(entry / f"{name}.npy")
        h, i = np.argwhere(np.load(entry / "mask.npy"))[5]
        change(values, (int(h), int(i)))
        np.save(entry / f"{name}.npy", values, allow_pickle=False)  # same shape, dtype and file format
    return damage


def _swap_down_up(p: np.ndarray, at: tuple[int, int]) -> None:
    p[at] = p[at][::-1]


def _nan_embedding(e: np.ndarray, at: tuple[int, int]) -> None:
    e[at + (0,)] = np.nan


# ----------------------------------------------------------------------------- item 14: cache folder
def _cache_dir_is_a_file(tmp: Path) -> None:
    from gnn_market.errors import CacheError

    afile = tmp / "cache"
    afile.write_text("mine")
    _refused(CacheError, lambda: _make(**_fakes(use_cache=True, cache_dir=afile)), "is a file", "use_cache=False")
    check(afile.read_text() == "mine", "the file given as cache_dir was changed")


def _lock_is_a_directory(tmp: Path) -> None:
    from envs.cache import lock_path
    from gnn_market.errors import CacheError

    _make(**_fakes(use_cache=True, cache_dir=tmp))
    (entry,) = tmp.glob("encoded-*")
    shutil.rmtree(entry)
    lock_path(entry).unlink()
    lock_path(entry).mkdir()
    _refused(CacheError, lambda: _make(**_fakes(use_cache=True, cache_dir=tmp)), "is a directory", "remove it")


def _read_only_cache(tmp: Path) -> None:
    """Documented choice: the entries it holds are served; anything else is encoded uncached, with a warning."""
    import os

    from env_fakes import FakeEncoder, make_panel

    panel, enc = make_panel(), FakeEncoder()
    cache = tmp / "ro"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            env = _make(panel=panel, encoder=enc, cache_dir=cache)
        if not os.access(cache, os.W_OK):  # (root writes anyway: then it is simply cached)
            check(any("without caching" in str(w.message) for w in seen), "no warning that nothing was cached")
        _same_observations(env, _make(**_fakes(panel=panel)))
    finally:
        cache.chmod(0o755)


# ----------------------------------------------------------------------------- items 14, 15: keywords
def _bad_keyword(make: Callable[..., dict[str, Any]], name: str, value: Any, *needles: str) -> Callable[[Path], None]:
    def run(_tmp: Path) -> None:
        from gnn_market.errors import OptionError

        _refused(OptionError, lambda: _make(**make(**{name: value})), name, *needles)
    return run


# ----------------------------------------------------------------------------- item 18: boundaries
def _band_boundary(_tmp: Path) -> None:
    """A target exactly ``rebalance_threshold`` away (L1) is traded to; one a float step nearer is not."""
    from env_fakes import make_panel

    for band, trades in ((0.75, True), (float(np.nextafter(0.75, 1.0)), False)):
        env = _make(**_fakes(panel=make_panel(n_pairs=3), rebalance_threshold=band, rebalance_rate=0.5))
        env.reset(options={"start": 50})  # zero action: 1/4 each, D = 0.75 exactly from all cash
        turnover = env.step(np.zeros(4))[4]["turnover"]
        check(turnover == (0.375 if trades else 0.0), f"band {band!r}: turnover {turnover} (D = 0.75)")


def _overlap_boundary(_tmp: Path) -> None:
    """The range may not share even one hour with the checkpoint's fit range; the next hour is fine."""
    from envs.crypto_graph import RangeOverlapError

    from env_fakes import FakeEncoder

    fit = (pd.Timestamp("2024-01-05", tz="UTC"), pd.Timestamp("2024-01-08", tz="UTC"))
    _refused(RangeOverlapError, lambda: _make(**_fakes(encoder=FakeEncoder(fit_range=fit), start="2024-01-08",
                                                       end="2024-01-12")), "overlaps")
    _refused(RangeOverlapError, lambda: _make(**_fakes(encoder=FakeEncoder(fit_range=fit), start="2024-01-02",
                                                       end="2024-01-05")), "overlaps")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = _make(**_fakes(encoder=FakeEncoder(fit_range=fit), start="2024-01-08 01:00", end="2024-01-12"))
        before = _make(**_fakes(encoder=FakeEncoder(fit_range=fit), start="2024-01-02", end="2024-01-04 23:00"))
    if env.times[0] != pd.Timestamp("2024-01-08 01:00", tz="UTC") or before.times[-1] != fit[0] - pd.Timedelta("1h"):
        raise Mishandled(f"ranges moved: {env.times[0]}, {before.times[-1]}")


ATTEMPTS: list[Attempt] = [
    Attempt(AREA, 10, "cache entry with DOWN/UP swapped (same shape) is rebuilt", _tampered_entry(
        _edit("probs", _swap_down_up))),
    Attempt(AREA, 10, "cache entry with a NaN embedding is rebuilt, not blamed on the encoder", _tampered_entry(
        _edit("embeddings", _nan_embedding))),
    Attempt(AREA, 10, "cache entry without its checksum is rebuilt", _tampered_entry(
        lambda entry: (entry / "checksum.json").unlink())),
    Attempt(AREA, 14, "gym.make top=2.5", _bad_keyword(_sample, "top", 2.5, "integer", "float 2.5")),
    Attempt(AREA, 14, "cache_dir is a file", _cache_dir_is_a_file),
    Attempt(AREA, 14, "cache lock path is a directory", _lock_is_a_directory),
    Attempt(AREA, 14, "cache on a read-only folder", _read_only_cache),
    Attempt(AREA, 15, "top=True", _bad_keyword(_sample, "top", True, "integer", "bool True")),
    Attempt(AREA, 15, "include_embeddings='no'", _bad_keyword(_fakes, "include_embeddings", "no", "True or False")),
    Attempt(AREA, 15, "episode_hours=1.5", _bad_keyword(_fakes, "episode_hours", 1.5, "integer")),
    Attempt(AREA, 15, "batch_hours=0", _bad_keyword(_fakes, "batch_hours", 0, ">= 1")),
    Attempt(AREA, 15, "batch_hours=-1", _bad_keyword(_fakes, "batch_hours", -1, ">= 1")),
    Attempt(AREA, 15, "market='futures'", _bad_keyword(_sample, "market", "futures", "'spot', 'perp'")),
    Attempt(AREA, 15, "fee_bps=True", _bad_keyword(_fakes, "fee_bps", True, "number")),
    Attempt(AREA, 18, "no-trade band: a move of exactly the band trades", _band_boundary),
    Attempt(AREA, 18, "overlap: start == fit end refused, one hour later accepted", _overlap_boundary),
]
