"""predict --follow: each stored hour appended once, gaps filled on restart, complete hours only, atomic."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd
import pytest

from gnn_market import follow as follow_module
from gnn_market.cli import run_cli
from gnn_market.encoder import GraphEncoder
from gnn_market.follow import FollowConfig, complete_through, follow, stopped_pairs, stored_lasts
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
    # a pair that stops (delisted) is waited for until it is stopped_after_hours behind
    grow(live, full, h + 3 * HOUR, symbols=TINY_MARKET.symbols[1:])
    since = h + 2 * HOUR
    assert complete_through(live, "spot", since=since) == h + HOUR  # hour h + 2 is not complete
    lasts = stored_lasts(live, "spot")
    assert stopped_pairs(lasts, stopped_after_hours=3) == set()
    assert stopped_pairs(lasts, stopped_after_hours=2) == {TINY_MARKET.symbols[0]}
    assert complete_through(lasts, since=since, stopped=stopped_pairs(lasts, 2)) == h + 3 * HOUR


def test_a_pair_that_stops_is_waited_for_until_the_newest_hour_moved_on_twice(trained, tmp_path, caplog):
    """A delisted pair holds the follower back two hours (one running follower), then its hours are written."""
    full, ckpt = trained
    live, out = Store(tmp_path / "live"), tmp_path / "live.parquet"
    h = pd.Timestamp(TINY_MARKET.start, tz="UTC") + 300 * HOUR
    grow(live, full, h)
    gone, rest = TINY_MARKET.symbols[0], TINY_MARKET.symbols[1:]
    stored = [h]

    def store_next_hour(seconds: float) -> None:  # collect stores every pair but the delisted one
        stored.append(stored[-1] + HOUR)
        grow(live, full, stored[-1], symbols=rest)

    config = FollowConfig(out=out, interval_s=0, iterations=5)
    with caplog.at_level("INFO", logger="gnn_market.follow"):
        written = follow(GraphEncoder.load(ckpt), live, config, sleep=store_next_hour)
    # polls see the newest hour at h, h+1 (gone is stuck), h+2, h+3 (advanced twice: stopped), h+4
    assert written == list(pd.date_range(h, h + 4 * HOUR, freq="h")) and stored[-1] == h + 4 * HOUR
    assert caplog.text.count(f"waits for 1 pair(s) not stored through it yet: {gone}") == 1  # once, not per poll
    assert f"{gone} has no hour after" in caplog.text
    frame = read(out)
    rows = frame[frame["symbol"] == gone].set_index("time")
    assert rows.loc[h + HOUR:h + 3 * HOUR, "filled"].all() and not rows.loc[h, "filled"]  # the panel fills 3 h
    assert not rows.loc[h + 4 * HOUR, "valid"] and rows.loc[:h + 3 * HOUR, "valid"].all()
    # a follower started afresh (no memory) waits until the pair is stopped_after_hours behind
    out2 = tmp_path / "again.parquet"
    encoder = GraphEncoder.load(ckpt)
    config = FollowConfig(out=out2, start=h, stopped_after_hours=5)
    assert follow_module.poll_once(encoder, live, config, follow_module.model_id(encoder)) == [h]
    grow(live, full, h + 5 * HOUR, symbols=rest)
    assert follow_module.poll_once(encoder, live, config, follow_module.model_id(encoder)) == list(
        pd.date_range(h + HOUR, h + 5 * HOUR, freq="h"))


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


def test_every_poll_that_writes_nothing_says_at_info_which_hour_it_waits_for(trained, tmp_path, caplog):
    full, ckpt = trained
    live, out = Store(tmp_path / "live"), tmp_path / "live.csv"
    h = pd.Timestamp(TINY_MARKET.start, tz="UTC") + 200 * HOUR
    grow(live, full, h)
    config = FollowConfig(out=out, start=h, interval_s=7.0, iterations=3)
    with caplog.at_level("INFO", logger="gnn_market.follow"):
        written = follow(GraphEncoder.load(ckpt), live, config, sleep=lambda s: None)  # the store never grows
    assert written == [h]
    idle = [r.getMessage() for r in caplog.records if "nothing new to write" in r.getMessage()]
    assert idle == [f"poll {n}: nothing new to write; waiting for hour {(h + HOUR).isoformat()} to be stored "
                    "for every pair; next poll in 7 s" for n in (2, 3)]


def test_refusals_are_one_line(trained, tmp_path, capsys):
    full, ckpt = trained
    out = tmp_path / "other.parquet"
    pd.DataFrame({"time": [pd.Timestamp("2024-01-02", tz="UTC")], "symbol": ["SYN00USDT"],
                  "model": ["0123456789ab"]}).to_parquet(out)
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


def batch_probs(ckpt, full: Store, hour: pd.Timestamp) -> pd.DataFrame:
    """A plain ``predict`` of ``hour`` on the whole store: probabilities and flags per pair."""
    frame = GraphEncoder.load(ckpt).encode(full, time=hour).to_frame(embeddings=False)
    return frame.set_index("symbol")


def assert_matches_batch(frame: pd.DataFrame, ckpt, full: Store) -> None:
    """Every written hour equals a batch predict of that hour, for every pair (probabilities within 1e-6)."""
    for hour, rows in frame.groupby("time"):
        batch, rows = batch_probs(ckpt, full, hour), rows.set_index("symbol")
        assert list(rows.index) == list(batch.index), hour
        for col in ("p_down", "p_sideways", "p_up"):
            np.testing.assert_allclose(rows[col], batch[col], atol=1e-6, rtol=0, err_msg=f"{col} at {hour}")
        assert list(rows["prediction"]) == list(batch["prediction"]), hour
        assert list(rows["filled"].astype(bool)) == list(batch["filled"].astype(bool)), hour


def test_unevenly_grown_pairs_hold_back_the_hour_until_every_pair_has_it(trained, tmp_path):
    """Issue 21 item 3: a pair two or more hours behind (collect catching up) is waited for, never filled in."""
    full, ckpt = trained
    live, out = Store(tmp_path / "live"), tmp_path / "live.parquet"
    syms = TINY_MARKET.symbols
    h = pd.Timestamp(TINY_MARKET.start, tz="UTC") + 400 * HOUR
    grow(live, full, h - 4 * HOUR)
    grow(live, full, h, symbols=syms[:-1])                # SYN05..06 sit at h (800 in the issue)
    grow(live, full, h + HOUR, symbols=syms[1:5])         # SYN01..04 at h + 1
    grow(live, full, h + 2 * HOUR, symbols=syms[:1])      # SYN00 ran ahead to h + 2
    start = (h - 2 * HOUR).isoformat()
    assert run(live, ckpt, out, "--once", "--start", start) == 0  # SYN07, still at h - 4, is waited for
    assert not out.exists()
    grow(live, full, h, symbols=syms[-1:])
    assert complete_through(live, "spot", since=h - 2 * HOUR) == h
    assert run(live, ckpt, out, "--once", "--start", start) == 0
    frame = read(out)
    assert list(frame["time"].unique()) == list(pd.date_range(h - 2 * HOUR, h, freq="h"))  # nothing past h
    assert_matches_batch(frame, ckpt, full)
    grow(live, full, h + 2 * HOUR)
    grow(live, full, h + 6 * HOUR, symbols=syms[:-1])     # the last pair stays 4 hours behind
    assert run(live, ckpt, out, "--once") == 0
    assert read(out)["time"].max() == h + 2 * HOUR
    grow(live, full, h + 6 * HOUR)
    assert run(live, ckpt, out, "--once") == 0
    frame = read(out)
    assert list(frame["time"].unique()) == list(pd.date_range(h - 2 * HOUR, h + 6 * HOUR, freq="h"))
    assert not frame["filled"].any() and frame["valid"].all()
    assert_matches_batch(frame, ckpt, full)


def one_error_line(capsys, code: int, *needles: str) -> str:
    """Exit 2 and exactly one ``error:`` line on stderr (INFO log lines allowed) holding every needle."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("INFO", "WARNING"))]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


