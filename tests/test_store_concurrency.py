"""Two processes upserting one symbol at the same time lose no acknowledged row."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd

from gnn_market.store import Store

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import pandas as pd
    from gnn_market.store import Store

    root, parity, go, n = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    store = Store(root)
    while not go.exists():          # start both writers at the same moment
        time.sleep(0.001)
    acked = []
    for k in range(n):
        t = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=2 * k + parity)
        frame = pd.DataFrame({"open": [1.0], "high": [1.0 + k], "low": [0.5], "close": [1.0 + k],
                              "volume": [1.0]}, index=pd.DatetimeIndex([t], name="open_time"))
        store.write_klines("BTCUSDT", frame)
        acked.append(t.isoformat())
    print("\\n".join(acked))
""")


def test_two_writer_processes_lose_nothing(tmp_path):
    root, go, n = tmp_path / "store", tmp_path / "go", 60
    Store(root).write_klines("BTCUSDT", pd.DataFrame(
        {"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [1.0]},
        index=pd.DatetimeIndex([pd.Timestamp("2023-12-31 23:00", tz="UTC")], name="open_time")))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(parity), str(go), str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
             for parity in (0, 1)]
    time.sleep(1.5)  # both interpreters up and waiting (imports take ~1 s)
    go.touch()
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    acked = {pd.Timestamp(line) for out, _ in outputs for line in out.split()}
    assert len(acked) == 2 * n
    stored = set(Store(root).klines("BTCUSDT").index)
    assert acked <= stored, f"lost {len(acked - stored)} acknowledged rows"
    assert len(stored) == 2 * n + 1
    assert not list((root / "klines").rglob(".*.tmp"))  # no temporary left behind
    # the 2 x 60 hours span 2024-01-01 .. 2024-01-06 plus the first row's December: two month files
    assert sorted(p.parent.name for p in root.rglob("data.parquet")) == ["month=2023-12", "month=2024-01"]


MONTHS_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import pandas as pd
    from gnn_market.store import Store

    root, parity, go, n = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    store = Store(root)
    while not go.exists():
        time.sleep(0.001)
    for k in range(n):  # each write spans three months (one row in each), in opposite orders for the two writers
        days = [0, 31, 60] if parity == 0 else [60, 31, 0]
        t = [pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=d, hours=2 * k + parity) for d in days]
        frame = pd.DataFrame({"open": 1.0, "high": 2.0 + k, "low": 0.5, "close": 1.0 + k, "volume": 1.0},
                             index=pd.DatetimeIndex(t, name="open_time"))
        store.write_klines("BTCUSDT", frame)
    print("done")
""")


def test_two_writers_of_multi_month_frames_never_deadlock_and_lose_nothing(tmp_path):
    """Every month lock is taken in ascending order, whatever the row order of the frame written."""
    root, go, n = tmp_path / "store", tmp_path / "go", 40
    procs = [subprocess.Popen([sys.executable, "-c", MONTHS_WRITER, str(root), str(parity), str(go), str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
             for parity in (0, 1)]
    time.sleep(1.5)
    go.touch()
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    stored = Store(root).klines("BTCUSDT")
    assert len(stored) == 2 * n * 3 and stored.index.is_unique
    assert sorted({t.strftime("%Y-%m") for t in stored.index}) == ["2024-01", "2024-02", "2024-03"]


REPAIR = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from gnn_market.cli import run_cli
    from gnn_market.data import main

    root, go, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    ready.touch()
    while not go.exists():          # start both repairs at the same moment
        time.sleep(0.001)
    sys.exit(run_cli(main, ["repair", "--store", root]))
""")


def test_two_repair_processes_at_once_keep_the_original_as_the_only_backup(tmp_path):
    """Issue 21 item 1: `repair & repair & wait` left a backup of the repaired file (800 rows, not 801)."""
    df = pd.DataFrame({"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 3.0},
                      index=pd.date_range("2024-01-01", periods=800, freq="h", tz="UTC", name="open_time"))
    for run in range(3):
        root, go = tmp_path / f"store{run}", tmp_path / f"go{run}"
        Store(root).write_klines("BTCUSDT", df)
        path = Store(root).month_file("klines", "BTCUSDT", "2024-01")
        january = df[df.index < pd.Timestamp("2024-02-01", tz="UTC")]
        pd.concat([january, january.iloc[[400]]]).to_parquet(path)  # 745 rows, one duplicate
        original = path.read_bytes()
        ready = [tmp_path / f"ready{run}-{k}" for k in range(2)]
        procs = [subprocess.Popen([sys.executable, "-c", REPAIR, str(root), str(go), str(flag)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  cwd=Path(__file__).resolve().parents[1])
                 for flag in ready]
        deadline = time.monotonic() + 60
        while not all(f.exists() for f in ready) and time.monotonic() < deadline:
            time.sleep(0.01)  # both interpreters up (imports done) and waiting
        go.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        said = sorted(out for out, _ in outputs)
        assert "dropped 1 of 745 rows" in said[0] and "nothing to repair" in said[1], said
        backups = [p for p in (root / "repair-backup").rglob("*") if p.is_file()]
        assert len(backups) == 1 and backups[0].read_bytes() == original, f"run {run}: {backups}"
        assert len(Store(root).klines("BTCUSDT")) == 800
