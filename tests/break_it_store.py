"""Break-it attempts: store (see tests/break_it.py).

What a careless or hostile user did to the store's writers (``repair``, ``import-csv``,
``import-vision``) in issue 21: concurrent repairs, foreign files, full disks, symbolic links,
damaged format markers and implausible values. Each attempt copies a small synthetic store
(6 pairs x 800 hours, built once per replay) into its own folder.
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from gnn_market.store import Store

from break_it import Attempt, check, expect_error, expect_ok, invoke, shared

AREA = "store"
#: The synthetic store's 800 hours start 2024-01-01: 744 in the January month file, 56 in February's.
JANUARY = "2024-01"
#: Columns of a plain kline dump, in the order ``import-csv`` documents.
CSV_COLUMNS = ["open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades",
               "taker_buy_volume", "taker_buy_quote_volume"]


def _build_store(folder: Path) -> Path:
    from gnn_market.synthetic import SyntheticConfig, write_synthetic_store

    config = SyntheticConfig(n_symbols=6, hours=800, seed=0, n_sectors=2, leaders_per_sector=1,
                             with_funding=False, with_book=False)
    return write_synthetic_store(folder / "data", config).root


def january(root: Path, symbol: str) -> Path:
    """``symbol``'s January month file (744 of its 800 candles)."""
    return Store(root).month_file("klines", symbol, JANUARY)


def store_copy(tmp: Path) -> Path:
    """A private copy of the shared 6-pair store (``SYN00USDT`` .. ``SYN05USDT``, 800 hours each)."""
    return Path(shutil.copytree(shared("store-6x800", _build_store), tmp / "data"))


def files(root: Path) -> dict[str, bytes]:
    """Every file of the store by relative path (to prove nothing changed); lock files are not data."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not (p.name.startswith(".") and p.name.endswith(".lock"))}


def dump_csv(root: Path, symbol: str, folder: Path, rows: int = 200,
             change: Callable[[pd.DataFrame], pd.DataFrame] | None = None, newest_first: bool = False) -> Path:
    """``symbol``'s first ``rows`` stored candles as ``<folder>/<symbol>.csv`` (ms times), optionally changed."""
    frame = Store(root).klines(symbol).iloc[:rows].reset_index()
    frame["open_time"] = frame["open_time"].dt.as_unit("ns").astype("int64") // 1_000_000
    if change is not None:
        frame = change(frame)
    if newest_first:
        frame = frame.iloc[::-1]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{symbol}.csv"
    frame[CSV_COLUMNS].to_csv(path, index=False)
    return path


@contextmanager
def patched(owner: object, name: str, value: object) -> Iterator[None]:
    """``owner.name = value`` for the block (a simulated full disk)."""
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def _full_disk(*args, **kwargs):
    """A copy or write that fails as on a full disk, after creating its target (as a real one does)."""
    target = args[1] if len(args) > 1 else None
    if isinstance(target, (str, os.PathLike)):
        open(target, "wb").close()
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# --------------------------------------------------------------------------- item 1
_REPAIR = ("import sys, time; from pathlib import Path; from gnn_market.cli import run_cli; "
           "from gnn_market.data import main; Path(sys.argv[3]).touch(); go = Path(sys.argv[2])\n"
           "while not go.exists(): time.sleep(0.001)\n"
           "sys.exit(run_cli(main, ['repair', '--store', sys.argv[1]]))")