@pytest.fixture()
def hour_stored(trained, tmp_path):
    """A live store grown to one hour, the checkpoint and the hour."""
    full, ckpt = trained
    live = Store(tmp_path / "live")
    h = pd.Timestamp(TINY_MARKET.start, tz="UTC") + 300 * HOUR
    grow(live, full, h)
    return live, full, ckpt, h


def test_a_csv_without_its_final_newline_is_continued_on_a_new_line(hour_stored, tmp_path):
    """Issue 21 item 5: the next row used to be glued onto the last one."""
    live, full, ckpt, h = hour_stored
    out = tmp_path / "live.csv"
    assert run(live, ckpt, out, "--once") == 0
    out.write_bytes(out.read_bytes().rstrip(b"\n"))  # an editor or a copy dropped the final newline
    grow(live, full, h + HOUR)
    assert run(live, ckpt, out, "--once") == 0
    frame = read(out)  # parses: every row has its own line
    assert list(frame["time"].unique()) == [h, h + HOUR] and len(frame) == 2 * len(TINY_MARKET.symbols)
    assert frame["model"].str.fullmatch("[0-9a-f]{12}").all() and frame["valid"].all()
    assert run(live, ckpt, out, "--once") == 0  # and it continues cleanly


def _cut_last_row(out):
    data = out.read_bytes()
    out.write_bytes(data[:-25])  # a copy cut off mid-row


