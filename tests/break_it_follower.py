"""Break-it attempts: follower, ``python -m gnn_market.predict --follow`` (see tests/break_it.py).

Each attempt grows a small live store from a synthetic one (as ``collect`` would, pair by
pair) and runs the follower the way a user does, one poll at a time (``--once``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from break_it import Attempt, check, expect_error, expect_ok, invoke, shared

HOUR = pd.Timedelta(hours=1)
PREDICT = "gnn_market.predict"


def _trained() -> tuple[Path, Path]:
    """The tiny synthetic store and a checkpoint trained on it (built once per replay)."""
    def build(folder: Path) -> Path:
        from train_fixtures import tiny_checkpoint, tiny_store

        store = tiny_store(folder)
        tiny_checkpoint(folder, store.root)
        return folder

    folder = shared("follower-tiny-run", build)
    from train_fixtures import TINY_MARKET

    return folder / f"store-{TINY_MARKET.fingerprint()}", folder / "run" / "model.pt"


def _symbols() -> list[str]:
    from train_fixtures import TINY_MARKET

    return list(TINY_MARKET.symbols)


def _hour(i: int) -> pd.Timestamp:
    from train_fixtures import TINY_MARKET

    return pd.Timestamp(TINY_MARKET.start, tz="UTC") + i * HOUR


def _grow(live: Path, through: pd.Timestamp, symbols: list[str] | None = None) -> None:
    """Store the full store's candles up to ``through`` in ``live``, pair by pair (as collect does)."""
    from gnn_market.store import Store

    full, dest = Store(_trained()[0]), Store(live)
    for sym in symbols or full.symbols("spot"):
        dest.write_klines(sym, full.klines(sym, end=through))


def _follow(live: Path, out: Path, *extra: str):
    return invoke(PREDICT, "--follow", "--once", "--store", str(live), "--checkpoint", str(_trained()[1]),
                  "--out", str(out), *extra)


def _read(out: Path) -> pd.DataFrame:
    frame = pd.read_parquet(out) if out.suffix == ".parquet" else pd.read_csv(out, dtype={"model": str})
    return frame.assign(time=pd.to_datetime(frame["time"], utc=True))


def _started(tmp: Path, suffix: str, *extra: str) -> tuple[Path, Path]:
    """A live store at hour 300 and a follower output holding that hour."""
    live, out = tmp / "live", tmp / f"live{suffix}"
    _grow(live, _hour(300))
    expect_ok(_follow(live, out, *extra))
    _grow(live, _hour(301))
    return live, out


def _refused_unchanged(out: Path, outcome, *needles: str) -> None:
    before = out.read_bytes()
    expect_error(outcome, *needles)
    check(out.read_bytes() == before, f"{out.name} was changed by a refused run")


# --------------------------------------------------------------------------- item 3
def uneven_catch_up(tmp: Path) -> None:
    """One pair grown to hour 802 while the others sit at 800-801: nothing past 800, each hour = batch predict."""
    live, out = tmp / "live", tmp / "live.parquet"
    syms = _symbols()
    _grow(live, _hour(400))
    _grow(live, _hour(401), syms[1:5])
    _grow(live, _hour(402), syms[:1])
    expect_ok(_follow(live, out, "--start", _hour(398).isoformat()))
    frame = _read(out)
    check(frame["time"].max() == _hour(400), f"wrote through {frame['time'].max()}, only {_hour(400)} is complete")
    _grow(live, _hour(402))
    expect_ok(_follow(live, out))
    frame = _read(out)
    check(list(frame["time"].unique()) == list(pd.date_range(_hour(398), _hour(402), freq="h")),
          f"hours written: {list(frame['time'].unique())}")
    for hour, rows in frame.groupby("time"):
        batch = expect_ok(invoke(PREDICT, "--store", str(live), "--checkpoint", str(_trained()[1]),
                                 "--time", hour.isoformat(), "--format", "json"))
        pairs = {p["symbol"]: p for p in json.loads(batch.out)["pairs"]}
        for row in rows.itertuples():
            want = pairs[row.symbol]
            for col in ("p_down", "p_sideways", "p_up"):
                check(abs(getattr(row, col) - want[col]) <= 1e-6,
                      f"{row.symbol} {col} at {hour}: follower {getattr(row, col):.6f}, predict {want[col]}")
            check(bool(row.filled) == bool(want["filled"]), f"{row.symbol} filled at {hour} differs from predict")