def two_repairs_at_once(tmp: Path) -> None:
    """`repair --store S & repair --store S & wait` on a 745-row month file: the backup must hold the 745 rows."""
    root = store_copy(tmp)
    path = january(root, "SYN00USDT")
    frame = pd.read_parquet(path)
    pd.concat([frame, frame.iloc[[100]]]).to_parquet(path)
    original = path.read_bytes()
    go, ready = tmp / "go", [tmp / "ready0", tmp / "ready1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", _REPAIR, str(root), str(go), str(flag)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for flag in ready]
    deadline = time.monotonic() + 60
    while not all(f.exists() for f in ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    check([p.returncode for p in procs] == [0, 0], f"repair exit codes {[p.returncode for p in procs]}: {outs}")
    backups = [p for p in (root / "repair-backup").rglob("*") if p.is_file()]
    check(len(backups) == 1, f"{len(backups)} backups for one repaired file")
    check(backups[0].read_bytes() == original, "the backup is not the original 745-row file")
    check(len(Store(root).klines("SYN00USDT")) == 800, "the repaired file does not hold 800 rows")


# --------------------------------------------------------------------------- item 2
def repair_int64_ms_times(tmp: Path) -> None:
    """A klines month file whose open_time is int64 milliseconds (745 rows, 1 duplicate): `repair` keeps 744."""
    root = store_copy(tmp)
    path = january(root, "SYN01USDT")
    hours = Store(root).klines("SYN01USDT").index
    frame = pd.read_parquet(path)
    frame.index = pd.Index(frame.index.as_unit("ns").asi8 // 1_000_000, name="open_time")
    pd.concat([frame, frame.iloc[[5]]]).to_parquet(path)
    out = expect_ok(invoke("gnn_market.data", "repair", "--store", str(root)))
    check("dropped 1 of 745 rows" in out.out, f"repair said {out.out.strip()!r}")
    got = Store(root).klines("SYN01USDT")
    check(list(got.index) == list(hours), "the repaired file's hours differ from the original hours")


def repair_on_a_full_disk(tmp: Path) -> None:
    """`repair` on a full disk: one error line, the file unchanged, no 0-byte backup left."""
    import gnn_market.store_health as store_module

    root = store_copy(tmp)
    path = january(root, "SYN02USDT")
    frame = pd.read_parquet(path)
    pd.concat([frame, frame.iloc[[7]]]).to_parquet(path)
    before = files(root)
    with patched(store_module.shutil, "copy2", _full_disk):
        expect_error(invoke("gnn_market.data", "repair", "--store", str(root)), "cannot back up",
                     "no space left", "not changed")
    after = files(root)
    check(after == before, f"files changed or left behind: {sorted(set(after) ^ set(before))}")


# --------------------------------------------------------------------------- item 6
def import_into_a_symlinked_store_file(tmp: Path) -> None:
    """A store file that is a symbolic link: an import writes through it and the link stays."""
    root = store_copy(tmp)
    src = tmp / "src"
    dump_csv(root, "SYN03USDT", src, rows=300)
    link = january(root, "SYN03USDT")
    target = tmp / "elsewhere" / "SYN03USDT.parquet"
    target.parent.mkdir()
    pd.read_parquet(link).iloc[:100].to_parquet(target)
    link.unlink()
    link.symlink_to(target)
    expect_ok(invoke("gnn_market.data", "import-csv", str(src), "--store", str(root), "--keep-last"))
    check(link.is_symlink(), "the symbolic link was replaced by a plain file")
    check(len(pd.read_parquet(target)) == 300, "the link's target did not get the imported rows")


# --------------------------------------------------------------------------- item 7
def import_csv_with_one_bad_stored_file(tmp: Path) -> None:
    """import-csv of 6 pairs where SYN01USDT's stored file breaks a rule: nothing may change."""
    root = store_copy(tmp)
    src = tmp / "src"
    for i in range(6):  # 800 hours in the files, 600 stored: every symbol would grow
        dump_csv(root, f"SYN0{i}USDT", src, rows=800)
        path = january(root, f"SYN0{i}USDT")
        frame = pd.read_parquet(path).iloc[:600]
        (pd.concat([frame, frame.iloc[[3]]]) if i == 1 else frame).to_parquet(path)
    before = files(root)
    expect_error(invoke("gnn_market.data", "import-csv", str(src), "--store", str(root)),
                 "symbol=SYN01USDT", "duplicated")
    check(files(root) == before, "some stored file changed although the import was refused")


def import_csv_onto_a_filling_disk(tmp: Path) -> None:
    """import-csv where the disk fills up at the third symbol: the error names what was written."""
    import gnn_market.store as store_module

    root = store_copy(tmp)
    src = tmp / "src"
    for i in range(6):
        dump_csv(root, f"SYN0{i}USDT", src, rows=800, change=lambda f: f.assign(volume=f["volume"] * 1.001,
                                                                                 taker_buy_volume=f["taker_buy_volume"]))
    real, calls = store_module.pq.write_table, []

    def fills_up(*args, **kwargs):
        calls.append(1)
        if len(calls) > 4:  # two month files per symbol: the third symbol's first write fails
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    with patched(store_module.pq, "write_table", fills_up):
        line = expect_error(invoke("gnn_market.data", "import-csv", str(src), "--store", str(root)),
                            "no space left", "written before the failure: SYN00USDT", "SYN01USDT",
                            "not written: SYN02USDT, SYN03USDT, SYN04USDT, SYN05USDT")
    check("nothing was changed" not in line.lower(), f"says nothing was changed: {line}")


# --------------------------------------------------------------------------- item 8
def import_a_newest_first_csv(tmp: Path) -> None:
    """A dump in descending order without --keep-last: the newest (partial) candle goes, 00:00 stays."""
    root = store_copy(tmp)
    src = tmp / "src"
    dump_csv(root, "SYN04USDT", src, rows=24, newest_first=True)
    fresh = tmp / "fresh"
    expect_ok(invoke("gnn_market.data", "import-csv", str(src), "--store", str(fresh)))
    got = Store(fresh).klines("SYN04USDT").index
    first = pd.Timestamp("2024-01-01", tz="UTC")
    check(got[0] == first and got[-1] == first + pd.Timedelta(hours=22) and len(got) == 23,
          f"stored {got[0]} .. {got[-1]} ({len(got)} rows); want 00:00 .. 22:00")


# --------------------------------------------------------------------------- item 9
MARKERS: dict[str, str | None] = {
    "version 99": '{"format": "cryptograph-store", "version": 99}',
    "garbage": "}{ not json",
    "empty": "",
    "a list": "[2]",
    "a directory": None,
}


def _marker_attempt(kind: str) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        root = store_copy(tmp)
        src = tmp / "src"
        dump_csv(root, "SYN05USDT", src, rows=400)
        bad = january(root, "SYN00USDT")  # also something repair would change
        frame = pd.read_parquet(bad)
        pd.concat([frame, frame.iloc[[2]]]).to_parquet(bad)
        marker = root / "STORE.json"
        marker.unlink()
        if MARKERS[kind] is None:
            marker.mkdir()
        else:
            marker.write_text(MARKERS[kind])
        before = files(root)
        for argv in (["import-csv", str(src)], ["import-vision", str(src / "SYN05USDT.csv"), "--market", "spot"],
                     ["repair"]):
            expect_error(invoke("gnn_market.data", *argv, "--store", str(root)), "STORE")
        check(files(root) == before, "the store was written to")

    return run


# --------------------------------------------------------------------------- item 11
def _value_attempt(change: Callable[[pd.DataFrame], pd.DataFrame], *needles: str) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        root = store_copy(tmp)
        src = tmp / "src"
        dump_csv(root, "SYN02USDT", src, rows=50, change=change)
        fresh = tmp / "fresh"
        expect_error(invoke("gnn_market.data", "import-csv", str(src), "--store", str(fresh)), "SYN02USDT.csv",
                     *needles)
        check(not fresh.exists(), "the refused import created the store")

    return run


def _set(row: int, **values: float) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({"trades": "float64"})
        for column, value in values.items():
            frame.loc[frame.index[row], column] = value
        return frame

    return change


def import_a_header_only_csv(tmp: Path) -> None:
    """A CSV with its header only: refused, no empty symbol reported "ok yes"."""
    src = tmp / "src"
    src.mkdir()
    (src / "SYN00USDT.csv").write_text(",".join(CSV_COLUMNS) + "\n")
    fresh = tmp / "fresh"
    expect_error(invoke("gnn_market.data", "import-csv", str(src), "--store", str(fresh)), "SYN00USDT.csv",
                 "only a header")
    check(not fresh.exists(), "the refused import created the store")


def import_a_zip_under_another_symbols_folder(tmp: Path) -> None:
    """An archive zip under folder SYNBUSDT but named SYNAUSDT: refused, not stored as SYNAUSDT."""
    root = store_copy(tmp)
    frame = Store(root).klines("SYN00USDT").iloc[:24]
    ms = frame.index.as_unit("ns").asi8 // 1_000_000
    lines = [f"{t},{r.open},{r.high},{r.low},{r.close},{r.volume},{t + 3_599_999},{r.quote_volume},"
             f"{r.trades},{r.taker_buy_volume},{r.taker_buy_quote_volume},0" for t, r in zip(ms, frame.itertuples())]
    zpath = tmp / "data" / "spot" / "monthly" / "klines" / "SYNBUSDT" / "1h" / "SYNAUSDT-1h-2024-01.zip"
    zpath.parent.mkdir(parents=True)
    with zipfile.ZipFile(zpath, "w") as archive:
        archive.writestr("SYNAUSDT-1h-2024-01.csv", "\n".join(lines) + "\n")
    fresh = tmp / "fresh"
    expect_error(invoke("gnn_market.data", "import-vision", str(tmp / "data"), "--store", str(fresh)),
                 "SYNAUSDT", "SYNBUSDT")
    check(not fresh.exists(), "the refused import created the store")


# --------------------------------------------------------------------------- issue 24
def _old_layout_copy(tmp: Path) -> Path:
    """The shared store's candles written as the previous release did: one file per symbol, format 2."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source, old = Store(shared("store-6x800", _build_store)), tmp / "old"
    (old / "klines" / "spot").mkdir(parents=True)
    (old / "STORE.json").write_text('{"format": "cryptograph-store", "version": 2}\n')
    for symbol in source.symbols("spot"):
        pq.write_table(pa.Table.from_pandas(source.klines(symbol), preserve_index=True),
                       old / "klines" / "spot" / f"{symbol}.parquet", compression="zstd", use_dictionary=False)
    return old


def commands_on_an_old_layout_store(tmp: Path) -> None:
    """info, repair and import-csv on a store of the previous release: one error line naming
    `migrate`, nothing written; `migrate` then converts it and every candle reads back."""
    old = _old_layout_copy(tmp)
    src = tmp / "src"
    dump_csv(shared("store-6x800", _build_store), "SYN01USDT", src, rows=50)
    before = files(old)
    command = f"python -m gnn_market.data migrate --store {old}"
    for argv in (["info"], ["repair"], ["import-csv", str(src)]):
        expect_error(invoke("gnn_market.data", *argv, "--store", str(old)), command)
    check(files(old) == before, "a refused command changed the old store")
    expect_ok(invoke("gnn_market.data", "migrate", "--store", str(old)))
    reference, migrated = Store(shared("store-6x800", _build_store)), Store(old)
    for symbol in reference.symbols("spot"):
        check(migrated.klines(symbol).equals(reference.klines(symbol)), f"{symbol} differs after migrate")


ATTEMPTS: list[Attempt] = [
    Attempt(AREA, 1, "two `repair` runs at once on a 745-row month file", two_repairs_at_once),
    Attempt(AREA, 2, "`repair` a klines file with int64 millisecond open_time", repair_int64_ms_times),
    Attempt(AREA, 2, "`repair` on a full disk", repair_on_a_full_disk),
    Attempt(AREA, 6, "import-csv into a store file that is a symbolic link", import_into_a_symlinked_store_file),
    Attempt(AREA, 7, "import-csv of 6 pairs, SYN01USDT's stored file breaks a rule",
            import_csv_with_one_bad_stored_file),
    Attempt(AREA, 7, "import-csv onto a disk that fills up at the third symbol", import_csv_onto_a_filling_disk),
    Attempt(AREA, 8, "import-csv of a newest-first file without --keep-last", import_a_newest_first_csv),
    *[Attempt(AREA, 9, f"writers on a store whose STORE.json is {kind}", _marker_attempt(kind)) for kind in MARKERS],
    Attempt(AREA, 11, "import-csv with a volume of 1e300", _value_attempt(_set(3, volume=1e300), "volume x close")),
    Attempt(AREA, 11, "import-csv with trades 1.5", _value_attempt(_set(3, trades=1.5), "trades", "non-integer")),
    Attempt(AREA, 11, "import-csv with taker_buy_volume above volume",
            _value_attempt(lambda f: f.assign(taker_buy_volume=f["volume"] * 1.5), "taker_buy_volume > volume")),
    Attempt(AREA, 11, "import-csv with an open of 1e-300",
            _value_attempt(_set(3, open=1e-300, low=1e-300), "price < 1e-10")),
    Attempt(AREA, 11, "import-csv with a low of 1e-300", _value_attempt(_set(3, low=1e-300), "price < 1e-10")),
    Attempt(AREA, 11, "import-csv of a header-only CSV", import_a_header_only_csv),
    Attempt(AREA, 11, "import-vision of a zip under folder SYNBUSDT named SYNAUSDT",
            import_a_zip_under_another_symbols_folder),
    Attempt(AREA, 0, "info, repair, import-csv, then migrate on a store of the previous release (issue 24)",
            commands_on_an_old_layout_store),
]
