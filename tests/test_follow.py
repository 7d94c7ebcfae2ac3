"""predict --follow: each stored hour appended once, gaps filled on restart, complete hours only, atomic."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from gnn_market import follow as follow_module
from gnn_market.cli import run_cli
from gnn_market.encoder import GraphEncoder
from gnn_market.follow import FollowConfig, complete_through, follow
from gnn_market.predict import main
from gnn_market.store import Store

from train_fixtures import TINY_MARKET, tiny_checkpoint, tiny_store

HOUR = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("follow")
    store = tiny_store(root)
    return store, tiny_checkpoint(root, store.root)


def grow(live: Store, full: Store, through: pd.Timestamp, symbols=None) -> None:
    """Store every candle of ``full`` up to ``through`` in ``live`` (as collect would, symbol by symbol)."""
    for sym in symbols or full.symbols("spot"):
        live.write_klines(sym, full.klines(sym, end=through))


def read(out) -> pd.DataFrame:
    frame = pd.read_parquet(out) if out.suffix == ".parquet" else pd.read_csv(out, dtype={"model": str})
    return frame.assign(time=pd.to_datetime(frame["time"], utc=True))


def run(live: Store, ckpt, out, *extra: str) -> int:
    return run_cli(main, ["--follow", "--store", str(live.root), "--checkpoint", str(ckpt), "--out", str(out),
                          *extra])


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_new_hours_are_appended_once_and_missed_hours_filled_on_restart(trained, tmp_path, suffix, monkeypatch):
    full, ckpt = trained
    monkeypatch.setattr(follow_module, "WARMUP_HOURS", 200)  # the truncated history is used, not all of it
    live, out = Store(tmp_path / "live"), tmp_path / f"live{suffix}"
    times = pd.date_range(TINY_MARKET.start, periods=TINY_MARKET.hours, freq="h", tz="UTC")
    h0 = times[300]
    grow(live, full, h0)
    assert run(live, ckpt, out, "--once") == 0
    first = read(out)
    assert list(first["time"].unique()) == [h0] and list(first["symbol"]) == TINY_MARKET.symbols  # latest hour
    assert set(first["model"]) == {hashlib.sha256(ckpt.read_bytes()).hexdigest()[:12]}
    assert run(live, ckpt, out, "--once") == 0  # nothing new stored: nothing written
    pd.testing.assert_frame_equal(read(out), first)
    grow(live, full, h0 + 3 * HOUR)
    assert run(live, ckpt, out, "--once") == 0
    grow(live, full, h0 + 8 * HOUR)  # five hours stored while the follower is down: filled on restart
    assert run(live, ckpt, out, "--iterations", "2", "--interval", "0") == 0
    frame = read(out)
    assert list(frame["time"].unique()) == list(pd.date_range(h0, h0 + 8 * HOUR, freq="h"))
    assert not frame.duplicated(["time", "symbol"]).any() and frame["valid"].all()
    # the same numbers as a batch export from the whole store's history
    batch = GraphEncoder.load(ckpt).encode_range(full, start=h0, end=h0 + 8 * HOUR).to_frame()
    for col in ("p_down", "p_sideways", "p_up", "emb_0", "emb_7"):
        np.testing.assert_allclose(frame[col], batch[col], atol=1e-4, rtol=1e-4)
    assert list(frame["prediction"]) == list(batch["prediction"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["live", out.name, f".{out.name}.lock"])


def test_an_hour_is_written_only_once_every_pair_has_it(trained, tmp_path):
    full, ckpt = trained
    live, out = Store(tmp_path / "live"), tmp_path / "live.parquet"
    h = pd.Timestamp(TINY_MARKET.start, tz="UTC") + 250 * HOUR
    grow(live, full, h)
    half = TINY_MARKET.symbols[:4]
    grow(live, full, h + HOUR, symbols=half)  # collect is mid-way through hour h + 1
    assert complete_through(live, "spot") == h
    assert run(live, ckpt, out, "--once") == 0
    assert list(read(out)["time"].unique()) == [h]
    grow(live, full, h + HOUR)
    assert complete_through(live, "spot") == h + HOUR
    assert run(live, ckpt, out, "--once") == 0
    frame = read(out)
    assert list(frame["time"].unique()) == [h, h + HOUR] and frame["valid"].all()
    # a pair that stops (delisted) delays the next hour only until a later hour is stored
    grow(live, full, h + 3 * HOUR, symbols=TINY_MARKET.symbols[1:])
    assert complete_through(live, "spot") == h + 3 * HOUR


def test_the_loop_picks_up_hours_stored_between_polls(trained, tmp_path):
    full, ckpt = trained
    live, out = Store(tmp_path / "live"), tmp_path / "live.csv"
    h = pd.Timestamp(TINY_MARKET.start, tz="UTC") + 200 * HOUR
    grow(live, full, h)
    stored = [h]
    waits = []

    def store_next_hour(seconds: float) -> None:  # stands in for time.sleep: collect stores an hour meanwhile
        waits.append(seconds)
        stored.append(stored[-1] + HOUR)
        grow(live, full, stored[-1])

    config = FollowConfig(out=out, start=h - 2 * HOUR, interval_s=30.0, iterations=4)
    written = follow(GraphEncoder.load(ckpt), live, config, sleep=store_next_hour)
    assert waits == [30.0] * 3
    assert written == list(pd.date_range(h - 2 * HOUR, h + 3 * HOUR, freq="h"))  # --start, then one per poll
    assert list(read(out)["time"].unique()) == written


def test_refusals_are_one_line(trained, tmp_path, capsys):
    full, ckpt = trained
    out = tmp_path / "other.parquet"
    pd.DataFrame({"time": [pd.Timestamp("2024-01-02", tz="UTC")], "model": ["0123456789ab"]}).to_parquet(out)
    cases = [
        (["--follow", "--store", str(full.root), "--checkpoint", str(ckpt), "--out", str(out), "--once",
          "--no-embeddings"], "not of this checkpoint"),
        (["--follow", "--store", str(full.root), "--out", str(tmp_path / "x.npz")], ".parquet or .csv"),
        (["--follow", "--store", str(full.root)], "give --out"),
        (["--once", "--store", str(full.root), "--out", str(tmp_path / "y.csv")], "apply to --follow"),
        (["--follow", "--store", str(full.root), "--out", str(tmp_path / "y.csv"), "--interval", "-1"],
         "--interval"),
        (["--follow", "--store", str(full.root), "--out", str(tmp_path / "y.csv"), "--time", "2024-01-05"],
         "--time and --end do not apply"),
    ]
    for argv, match in cases:
        code = run_cli(main, argv)
        err = capsys.readouterr().err
        assert code == 2 and match in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (tmp_path / "y.csv").exists()
