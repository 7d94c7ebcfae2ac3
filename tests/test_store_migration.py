"""Issue 24 item 2: old-layout stores are refused with one line naming `migrate`; `migrate` loses nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from old_store_layout import (
    book,
    funding,
    klines,
    old_path,
    previous_release_store,
    write_old_file,
    write_old_marker,
)

import gnn_market.migrate as migrate
from gnn_market.cli import run_cli
from gnn_market.data import main
from gnn_market.errors import StoreError
from gnn_market.migrate import migrate_store
from gnn_market.panel import load_panel
from gnn_market.store import Store
from gnn_market.store_layout import LegacyStoreError

ROOT = Path(__file__).resolve().parents[1]


def old_store(root: Path, version: int | None = 2) -> dict[tuple[str, str, str], pd.DataFrame]:
    """Every kind and market, several months each, in the old layout; returns ``{(kind, market, symbol): frame}``."""
    frames = {
        ("klines", "spot", "BTCUSDT"): klines("2023-11-20", 24 * 50, seed=1),  # Nov .. Jan: three month files
        ("klines", "spot", "ETHUSDT"): klines("2024-01-05", 30, seed=2),
        ("klines", "perp", "BTCUSDT"): klines("2023-12-30", 24 * 40, seed=3),
        ("book", "spot", "BTCUSDT"): book("2023-12-31 20:00", 10, seed=4),  # the 23:59:30 snapshot is December's
        ("book", "perp", "BTCUSDT"): book("2024-01-01", 5, seed=5),
        ("funding", "perp", "BTCUSDT"): funding("2023-12-30", 12, seed=6),
    }
    write_old_marker(root, version)
    for (kind, market, symbol), frame in frames.items():
        write_old_file(root, kind, symbol, frame, market)
    return frames


def read_new(store: Store, kind: str, market: str, symbol: str) -> pd.DataFrame:
    if kind == "klines":
        return store.klines(symbol, market)
    return store.book(symbol, market) if kind == "book" else store.funding(symbol)


def assert_same_rows(store: Store, frames: dict) -> None:
    """Every row, value, dtype and time of ``frames`` is what the new layout returns, nothing more."""
    for (kind, market, symbol), frame in frames.items():
        got = read_new(store, kind, market, symbol)
        pd.testing.assert_frame_equal(got, frame, check_exact=True, check_freq=False, obj=f"{kind}/{market}/{symbol}")
        assert got.index.dtype == "datetime64[ns, UTC]"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("version", [1, 2, None], ids=["format-1", "format-2", "no-marker"])
def test_old_layout_is_refused_by_readers_and_writers_with_one_line_naming_migrate(tmp_path, capsys, version):
    old_store(tmp_path, version)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    command = f"python -m gnn_market.data migrate --store {tmp_path}"
    store = Store(tmp_path)
    for call in (store.symbols, lambda: store.klines("BTCUSDT"), lambda: store.stored_range("BTCUSDT"),
                 lambda: store.funding("BTCUSDT"), lambda: store.write_klines("BTCUSDT", klines("2024-02-01", 2)),
                 lambda: store.write_book("BTCUSDT", book("2024-02-01", 2)), store.repair, store.check,
                 lambda: load_panel(store)):
        with pytest.raises(LegacyStoreError, match=command.replace(".", r"\.")):
            call()
    for argv in (["info"], ["repair"]):
        assert run_cli(main, [*argv, "--store", str(tmp_path)]) == 2
        assert command in one_error_line(capsys)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".lock")} == before


def test_a_store_of_every_kind_and_market_migrates_row_for_row(tmp_path, capsys):
    frames = old_store(tmp_path, version=2)
    originals = {key: old_path(tmp_path, key[0], key[2], key[1]).read_bytes() for key in frames}
    assert run_cli(main, ["migrate", "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"migrated {len(frames)} file(s), {sum(len(f) for f in frames.values())} rows, from format 2 to 3" in out
    assert "backup removed" in out
    store = Store(tmp_path)
    assert_same_rows(store, frames)
    assert json.loads((tmp_path / "STORE.json").read_text()) == {"format": "cryptograph-store", "version": 3,
                                                                 "book_time": "capture"}
    assert store.symbols("spot") == ["BTCUSDT", "ETHUSDT"] and store.symbols("perp") == ["BTCUSDT"]
    assert store.check() == [] and not (tmp_path / migrate.BACKUP).exists()
    assert not any(old_path(tmp_path, k[0], k[2], k[1]).exists() for k in frames)
    assert not (tmp_path / "klines" / "spot").exists() and not (tmp_path / "book" / "perp").exists()
    months = sorted(p.relative_to(tmp_path).parent.as_posix() for p in tmp_path.rglob("data.parquet"))
    assert [m for m in months if m.startswith("klines/market=spot/symbol=BTCUSDT")] == [
        f"klines/market=spot/symbol=BTCUSDT/month={m}" for m in ("2023-11", "2023-12", "2024-01")]
    assert "funding/market=perp/symbol=BTCUSDT/month=2023-12" in months
    assert "book/market=spot/symbol=BTCUSDT/month=2023-12" in months  # 2023-12-31 23:59:30 stays in December
    assert run_cli(main, ["migrate", "--store", str(tmp_path)]) == 0  # a second run changes nothing
    assert "already in format 3; nothing to migrate" in capsys.readouterr().out
    assert_same_rows(store, frames)
    assert len(originals) == len(frames)


def test_keep_backup_keeps_the_old_files_byte_for_byte(tmp_path, capsys):
    frames = old_store(tmp_path)
    originals = {old_path(tmp_path, k[0], k[2], k[1]).relative_to(tmp_path): old_path(tmp_path, k[0], k[2], k[1])
                 .read_bytes() for k in frames}
    assert run_cli(main, ["migrate", "--store", str(tmp_path), "--keep-backup"]) == 0
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(f"{migrate.BACKUP}-")]
    assert len(kept) == 1 and f"old files kept in {kept[0]}" in capsys.readouterr().out
    assert {p.relative_to(kept[0]): p.read_bytes() for p in kept[0].rglob("*.parquet")} == originals
    assert_same_rows(Store(tmp_path), frames)  # the kept backup is not read as store data


def test_a_format_1_store_keeps_its_floored_book_stamps_after_migration(tmp_path):
    """Format 1 floored snapshots taken up to 5 min after the hour: migration must not make them 'capture' times."""
    times = pd.date_range("2024-01-01", periods=4, freq="h", tz="UTC", name="open_time")
    write_old_marker(tmp_path, None)  # format 1: no marker
    write_old_file(tmp_path, "klines", "XXUSDT", klines("2024-01-01", 4))
    snaps = pd.DatetimeIndex([times[1], times[2] - pd.Timedelta(seconds=20)], name="snapshot_time")
    write_old_file(tmp_path, "book", "XXUSDT", book("2024-01-01", 2).set_axis(snaps))
    migrate_store(tmp_path)
    store = Store(tmp_path)
    assert store.book_time() == "floored" and store.format_version() == 3
    # the floored stamp at times[1] may hide 5 min of candle 1: it serves no row; the other gains 1 s, still inside
    assert load_panel(store).has_book[:, 0].tolist() == [False, True, False, False]
    store.write_book("XXUSDT", book("2024-01-01 04:00", 1))  # writing on keeps the store's meaning
    assert Store(tmp_path).book_time() == "floored"
    fresh = Store(tmp_path / "fresh")
    fresh.write_klines("XXUSDT", klines("2024-01-01", 4))
    fresh.write_book("XXUSDT", book("2024-01-01", 2).set_axis(snaps))
    assert fresh.book_time() == "capture"  # the same stamps in a new store are capture times
    assert load_panel(fresh).has_book[:, 0].tolist() == [True, True, False, False]


def test_a_store_written_by_the_previous_release_migrates_and_reads_back_identically(tmp_path):
    """The previous release's own Store class (from git) writes the store; its own reads are the reference."""
    OldStore = previous_release_store()
    if OldStore is None:
        pytest.skip("needs git and the previous release's commit")
    old = OldStore(tmp_path)
    for market, seed in (("spot", 1), ("perp", 2)):
        old.write_klines("BTCUSDT", klines("2023-12-20", 24 * 20, seed=seed), market)
        old.write_klines("ETHUSDT", klines("2023-12-31", 48, seed=seed + 10), market)
        old.write_book("BTCUSDT", book("2023-12-31 22:00", 4, seed=seed), market)
    old.write_funding("BTCUSDT", funding("2023-12-30", 9))
    expected = {(kind, market, symbol): read(symbol, market)
                for kind, read in (("klines", old.klines), ("book", old.book))
                for market in ("spot", "perp") for symbol in old.symbols(market)
                if kind == "klines" or symbol in old.book_symbols(market)}
    expected[("funding", "perp", "BTCUSDT")] = old.funding("BTCUSDT")
    assert old.format_version() == 2
    report = migrate_store(tmp_path)
    assert report.files == 7 and report.verified_files == 7
    assert_same_rows(Store(tmp_path), expected)


