"""Issue 24 item 3: standard engines read the store as one table and get exactly what ``Store`` returns.

``pyarrow.dataset`` (``partitioning="hive"``) and DuckDB (``read_parquet(..., hive_partitioning=true)``)
read ``STORE/<kind>``; after selecting one (market, symbol), dropping the partition columns and
setting the time index, every row, value and dtype equals ``Store.klines`` / ``book`` / ``funding``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from gnn_market.store import Store
from gnn_market.store_schema import BOOK, FUNDING, KLINES
from gnn_market.synthetic import SyntheticConfig, write_synthetic_store

duckdb = pytest.importorskip("duckdb")  # in the `test` extra: CI runs it
PARTITIONS = ["market", "symbol", "month"]
SPECS = {"klines": KLINES, "book": BOOK, "funding": FUNDING}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """Spot and perp klines, book and funding over three months, with missing values in nullable columns."""
    config = SyntheticConfig(n_symbols=3, hours=24 * 70, seed=3, n_sectors=1, leaders_per_sector=1,
                             start="2024-01-20")
    store = write_synthetic_store(tmp_path_factory.mktemp("engines") / "store", config)
    gap = store.klines("SYN01USDT", "perp").copy()
    gap.loc[gap.index[5], "trades"] = pd.NA
    gap.loc[gap.index[6], "quote_volume"] = np.nan
    store.write_klines("SYN01USDT", gap, "perp")
    return store


def expected(store: Store, kind: str, market: str, symbol: str) -> pd.DataFrame:
    if kind == "klines":
        return store.klines(symbol, market)
    return store.book(symbol, market) if kind == "book" else store.funding(symbol)


def pairs(store: Store, kind: str) -> list[tuple[str, str]]:
    if kind == "funding":
        return [("perp", s) for s in store.funding_symbols()]
    listing = store.symbols if kind == "klines" else store.book_symbols
    return [(m, s) for m in ("spot", "perp") for s in listing(m)]


@pytest.mark.parametrize("kind", list(SPECS))
def test_pyarrow_dataset_reads_exactly_what_the_store_returns(store, kind):
    dataset = ds.dataset(store.root / kind, partitioning="hive")
    spec = SPECS[kind]
    value_fields = [(c, pa.int64() if t.lower() == "int64" else pa.float64()) for c, t in spec.columns.items()]
    assert dataset.schema.names == [*spec.columns, spec.index, *PARTITIONS]
    assert [dataset.schema.field(c).type for c, _ in value_fields] == [t for _, t in value_fields]
    assert dataset.schema.field(spec.index).type == pa.timestamp("ns", "UTC")
    assert all(dataset.schema.field(p).type == pa.string() for p in PARTITIONS)
    total = 0
    for market, symbol in pairs(store, kind):
        want = expected(store, kind, market, symbol)
        table = dataset.to_table(filter=(ds.field("market") == market) & (ds.field("symbol") == symbol))
        got = table.to_pandas()  # the files' pandas metadata makes the time column the index
        months = got.pop("month")
        assert (got.pop("market") == market).all() and (got.pop("symbol") == symbol).all()
        assert (months.to_numpy() == got.index.strftime("%Y-%m")).all()  # each row sits in its month's folder
        got = got.sort_index()
        pd.testing.assert_frame_equal(got, want, check_exact=True, check_freq=False)
        total += len(want)
    assert dataset.count_rows() == total > 0  # nothing but store rows in the dataset


@pytest.mark.parametrize("kind", list(SPECS))
def test_duckdb_reads_exactly_what_the_store_returns(store, kind):
    spec = SPECS[kind]
    glob = (store.root / kind).as_posix() + "/*/*/*/*.parquet"
    relation = duckdb.sql(f"select * from read_parquet('{glob}', hive_partitioning=true)")
    types = dict(zip(relation.columns, map(str, relation.types)))
    # the DuckDB here (2.0) keeps nanoseconds (TIMESTAMPTZ_NS); a version reading microseconds says TIMESTAMPTZ
    assert types.pop(spec.index) in ("TIMESTAMPTZ_NS", "TIMESTAMP WITH TIME ZONE")
    assert types == {**{c: "BIGINT" if t.lower() == "int64" else "DOUBLE" for c, t in spec.columns.items()},
                     "market": "VARCHAR", "month": "VARCHAR", "symbol": "VARCHAR"}
    total = 0
    for market, symbol in pairs(store, kind):
        want = expected(store, kind, market, symbol)
        query = (f"select * exclude (market, symbol, month) from read_parquet('{glob}', hive_partitioning=true) "
                 f"where market = '{market}' and symbol = '{symbol}' order by {spec.index}")
        table = duckdb.sql(query).arrow()
        if isinstance(table, pa.RecordBatchReader):
            table = table.read_all()
        got = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get) if "trades" in spec.columns \
            else table.to_pandas()
        got = got.set_index(spec.index)
        got.index = got.index.tz_convert("UTC").as_unit("ns")  # DuckDB names the zone Etc/UTC: the same instants
        assert got.index.name == spec.index
        pd.testing.assert_frame_equal(got, want, check_exact=True, check_freq=False)
        total += len(want)
    count = duckdb.sql(f"select count(*) from read_parquet('{glob}', hive_partitioning=true)").fetchall()[0][0]
    assert count == total > 0


def test_duckdb_aggregates_across_symbols_with_partition_pruning(store):
    """The docs' example: one query over every symbol, the symbol as a column."""
    glob = (store.root / "klines").as_posix() + "/*/*/*/*.parquet"
    got = duckdb.sql(f"""
        select symbol, count(*) as hours, sum(quote_volume) as quote
        from read_parquet('{glob}', hive_partitioning=true)
        where market = 'spot' and month >= '2024-02'
        group by symbol order by symbol""").df()
    want = []
    for symbol in store.symbols("spot"):
        k = store.klines(symbol, "spot", start="2024-02-01")
        want.append((symbol, len(k), k["quote_volume"].sum()))
    assert list(got["symbol"]) == [w[0] for w in want]
    assert list(got["hours"]) == [w[1] for w in want]
    np.testing.assert_allclose(got["quote"].to_numpy(), [w[2] for w in want], rtol=1e-12)