def lagging_pair_waited_for(tmp: Path) -> None:
    """A pair four hours behind the others (collect catching up) holds the follower back instead of being filled."""
    live, out = _started(tmp, ".csv")
    syms = _symbols()
    _grow(live, _hour(305), syms[:-1])
    expect_ok(_follow(live, out))
    check(_read(out)["time"].max() == _hour(301), "hours written while one pair was still behind (at 301)")
    _grow(live, _hour(305))
    expect_ok(_follow(live, out))
    frame = _read(out)
    check(frame["time"].max() == _hour(305) and not frame["filled"].any(), "the caught-up hours are missing or filled")


# --------------------------------------------------------------------------- item 5
def csv_without_final_newline(tmp: Path) -> None:
    live, out = _started(tmp, ".csv")
    out.write_bytes(out.read_bytes().rstrip(b"\n"))
    expect_ok(_follow(live, out))
    frame = _read(out)  # raises if two rows were merged on one line
    check(len(frame) == 2 * len(_symbols()), f"{len(frame)} rows, want {2 * len(_symbols())}")
    expect_ok(_follow(live, out))


def csv_truncated_last_row(tmp: Path) -> None:
    live, out = _started(tmp, ".csv")
    out.write_bytes(out.read_bytes()[:-30])
    _refused_unchanged(out, _follow(live, out), "damaged", "cut short")


def csv_two_rows_on_one_line(tmp: Path) -> None:
    live, out = _started(tmp, ".csv")
    head, last = out.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)
    out.write_bytes(head + last + b"\n")
    _refused_unchanged(out, _follow(live, out), "damaged")


def parquet_truncated(tmp: Path) -> None:
    live, out = _started(tmp, ".parquet")
    out.write_bytes(out.read_bytes()[:-100])
    _refused_unchanged(out, _follow(live, out), "damaged")


# --------------------------------------------------------------------------- item 6
def symlinked_out(tmp: Path) -> None:
    live = tmp / "live"
    _grow(live, _hour(300))
    (tmp / "shared").mkdir()
    target, link = tmp / "shared" / "preds.parquet", tmp / "live.parquet"
    link.symlink_to(target)
    expect_ok(_follow(live, link))
    _grow(live, _hour(301))
    expect_ok(_follow(live, link))
    check(link.is_symlink(), "the link was replaced by a plain file")
    check(target.exists() and _read(target)["time"].max() == _hour(301), "the link's target did not get the hours")


# --------------------------------------------------------------------------- item 12
def unknown_symbol(tmp: Path) -> None:
    live, out = tmp / "live", tmp / "live.csv"
    _grow(live, _hour(300))
    expect_error(_follow(live, out, "--symbols", "NOPEUSDT"), "unknown", "NOPEUSDT")
    check(not out.exists(), "an output was created")
    expect_ok(_follow(live, out, "--symbols", "SYN00USDT"))  # up to date: the old follower polled on silently
    _refused_unchanged(out, _follow(live, out, "--symbols", "SYN00USDT,NOPEUSDT"), "unknown", "NOPEUSDT")


def other_symbol_set(tmp: Path) -> None:
    live, out = _started(tmp, ".parquet", "--symbols", "SYN00USDT,SYN01USDT")
    _refused_unchanged(out, _follow(live, out, "--symbols", "SYN00USDT,SYN02USDT"), "another graph")
    _refused_unchanged(out, _follow(live, out), "another graph")


# --------------------------------------------------------------------------- item 13
def read_only_folder(tmp: Path) -> None:
    live = tmp / "live"
    _grow(live, _hour(300))
    folder = tmp / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        outcome = _follow(live, folder / "live.csv")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            expect_ok(outcome)  # root writes anyway: the point is no traceback
        else:
            expect_error(outcome, "cannot")
    finally:
        folder.chmod(0o755)


def lock_path_is_a_folder(tmp: Path) -> None:
    live, out = tmp / "live", tmp / "live.csv"
    _grow(live, _hour(300))
    (tmp / ".live.csv.lock").mkdir()
    expect_error(_follow(live, out), "cannot lock", "folder")


# --------------------------------------------------------------------------- item 18
def embeddings_then_none(tmp: Path) -> None:
    live, out = _started(tmp, ".csv")
    _refused_unchanged(out, _follow(live, out, "--no-embeddings"), "with embedding columns")