KILLER = textwrap.dedent("""
    import os, signal, sys
    import gnn_market.migrate as migrate
    done = []
    def after_file(path):
        done.append(path)
        if len(done) == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 would, between two files
    migrate.after_file = after_file
    migrate.migrate_store(sys.argv[1])
""")


@pytest.mark.parametrize("after", [1, 4, 6])
def test_migrate_killed_mid_way_resumes_and_loses_nothing(tmp_path, after):
    frames = old_store(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", KILLER, str(tmp_path), str(after)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    backed_up = list((tmp_path / migrate.BACKUP).rglob("*.parquet"))
    assert len(backed_up) == after  # the killed run moved that many files, each verified first
    with pytest.raises(LegacyStoreError):  # half-way is still the old format to every reader
        Store(tmp_path).klines("BTCUSDT")
    report = migrate_store(tmp_path)
    assert report.files == len(frames) - after and report.verified_files == len(frames)
    assert_same_rows(Store(tmp_path), frames)
    assert not (tmp_path / migrate.BACKUP).exists()


def test_a_failure_after_the_month_files_are_written_keeps_the_old_file_and_resumes(tmp_path, monkeypatch):
    frames = old_store(tmp_path)
    real = os.replace
    calls = []

    def fails_on_third_move(src, dst):
        if migrate.BACKUP in str(dst):
            calls.append(dst)
            if len(calls) == 3:
                raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(migrate.os, "replace", fails_on_third_move)
    with pytest.raises(OSError):
        migrate_store(tmp_path)
    monkeypatch.undo()
    assert sum(1 for k in frames if old_path(tmp_path, k[0], k[2], k[1]).exists()) == len(frames) - 2
    migrate_store(tmp_path)  # the third file's month files exist already: rewritten with the same rows
    assert_same_rows(Store(tmp_path), frames)


def test_a_failed_verification_removes_nothing(tmp_path, monkeypatch):
    frames = old_store(tmp_path)
    real = migrate._merge

    def loses_a_row(store, old, kind, folder):
        return real(store, old.iloc[1:], kind, folder)

    monkeypatch.setattr(migrate, "_merge", loses_a_row)
    with pytest.raises(StoreError, match="migration check failed for .*klines/spot/BTCUSDT.parquet.*nothing was "
                                         "removed"):
        migrate_store(tmp_path)
    assert old_path(tmp_path, "klines", "BTCUSDT").exists()
    assert json.loads((tmp_path / "STORE.json").read_text())["version"] == 2
    monkeypatch.undo()
    migrate_store(tmp_path)
    assert_same_rows(Store(tmp_path), frames)


def test_an_unreadable_old_file_stops_migrate_with_one_line_and_nothing_is_lost(tmp_path, capsys):
    frames = old_store(tmp_path)
    junk = old_path(tmp_path, "klines", "JUNKUSDT")
    junk.write_bytes(b"not parquet")
    assert run_cli(main, ["migrate", "--store", str(tmp_path)]) == 2
    line = one_error_line(capsys)
    assert f"cannot migrate {junk}" in line and "move that file out of the store" in line
    assert junk.read_bytes() == b"not parquet"
    junk.rename(tmp_path.parent / "junk.parquet")
    assert run_cli(main, ["migrate", "--store", str(tmp_path)]) == 0
    assert_same_rows(Store(tmp_path), frames)


def test_a_rule_breaking_old_file_is_migrated_as_it_is_then_repaired_as_before(tmp_path):
    frames = old_store(tmp_path)
    bad = klines("2024-01-01", 6, seed=9)
    dup = bad.iloc[[2]].assign(volume=77.0)
    write_old_file(tmp_path, "klines", "DUPUSDT", pd.concat([bad, dup]))
    report = migrate_store(tmp_path)
    assert report.files == len(frames) + 1
    store = Store(tmp_path)
    assert [(r.symbol, r.problems) for r in store.check()] == [
        ("DUPUSDT", ["1 duplicated timestamp(s) (first 2024-01-01 02:00:00)"])]
    assert [(r.rows_before, r.rows_after) for r in store.repair()] == [(7, 6)]
    assert store.klines("DUPUSDT")["volume"].iloc[2] == 77.0  # the later row in file order, as before migrating
    assert_same_rows(store, frames)


def test_an_old_file_dropped_into_a_migrated_store_is_refused_then_merged(tmp_path):
    frames = old_store(tmp_path)
    migrate_store(tmp_path)
    late = klines("2024-01-05", 40, seed=2)  # an old cryptograph still running wrote ETHUSDT again
    write_old_file(tmp_path, "klines", "ETHUSDT", late)
    with pytest.raises(LegacyStoreError, match="one-file-per-symbol layout"):
        Store(tmp_path).klines("ETHUSDT")
    migrate_store(tmp_path)
    got = Store(tmp_path).klines("ETHUSDT")
    pd.testing.assert_frame_equal(got, late, check_exact=True, check_freq=False)  # the later write wins
    assert len(got) == 40 and np.array_equal(got.index[:30], frames[("klines", "spot", "ETHUSDT")].index)
