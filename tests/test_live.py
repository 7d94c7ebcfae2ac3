"""Live predictions as a month-partitioned dataset: predict --follow --out DIR and collect --predict.

The tiny store is shifted three weeks later (hour-of-week kept) so its hours cross a month
boundary (2024-01-31 -> 2024-02-01), where a month is completed and compacted.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from gnn_market import prediction_dataset as pds
from gnn_market.cli import run_cli
from gnn_market.data import main as data_main
from gnn_market.encoder import GraphEncoder
from gnn_market.errors import DataError
from gnn_market.predict import main
from gnn_market.store import Store

from fake_binance import FakeBinance, FakeSymbol
from train_fixtures import TINY_MARKET, tiny_checkpoint, tiny_store

HOUR = pd.Timedelta(hours=1)
SHIFT = pd.Timedelta(days=21)
FEB = pd.Timestamp("2024-02-01", tz="UTC")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny store shifted to 2024-01-22 .. 2024-02-10, and a checkpoint trained on the original."""
    root = tmp_path_factory.mktemp("live")
    store = tiny_store(root)
    ckpt = tiny_checkpoint(root, store.root)
    shifted = Store(root / "shifted")
    for sym in store.symbols("spot"):
        frame = store.klines(sym)
        shifted.write_klines(sym, frame.set_axis(frame.index + SHIFT))
    return shifted, ckpt


def grow(live: Store, full: Store, through: pd.Timestamp) -> None:
    """Store every candle of ``full`` up to ``through`` in ``live``, symbol by symbol (as collect does)."""
    for sym in full.symbols("spot"):
        live.write_klines(sym, full.klines(sym, end=through))


def run(live: Store, ckpt: Path, out: Path, *extra: str) -> int:
    return run_cli(main, ["--follow", "--store", str(live.root), "--checkpoint", str(ckpt), "--out", str(out),
                          *extra])