def _merge_last_rows(out):
    data = out.read_bytes().rstrip(b"\n")
    head, last = data.rsplit(b"\n", 1)
    out.write_bytes(head + last + b"\n")  # what the old follower wrote after a missing newline


def _cut_a_middle_row(out):
    lines = out.read_bytes().split(b"\n")
    lines[3] = lines[3][:40]  # an edit that lost the end of one row
    out.write_bytes(b"\n".join(lines))


def _cut_parquet(out):
    out.write_bytes(out.read_bytes()[:-200])


@pytest.mark.parametrize("suffix,damage,what", [
    (".csv", _cut_last_row, "the last row is cut short"),
    (".csv", _merge_last_rows, "fields, the header"),
    (".csv", _cut_a_middle_row, "row 3 has no model or no symbol: cut short"),
    (".csv", lambda out: out.write_bytes(b"\xff\xfe\x00garbage"), "cannot read it as text"),
    (".csv", lambda out: out.write_text(""), "no header line"),
    (".parquet", _cut_parquet, "cannot read it as parquet"),
    (".parquet", lambda out: out.write_bytes(b"PAR1 not really"), "cannot read it as parquet"),
])
def test_a_damaged_output_is_refused_in_one_line_and_left_as_it_is(hour_stored, tmp_path, capsys, suffix, damage,
                                                                   what):
    """Issue 21 items 5 and 13: a damaged file is refused (it was a TypeError, or rows appended to it)."""
    live, full, ckpt, h = hour_stored
    out = tmp_path / f"live{suffix}"
    assert run(live, ckpt, out, "--once") == 0
    damage(out)
    before = out.read_bytes()
    grow(live, full, h + HOUR)
    capsys.readouterr()
    one_error_line(capsys, run(live, ckpt, out, "--once"), "is damaged", what, "pass another --out")
    assert out.read_bytes() == before


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_symlinked_output_is_written_through_the_link(hour_stored, tmp_path, suffix):
    """Issue 21 item 6: the link used to be replaced by a plain file, so its target never saw an update."""
    live, full, ckpt, h = hour_stored
    (tmp_path / "data").mkdir()
    target, link = tmp_path / "data" / f"target{suffix}", tmp_path / f"link{suffix}"
    link.symlink_to(target)  # dangling until the first write
    assert run(live, ckpt, link, "--once") == 0
    grow(live, full, h + HOUR)
    assert run(live, ckpt, link, "--once") == 0
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert list(read(target)["time"].unique()) == [h, h + HOUR]
    assert (tmp_path / "data" / f".target{suffix}.lock").exists()  # one lock for every path to the file


