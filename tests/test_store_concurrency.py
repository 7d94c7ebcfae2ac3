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
    assert not list((root / "klines" / "spot").glob(".*.tmp"))  # no temporary left behind