def none_then_embeddings(tmp: Path) -> None:
    live, out = _started(tmp, ".parquet", "--no-embeddings")
    _refused_unchanged(out, _follow(live, out), "without embedding columns")


ATTEMPTS: list[Attempt] = [
    Attempt("follower", 3, "--follow with one pair two hours ahead (800-802): nothing past 800, = batch predict",
            uneven_catch_up),
    Attempt("follower", 3, "--follow while one pair is four hours behind (collect catch-up)", lagging_pair_waited_for),
    Attempt("follower", 5, "--follow on a CSV whose final newline was dropped", csv_without_final_newline),
    Attempt("follower", 5, "--follow on a CSV with its last row cut short", csv_truncated_last_row),
    Attempt("follower", 5, "--follow on a CSV with two rows merged on one line", csv_two_rows_on_one_line),
    Attempt("follower", 5, "--follow on a truncated parquet output", parquet_truncated),
    Attempt("follower", 6, "--follow --out on a symbolic link", symlinked_out),
    Attempt("follower", 12, "--follow --symbols with a symbol not in the store", unknown_symbol),
    Attempt("follower", 12, "--follow restarted with another --symbols set", other_symbol_set),
    Attempt("follower", 13, "--follow --out in a read-only folder", read_only_folder),
    Attempt("follower", 13, "--follow when its lock path is a folder", lock_path_is_a_folder),
    Attempt("follower", 18, "--follow --no-embeddings on a file with embeddings", embeddings_then_none),
    Attempt("follower", 18, "--follow with embeddings on a file written with --no-embeddings", none_then_embeddings),
]


# --------------------------------------------------------------------------- issue 24: the dataset folder
def _dataset_started(tmp: Path) -> tuple[Path, Path]:
    """A live store at hour 300, a predictions folder holding that hour, hour 301 stored."""
    live, out = tmp / "live", tmp / "preds"
    _grow(live, _hour(300))
    expect_ok(_follow(live, out))
    _grow(live, _hour(301))
    return live, out


def _tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _refused_tree_unchanged(out: Path, outcome, *needles: str) -> None:
    before = _tree(out)
    expect_error(outcome, *needles)
    check(_tree(out) == before, f"{out.name} was changed by a refused run")


def dataset_truncated_part(tmp: Path) -> None:
    live, out = _dataset_started(tmp)
    part = next(out.glob("month=*/part-*.parquet"))
    part.write_bytes(part.read_bytes()[:-100])
    _refused_tree_unchanged(out, _follow(live, out), "damaged", "nothing was changed or deleted")


def dataset_other_model(tmp: Path) -> None:
    live, out = _dataset_started(tmp)
    part = next(out.glob("month=*/part-*.parquet"))
    pd.read_parquet(part).assign(model="0123456789ab").to_parquet(part, index=False)
    _refused_tree_unchanged(out, _follow(live, out), "0123456789ab", "another --out")


def dataset_out_is_the_store(tmp: Path) -> None:
    live = tmp / "live"
    _grow(live, _hour(300))
    before = _tree(live)
    expect_error(_follow(live, live), "is not a predictions folder")
    check(_tree(live) == before, "the store was changed")


def dataset_restart_writes_each_hour_once(tmp: Path) -> None:
    live, out = _dataset_started(tmp)
    _grow(live, _hour(305))
    expect_ok(_follow(live, out))
    expect_ok(_follow(live, out))
    from gnn_market.prediction_dataset import read_dataset

    frame = read_dataset(out)
    check(not frame.duplicated(["hour", "symbol"]).any(), "an (hour, pair) written twice")
    check(list(frame["hour"].unique()) == list(pd.date_range(_hour(300), _hour(305), freq="h")),
          f"hours written: {list(frame['hour'].unique())}")


ATTEMPTS += [
    Attempt("follower", 0, "--follow --out DIR with a truncated part", dataset_truncated_part),
    Attempt("follower", 0, "--follow --out DIR holding another model's part", dataset_other_model),
    Attempt("follower", 0, "--follow --out DIR where DIR is the market store", dataset_out_is_the_store),
    Attempt("follower", 0, "--follow --out DIR restarted after five missed hours", dataset_restart_writes_each_hour_once),
]