def test_symbols_not_stored_and_another_symbol_set_are_refused(hour_stored, tmp_path, capsys):
    """Issue 21 item 12: an unknown symbol polled forever; another --symbols set was appended to the same file."""
    live, full, ckpt, h = hour_stored
    out = tmp_path / "live.parquet"
    for wrong in ("NOPEUSDT", "SYN00USDT,NOPEUSDT"):
        one_error_line(capsys, run(live, ckpt, out, "--once", "--symbols", wrong), "unknown spot symbols ['NOPEUSDT']")
        assert not out.exists()
    pair = "SYN00USDT,SYN01USDT"
    assert run(live, ckpt, out, "--once", "--symbols", pair) == 0
    before = out.read_bytes()
    grow(live, full, h + HOUR)
    for other in (["--symbols", "SYN00USDT,SYN01USDT,SYN02USDT"], ["--symbols", "SYN00USDT"], []):
        capsys.readouterr()
        one_error_line(capsys, run(live, ckpt, out, "--once", *other), "another graph", f"--symbols {pair}")
        assert out.read_bytes() == before
    assert run(live, ckpt, out, "--once", "--symbols", "SYN01USDT,SYN00USDT") == 0  # the same set
    assert list(read(out)["time"].unique()) == [h, h + HOUR]


def test_unwritable_output_places_are_one_error_line(hour_stored, tmp_path, capsys, monkeypatch):
    """Issue 21 item 13: a lock path that is a folder (IsADirectoryError), a folder we may not write (OSError)."""
    live, full, ckpt, h = hour_stored
    out = tmp_path / "live.csv"
    (tmp_path / ".live.csv.lock").mkdir()
    one_error_line(capsys, run(live, ckpt, out, "--once"), "cannot lock", "remove the folder")
    assert not out.exists()

    def refuse(self, *args, **kwargs):  # a read-only folder, as a non-root user sees it
        raise PermissionError(13, "Permission denied", str(self.lock_file))

    monkeypatch.setattr(follow_module.FileLock, "acquire", refuse)
    out = tmp_path / "other.csv"
    one_error_line(capsys, run(live, ckpt, out, "--once"), "cannot lock", "Permission denied", "writable")
    assert not out.exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_one_error_line(hour_stored, tmp_path, capsys):
    live, full, ckpt, h = hour_stored
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        one_error_line(capsys, run(live, ckpt, folder / "live.csv", "--once"), "cannot")
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("first,then", [([], ["--no-embeddings"]), (["--no-embeddings"], [])])
def test_an_output_of_the_other_embeddings_setting_is_refused(hour_stored, tmp_path, capsys, suffix, first, then):
    """Issue 21 item 18: the refusal of a file whose emb_* columns do not match --no-embeddings, both ways."""
    live, full, ckpt, h = hour_stored
    out = tmp_path / f"live{suffix}"
    assert run(live, ckpt, out, "--once", *first) == 0
    before = out.read_bytes()
    grow(live, full, h + HOUR)
    capsys.readouterr()
    with_or_without = "without" if first else "with"
    one_error_line(capsys, run(live, ckpt, out, "--once", *then),
                   f"was written {with_or_without} embedding columns", "--no-embeddings")
    assert out.read_bytes() == before


def test_a_running_follower_waits_out_a_catch_up_longer_than_stopped_after_hours(trained, tmp_path):
    """collect down 30 hours, then catching up pair by pair: the pairs not yet caught up are waited for."""
    full, ckpt = trained
    live, out = Store(tmp_path / "live"), tmp_path / "live.parquet"
    h = pd.Timestamp(TINY_MARKET.start, tz="UTC") + 300 * HOUR
    grow(live, full, h)
    late = h + 30 * HOUR
    steps = iter([
        lambda: None,                                               # collect down: nothing stored
        lambda: grow(live, full, late, symbols=TINY_MARKET.symbols[:3]),  # catch-up, first pairs
        lambda: grow(live, full, late, symbols=TINY_MARKET.symbols[3:]),  # the rest
    ])
    config = FollowConfig(out=out, interval_s=0, iterations=4)
    written = follow(GraphEncoder.load(ckpt), live, config, sleep=lambda s: next(steps)())
    assert written == list(pd.date_range(h, late, freq="h"))
    frame = read(out)
    assert frame["valid"].all() and not frame["filled"].any()
    # one poll without memory (--once) judges by distance: 30 hours behind counts as stopped
    lasts = {**{s: late for s in TINY_MARKET.symbols[:3]}, **{s: h for s in TINY_MARKET.symbols[3:]}}
    assert stopped_pairs(lasts) == set(TINY_MARKET.symbols[3:])
