"""Issue 11: predict reported a pair whose latest candle is forward-filled as plainly valid. The encoder
knows (Panel.filled); every output format now carries a ``filled`` flag."""
from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from gnn_market.cli import run_cli
from gnn_market.encoder import EncodedRange, GraphEncoder
from gnn_market.export import load_encoded, load_encoded_dir, save_encoded, save_encoded_dir
from gnn_market.panel import load_panel
from gnn_market.predict import main as predict_main
from gnn_market.store import Store

from train_fixtures import TINY_MARKET, tiny_checkpoint, tiny_store

GAP = TINY_MARKET.symbols[3]  # its last two candles are missing: forward-filled (max_fill_hours = 3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("filled")
    store = tiny_store(root)
    ckpt = tiny_checkpoint(root, store.root)
    gapped = root / "gapped"
    shutil.copytree(store.root, gapped)
    st = Store(gapped)
    frame = st.klines(GAP)
    shutil.rmtree(next((gapped / "klines").rglob(f"symbol={GAP}")))  # every month file of its candles
    st.write_klines(GAP, frame.iloc[:-2])
    return st, ckpt


def test_encoder_marks_forward_filled_pairs(trained) -> None:
    store, ckpt = trained
    panel = load_panel(store)
    i = panel.symbols.index(GAP)
    assert panel.filled[-2:, i].all() and not panel.filled[:-2, i].any()
    out = GraphEncoder.load(ckpt).encode_range(store.root, start=panel.times[-5])
    assert out.filled.shape == out.mask.shape and out.filled.dtype == bool
    np.testing.assert_array_equal(out.filled, panel.filled[-5:] & out.mask)
    assert out.filled[-1, i] and out.mask[-1, i] and out.filled.sum() == 2
    frame = out.to_frame(embeddings=False)
    flagged = frame[frame["filled"]]
    assert list(flagged["symbol"]) == [GAP, GAP] and list(flagged["time"]) == list(panel.times[-2:])


def test_every_output_format_carries_the_flag(trained, tmp_path, capsys) -> None:
    store, ckpt = trained
    base = ["--store", str(store.root), "--checkpoint", str(ckpt)]
    assert run_cli(predict_main, [*base, "--format", "json"]) == 0
    pairs = {p["symbol"]: p for p in json.loads(capsys.readouterr().out)["pairs"]}
    assert pairs[GAP]["filled"] is True and pairs[GAP]["valid"] is True
    assert not any(p["filled"] for s, p in pairs.items() if s != GAP)
    assert run_cli(predict_main, [*base, "--format", "csv"]) == 0
    rows = {r["symbol"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert rows[GAP]["filled"] == "True" and rows[TINY_MARKET.symbols[0]]["filled"] == "False"
    assert run_cli(predict_main, base) == 0
    table = capsys.readouterr().out
    assert [line for line in table.splitlines() if "(filled candle)" in line][0].startswith(GAP)
    for suffix in (".parquet", ".csv", ".npz"):
        path = tmp_path / f"p{suffix}"
        assert run_cli(predict_main, [*base, "--start", "2024-01-20T00:00", "--out", str(path)]) == 0
        capsys.readouterr()
        if suffix == ".npz":
            flags = load_encoded(path).to_frame(embeddings=False)
        else:
            flags = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
        assert sorted(flags.loc[flags["filled"].astype(bool), "symbol"]) == [GAP, GAP]


def test_outputs_saved_before_the_flag_read_as_unknown(tmp_path) -> None:
    times = pd.date_range("2024-01-01", periods=2, freq="h", tz="UTC")
    old = EncodedRange(times, ["AUSDT"], np.full((2, 1, 3), 1 / 3, np.float32), np.zeros((2, 1, 2), np.float32),
                       np.ones((2, 1), bool))
    assert old.to_frame()["filled"].isna().all()
    save_encoded(old, tmp_path / "old.npz")
    assert load_encoded(tmp_path / "old.npz").filled is None
    folder = save_encoded_dir(old, tmp_path / "dir")
    assert load_encoded_dir(folder).filled is None
    new = EncodedRange(old.times, old.symbols, old.probs, old.embeddings, old.mask,
                       filled=np.array([[False], [True]]))
    np.testing.assert_array_equal(load_encoded_dir(save_encoded_dir(new, tmp_path / "d2")).filled, new.filled)