def files(out: Path) -> list[str]:
    """Every file under ``out`` but the lock, relative."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != pds.LOCK_NAME)


def by_pyarrow(out: Path) -> pd.DataFrame:
    return pads.dataset(out, partitioning="hive").to_table().to_pandas()


def by_duckdb(out: Path) -> pd.DataFrame:
    return duckdb.sql(f"SELECT * FROM read_parquet('{out}/*/*.parquet', hive_partitioning=true) "
                      f"ORDER BY hour, symbol").df()


def assert_each_hour_once(frame: pd.DataFrame, first: pd.Timestamp, last: pd.Timestamp, n_pairs: int) -> None:
    hours = pd.DatetimeIndex(pd.to_datetime(frame["hour"], utc=True))
    assert not pd.Series(list(zip(hours, frame["symbol"]))).duplicated().any(), "an (hour, pair) twice"
    assert sorted(set(hours)) == list(pd.date_range(first, last, freq="h")), "hours missing or extra"
    assert len(frame) == n_pairs * len(set(hours))


def assert_matches_batch(frame: pd.DataFrame, ckpt: Path, full: Store) -> None:
    """Every hour equals a batch encode of the whole store (probabilities 1e-6; embeddings 1e-5; flags equal)."""
    hours = pd.to_datetime(frame["hour"], utc=True)
    batch = GraphEncoder.load(ckpt).encode_range(full, start=hours.min(), end=hours.max()).to_frame()
    got = frame.assign(hour=hours).sort_values(["hour", "symbol"]).reset_index(drop=True)
    want = batch.rename(columns={"time": "hour"}).sort_values(["hour", "symbol"]).reset_index(drop=True)
    assert list(got["symbol"]) == list(want["symbol"]) and (got["hour"] == want["hour"]).all()
    for col in ("p_down", "p_sideways", "p_up"):
        np.testing.assert_allclose(got[col], want[col], atol=1e-6, rtol=0, err_msg=col)
    for col in ("emb_0", "emb_7"):
        np.testing.assert_allclose(got[col], want[col], atol=1e-5, rtol=0, err_msg=col)
    assert list(got["prediction"].fillna("-")) == list(want["prediction"].fillna("-"))
    assert (got["valid"].to_numpy() == want["valid"].to_numpy()).all()


def test_hours_go_to_month_parts_compacted_when_the_month_is_complete_and_engines_read_them(trained, tmp_path):
    full, ckpt = trained
    live, out = Store(tmp_path / "live"), tmp_path / "preds"
    h0 = FEB - 4 * HOUR  # 2024-01-31 20:00
    grow(live, full, h0)
    assert run(live, ckpt, out, "--once", "--start", (h0 - 2 * HOUR).isoformat()) == 0
    grow(live, full, FEB - HOUR)
    assert run(live, ckpt, out, "--once") == 0
    assert files(out) == ["month=2024-01/part-20240131T18-20240131T20.parquet",
                          "month=2024-01/part-20240131T21-20240131T23.parquet"]
    grow(live, full, FEB + 2 * HOUR)
    assert run(live, ckpt, out, "--once") == 0  # the first February hour completes January
    assert files(out) == ["month=2024-01/month-2024-01.parquet", "month=2024-02/part-20240201T00-20240201T02.parquet"]
    n = len(TINY_MARKET.symbols)
    for frame in (by_pyarrow(out), by_duckdb(out), pds.read_dataset(out)):
        assert_each_hour_once(frame, h0 - 2 * HOUR, FEB + 2 * HOUR, n)
        assert_matches_batch(frame, ckpt, full)
    table = pads.dataset(out, partitioning="hive").to_table()
    assert table.schema.field("hour").type == pa.timestamp("ns", tz="UTC")
    frame = table.to_pandas()
    assert (frame["month"] == frame["hour"].dt.strftime("%Y-%m")).all()
    assert set(frame["model"]) == {hashlib.sha256(ckpt.read_bytes()).hexdigest()[:12]}
    assert list(frame.columns[:8]) == ["hour", "symbol", "p_down", "p_sideways", "p_up", "prediction", "valid",
                                       "filled"]
    described = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{out}/*/*.parquet', hive_partitioning=true)").df()
    assert described.set_index("column_name").loc["hour", "column_type"].startswith("TIMESTAMP")
    before = {p: (out / p).read_bytes() for p in files(out)}
    assert run(live, ckpt, out, "--once") == 0  # nothing new: nothing written, nothing rewritten
    assert {p: (out / p).read_bytes() for p in files(out)} == before


def test_a_restart_after_missed_hours_fills_them_across_a_month_boundary(trained, tmp_path):
    full, ckpt = trained
    live, out = Store(tmp_path / "live"), tmp_path / "preds"
    grow(live, full, FEB - 3 * HOUR)
    assert run(live, ckpt, out, "--once") == 0  # a new dataset starts at the latest complete hour
    grow(live, full, FEB + 4 * HOUR)  # seven hours stored while the follower was down
    assert run(live, ckpt, out, "--iterations", "2", "--interval", "0") == 0
    frame = pds.read_dataset(out)
    assert_each_hour_once(frame, FEB - 3 * HOUR, FEB + 4 * HOUR, len(TINY_MARKET.symbols))
    assert_matches_batch(frame, ckpt, full)
    assert files(out) == ["month=2024-01/month-2024-01.parquet", "month=2024-02/part-20240201T00-20240201T04.parquet"]


class _Killed(BaseException):
    """A kill -9 in the middle of a compaction (nothing after it runs, nothing catches it)."""


@pytest.mark.parametrize("removed", [0, 1, 2])
def test_a_crash_between_compactions_write_and_the_parts_removal_never_shows_an_hour_twice(
        trained, tmp_path, monkeypatch, removed):
    """The merged month is written as .compacting first: until the rename, readers see each hour at most once,
    read_dataset exactly once, and the next writer finishes the compaction."""
    full, ckpt = trained
    live, out = Store(tmp_path / "live"), tmp_path / "preds"
    grow(live, full, FEB - 3 * HOUR)
    assert run(live, ckpt, out, "--once", "--start", (FEB - 5 * HOUR).isoformat()) == 0
    for last in (FEB - 2 * HOUR, FEB - HOUR):  # three January parts
        grow(live, full, last)
        assert run(live, ckpt, out, "--once") == 0
    grow(live, full, FEB)
    removals = []

    def crash(path: Path) -> None:  # the removal step of the real compaction, killed after `removed` parts
        if len(removals) == removed:
            raise _Killed
        removals.append(path)
        path.unlink()

    monkeypatch.setattr(pds, "_remove", crash)
    with pytest.raises(_Killed):
        run(live, ckpt, out, "--once")
    monkeypatch.undo()
    jan = out / "month=2024-01"
    assert (jan / ".month-2024-01.parquet.compacting").exists() and len(list(jan.glob("part-*"))) == 3 - removed
    n = len(TINY_MARKET.symbols)
    assert_each_hour_once(pds.read_dataset(out), FEB - 5 * HOUR, FEB, n)
    for frame in (by_pyarrow(out), by_duckdb(out)):  # the parts left: each hour at most once, never twice
        keys = list(zip(pd.to_datetime(frame["hour"], utc=True), frame["symbol"]))
        assert len(keys) == len(set(keys))
    grow(live, full, FEB + HOUR)
    assert run(live, ckpt, out, "--once") == 0  # recovers, then appends
    assert files(out) == ["month=2024-01/month-2024-01.parquet", "month=2024-02/part-20240201T00-20240201T00.parquet",
                          "month=2024-02/part-20240201T01-20240201T01.parquet"]
    for frame in (by_pyarrow(out), by_duckdb(out), pds.read_dataset(out)):
        assert_each_hour_once(frame, FEB - 5 * HOUR, FEB + HOUR, n)
        assert_matches_batch(frame, ckpt, full)


def _one_error_line(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("INFO", "WARNING"))]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


@pytest.fixture()
def started(trained, tmp_path):
    """A live store at 2024-01-31 20:00 and a dataset holding that hour; the next hour stored."""
    full, ckpt = trained
    live, out = Store(tmp_path / "live"), tmp_path / "preds"
    grow(live, full, FEB - 4 * HOUR)
    assert run(live, ckpt, out, "--once") == 0
    grow(live, full, FEB - 3 * HOUR)
    return live, ckpt, out


def _part(out: Path) -> Path:
    return next(out.glob("month=*/part-*.parquet"))


def _other_model(out: Path) -> None:
    frame = pd.read_parquet(_part(out))
    frame.assign(model="0123456789ab").to_parquet(_part(out), index=False)


def _extra_column(out: Path) -> None:
    frame = pd.read_parquet(_part(out))
    frame.assign(extra=1.0).to_parquet(_part(out), index=False)


def _cut(out: Path) -> None:
    part = _part(out)
    part.write_bytes(part.read_bytes()[:-100])


def _foreign(out: Path) -> None:
    (out / "notes.txt").write_text("mine")


def _overlapping(out: Path) -> None:
    part = _part(out)  # part-20240131T20-20240131T20: a copy that claims 19..20 overlaps it
    (part.parent / "part-20240131T19-20240131T20.parquet").write_bytes(part.read_bytes())


def _stray_parquet(out: Path) -> None:
    (_part(out).parent / "mine.parquet").write_bytes(_part(out).read_bytes())


def _other_month(out: Path) -> None:
    part = _part(out)
    part.rename(part.parent / "part-20240201T20-20240201T20.parquet")


def _renamed(out: Path) -> None:
    part = _part(out)
    part.rename(part.parent / "part-20240131T21-20240131T21.parquet")


@pytest.mark.parametrize("damage,needles", [
    (_other_model, ("holds predictions of model 0123456789ab", "pass another --out")),
    (_extra_column, ("other columns", "has extra", "pass another --out")),
    (_cut, ("is damaged", "cannot read it as parquet", "nothing was changed or deleted")),
    (_foreign, ("is not a predictions folder", "notes.txt")),
    (_overlapping, ("is damaged", "both hold hour 2024-01-31T20:00:00+00:00")),
    (_stray_parquet, ("holds mine.parquet, which is not a predictions part of month 2024-01",)),
    (_other_month, ("is damaged", "its name is not a span of hours of month 2024-01")),
    (_renamed, ("is damaged", "holds hours 2024-01-31T20:00:00+00:00 .. 2024-01-31T20:00:00+00:00, not those of "
                              "its name")),
])
def test_a_folder_of_another_model_layout_or_a_damaged_part_is_refused_in_one_line_and_kept(
        started, capsys, damage, needles):
    live, ckpt, out = started
    damage(out)
    before = _snapshot(out)
    capsys.readouterr()
    _one_error_line(capsys, run(live, ckpt, out, "--once"), *needles)
    assert _snapshot(out) == before


def test_a_damaged_part_of_a_complete_month_is_refused_before_anything_is_written(started, trained, capsys):
    """Older parts are read in full at compaction, which runs before each poll writes (and after it)."""
    live, ckpt, out = started
    full, _ = trained
    assert run(live, ckpt, out, "--once") == 0  # a second January part
    older = sorted(out.glob("month=2024-01/part-*.parquet"))[0]
    older.write_bytes(older.read_bytes()[:-100])
    grow(live, full, FEB + HOUR)
    capsys.readouterr()
    _one_error_line(capsys, run(live, ckpt, out, "--once"), str(older), "is damaged")
    written = _snapshot(out)  # the new hours were written (once), then January's compaction refused
    assert sorted(written) == [".predictions.lock", str(older.relative_to(out)),
                               "month=2024-01/part-20240131T21-20240131T21.parquet",
                               "month=2024-01/part-20240131T22-20240131T23.parquet",
                               "month=2024-02/part-20240201T00-20240201T01.parquet"]
    grow(live, full, FEB + 2 * HOUR)
    _one_error_line(capsys, run(live, ckpt, out, "--once"), str(older), "is damaged")
    assert _snapshot(out) == written  # refused before writing: nothing written, changed or deleted


def test_the_other_embeddings_setting_and_a_file_named_like_a_folder_are_refused(started, tmp_path, capsys):
    live, ckpt, out = started
    before = _snapshot(out)
    capsys.readouterr()
    _one_error_line(capsys, run(live, ckpt, out, "--once", "--no-embeddings"), "with embedding columns")
    assert _snapshot(out) == before
    (tmp_path / "plain").write_text("x")
    _one_error_line(capsys, run(live, ckpt, tmp_path / "plain", "--once"), "it is a file")
    _one_error_line(capsys, run(live, ckpt, tmp_path / "x.npz", "--once"), "or to a folder")
    _one_error_line(capsys, run(live, ckpt, tmp_path / "no" / "preds", "--once"), "does not exist")


def test_importing_the_data_cli_does_not_import_torch():
    code = "import sys, gnn_market.data; print(sorted(m for m in ('torch', 'gnn_market.encoder') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


# --------------------------------------------------------------------------- with collect (fake Binance)
#: The fake exchange's clock: 2024-02-29 22:00:30, so the hours collected next cross into March.
START_MS = int(pd.Timestamp("2024-02-29 22:00:30", tz="UTC").value // 1_000_000)
HOUR_MS = 3_600_000
MARCH = pd.Timestamp("2024-03-01", tz="UTC")


def exchange() -> list[FakeSymbol]:
    """Six spot pairs with 400 hours of history (the tiny model needs 100+ for its correlations)."""
    return [FakeSymbol(f"{name}USDT", name, quote_volume=1e9 / (i + 1), price=10.0 * (i + 1), listed_hours=400)
            for i, name in enumerate(["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"])]


def collect(server: FakeBinance, store: Path, *extra: str) -> int:
    return run_cli(data_main, ["collect", "--store", str(store), "--hours", "200", "--spot-url", server.url,
                               "--futures-url", server.url, "--timeout", "2", *extra])


class _StopLoop(Exception):
    """Ends the endless collect loop from inside its wait."""


def test_collect_predict_writes_what_a_separate_follower_writes_and_rides_out_a_failed_step(
        trained, tmp_path, monkeypatch, caplog):
    """Four loop cycles; after each, a separate follower polls the same store. The second cycle's prediction
    step fails: one warning line, collecting goes on, the next cycle writes the hour it missed."""
    import gnn_market.data as data_cli
    from gnn_market.live import Follower

    _, ckpt = trained
    store, by_collect, by_follower = tmp_path / "store", tmp_path / "by_collect", tmp_path / "by_follower"
    real_poll, polls = Follower.poll, []

    def flaky_poll(self):
        polls.append(self.config.out)
        if self.config.out == by_collect and polls.count(by_collect) == 2:
            raise RuntimeError("disk full")
        return real_poll(self)

    monkeypatch.setattr(Follower, "poll", flaky_poll)
    with FakeBinance(exchange(), now_ms=START_MS) as srv:
        waits: list[float] = []

        def fake_wait(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) % 2:  # after a candle pass and its prediction step: the separate follower polls
                assert run(Store(store), ckpt, by_follower, "--once") == 0
            elif len(waits) == 8:
                raise _StopLoop
            else:  # before the next candle pass: the next hour has closed
                srv.now_ms_fixed += HOUR_MS

        monkeypatch.setattr(data_cli, "_wait", fake_wait)
        with caplog.at_level("WARNING"), pytest.raises(_StopLoop):
            collect(srv, store, "--predict", str(ckpt), "--predictions", str(by_collect))
    failed = [r.getMessage() for r in caplog.records if "prediction step failed" in r.getMessage()]
    assert failed == ["prediction step failed (RuntimeError: disk full); collecting goes on, the hours are "
                      "written after a later cycle"]
    assert Store(store).stored_range("AAAUSDT")[1] == MARCH  # every cycle collected
    mine, theirs = pds.read_dataset(by_collect), pds.read_dataset(by_follower)
    assert_each_hour_once(mine, MARCH - 3 * HOUR, MARCH, 6)
    pd.testing.assert_frame_equal(mine, theirs, check_exact=False, atol=1e-6, rtol=0)
    assert files(by_collect) == ["month=2024-02/month-2024-02.parquet",
                                 "month=2024-03/part-20240301T00-20240301T00.parquet"]
    assert_matches_batch(mine, ckpt, Store(store))


@pytest.mark.parametrize("extra,needles", [
    (["--predict", "{tmp}/none.pt", "--predictions", "{tmp}/p"], ("not found",)),
    (["--predict", "{tmp}/junk.pt", "--predictions", "{tmp}/p"], ("junk.pt",)),
    (["--predict", "{ckpt}"], ("--predict CHECKPOINT and --predictions DIR go together",)),
    (["--predict", "{ckpt}", "--predictions", "{tmp}/p.parquet"], ("--predictions takes a folder",)),
    (["--predict", "{ckpt}", "--predictions", "{tmp}/p", "--market", "perp"], ("is a spot model",)),
])
def test_collect_refuses_a_bad_checkpoint_or_predictions_folder_before_collecting(trained, tmp_path, capsys, extra,
                                                                                  needles):
    _, ckpt = trained
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    argv = [a.format(tmp=tmp_path, ckpt=ckpt) for a in extra]
    with FakeBinance(exchange(), now_ms=START_MS) as srv:
        capsys.readouterr()
        _one_error_line(capsys, collect(srv, tmp_path / "store", "--once", *argv), *needles)
        assert srv.count() == 0  # refused before the first request
    assert not (tmp_path / "store").exists() and not (tmp_path / "p").exists()


def _start_follower(store: Path, ckpt: Path, out: Path, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gnn_market.predict", "--follow", "--store", str(store),
                             "--checkpoint", str(ckpt), "--out", str(out), "--interval", "0.2"],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=log)


def _wait_until_written(out: Path, hour: pd.Timestamp, follower: subprocess.Popen, log_path: Path) -> None:
    """Until the dataset holds ``hour`` (the follower polls every 0.2 s; starting it takes a few seconds)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert follower.poll() is None, log_path.read_text()
        try:
            frame = pds.read_dataset(out, columns=["hour"])
        except DataError:  # a compaction between listing and reading: look again
            frame = pd.DataFrame({"hour": []})
        if len(frame) and frame["hour"].max() >= hour:
            return
        time.sleep(0.2)
    raise AssertionError(f"{hour} not written in 180 s:\n{log_path.read_text()}")


def test_a_follower_killed_and_restarted_while_collect_writes_holds_each_hour_once(trained, tmp_path):
    """predict --follow in its own process while collect stores hour after hour; SIGKILL (wherever it is,
    maybe mid-write), two hours stored while it is down, restart: each hour once, each = a batch predict."""
    _, ckpt = trained
    store, out, log_path = tmp_path / "store", tmp_path / "preds", tmp_path / "follower.log"
    last = MARCH - 3 * HOUR  # the last closed hour at START_MS
    with FakeBinance(exchange(), now_ms=START_MS) as srv, log_path.open("w") as log:

        def next_hour() -> pd.Timestamp:
            srv.now_ms_fixed += HOUR_MS
            assert collect(srv, store, "--once") == 0
            return last + HOUR

        assert collect(srv, store, "--once") == 0
        follower = _start_follower(store, ckpt, out, log)
        try:
            _wait_until_written(out, last, follower, log_path)
            for _ in range(2):
                last = next_hour()
                _wait_until_written(out, last, follower, log_path)
            last = next_hour()  # 2024-03-01 00:00, and the kill at once: wherever the follower is
            follower.send_signal(signal.SIGKILL)
            follower.wait()
            for _ in range(2):
                last = next_hour()
            follower = _start_follower(store, ckpt, out, log)
            _wait_until_written(out, last, follower, log_path)
            last = next_hour()
            _wait_until_written(out, last, follower, log_path)
        finally:
            follower.kill()
            follower.wait()
    assert last == MARCH + 3 * HOUR
    for frame in (pds.read_dataset(out), by_pyarrow(out), by_duckdb(out)):
        assert_each_hour_once(frame, MARCH - 3 * HOUR, last, 6)
    assert_matches_batch(pds.read_dataset(out), ckpt, Store(store))
    assert [f for f in files(out) if f.startswith("month=2024-02")] == ["month=2024-02/month-2024-02.parquet"]


def test_collect_once_with_a_failing_prediction_step_is_one_error_line_and_keeps_the_data(trained, tmp_path,
                                                                                          capsys, monkeypatch):
    from gnn_market.live import Follower

    def broken(self):
        raise DataError("the predictions disk is full")

    _, ckpt = trained
    monkeypatch.setattr(Follower, "poll", broken)
    with FakeBinance(exchange(), now_ms=START_MS) as srv:
        capsys.readouterr()
        code = collect(srv, tmp_path / "store", "--once", "--predict", str(ckpt), "--predictions", str(tmp_path / "p"))
    _one_error_line(capsys, code, "the predictions disk is full")
    assert Store(tmp_path / "store").stored_range("AAAUSDT")[1] == MARCH - 3 * HOUR  # the cycle's data is stored
