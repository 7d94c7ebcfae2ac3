"""Encoder outputs to files: the long table, .parquet/.csv/.npz, atomic writes, the predict --out CLI."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from gnn_market.cli import run_cli
from gnn_market.encoder import EncodedRange, GraphEncoder
from gnn_market.errors import DataError
from gnn_market.export import load_encoded, load_encoded_dir, save_encoded, save_encoded_dir
from gnn_market.predict import main

from train_fixtures import TINY_MARKET, tiny_checkpoint, tiny_store


def hand_made(n_times: int = 3, n_pairs: int = 4, d: int = 5, seed: int = 0) -> EncodedRange:
    """Random outputs with one masked (pair, hour): zeros there, as the encoder gives."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(3), size=(n_times, n_pairs)).astype(np.float32)
    emb = rng.normal(size=(n_times, n_pairs, d)).astype(np.float32)
    mask = np.ones((n_times, n_pairs), bool)
    mask[1, 2] = False
    probs[~mask] = 0
    emb[~mask] = 0
    times = pd.date_range("2023-05-01", periods=n_times, freq="h", tz="UTC")
    return EncodedRange(times, [f"S{i}USDT" for i in range(n_pairs)], probs, emb, mask)


def test_to_frame_rows_follow_hours_then_pairs() -> None:
    enc = hand_made()
    frame = enc.to_frame()
    assert len(frame) == 3 * 4
    assert list(frame.columns[:7]) == ["time", "symbol", "p_down", "p_sideways", "p_up", "prediction", "valid"]
    for t in range(3):
        for i in range(4):
            row = frame.iloc[t * 4 + i]
            assert row["time"] == enc.times[t] and row["symbol"] == enc.symbols[i]
            assert row[["p_down", "p_sideways", "p_up"]].to_numpy(float) == pytest.approx(enc.probs[t, i])
            assert row[[f"emb_{k}" for k in range(5)]].to_numpy(float) == pytest.approx(enc.embeddings[t, i])
            if enc.mask[t, i]:
                assert row["prediction"] == ("DOWN", "SIDEWAYS", "UP")[int(enc.probs[t, i].argmax())]
            else:
                assert pd.isna(row["prediction"]) and not row["valid"]
    assert "emb_0" not in enc.to_frame(embeddings=False).columns


def test_npz_round_trip_is_exact(tmp_path) -> None:
    enc = hand_made()
    back = load_encoded(save_encoded(enc, tmp_path / "out.npz"))
    assert back.times.equals(enc.times) and back.symbols == enc.symbols and back.rule_weights is None
    for name in ("probs", "embeddings", "mask"):
        np.testing.assert_array_equal(getattr(back, name), getattr(enc, name))
    ruled = dataclasses.replace(enc, rule_weights=np.array([4.0, 1.0, 0.25]))
    back = load_encoded(save_encoded(ruled, tmp_path / "ruled.npz"))
    np.testing.assert_array_equal(back.rule_weights, ruled.rule_weights)
    assert back.to_frame()["prediction"].equals(ruled.to_frame()["prediction"])


def test_prediction_column_follows_the_decision_rule() -> None:
    enc = dataclasses.replace(hand_made(), rule_weights=np.array([4.0, 1.0, 0.25]))
    frame = enc.to_frame(embeddings=False)
    expect = np.argmax(enc.probs * np.array([4.0, 1.0, 0.25]), axis=-1).reshape(-1)
    valid = frame["valid"].to_numpy()
    assert (frame["prediction"].to_numpy()[valid] == np.array(["DOWN", "SIDEWAYS", "UP"])[expect][valid]).all()
    assert (expect != enc.probs.argmax(-1).reshape(-1))[valid].any()


def test_parquet_and_csv_hold_the_long_table(tmp_path) -> None:
    enc = hand_made()
    expected = enc.to_frame()
    parquet = pd.read_parquet(save_encoded(enc, tmp_path / "out.parquet"))
    pd.testing.assert_frame_equal(parquet, expected)
    csv = pd.read_csv(save_encoded(enc, tmp_path / "out.csv", embeddings=False))
    assert list(csv.columns) == list(enc.to_frame(embeddings=False).columns)
    assert csv["time"][0] == enc.times[0].isoformat()
    np.testing.assert_allclose(csv["p_up"], expected["p_up"], rtol=1e-5)


def test_bad_target_is_refused_and_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch) -> None:
    enc = hand_made()
    with pytest.raises(DataError, match="must end in"):
        save_encoded(enc, tmp_path / "out.xlsx")
    with pytest.raises(DataError, match="does not exist"):
        save_encoded(enc, tmp_path / "nope" / "out.npz")
    target = save_encoded(enc, tmp_path / "out.npz")
    before = target.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", disk_full)
    with pytest.raises(DataError, match="No space left"):
        save_encoded(hand_made(seed=1), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]  # no temporary file left behind


def test_corrupt_npz_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read encoder outputs"):
        load_encoded(bad)


def test_folder_round_trip_is_exact_and_memory_mapped(tmp_path) -> None:
    enc = hand_made()
    folder = save_encoded_dir(enc, tmp_path / "enc")
    assert sorted(p.name for p in folder.iterdir()) == ["embeddings.npy", "mask.npy", "probs.npy", "symbols.json",
                                                        "times.npy"]
    back = load_encoded_dir(folder)
    assert isinstance(back, EncodedRange) and back.times.equals(enc.times) and back.symbols == enc.symbols
    for name in ("probs", "embeddings", "mask"):
        arr = getattr(back, name)
        np.testing.assert_array_equal(arr, getattr(enc, name))
        assert isinstance(arr, np.memmap) and arr.mode == "r" and not arr.flags.writeable
        assert arr.dtype == getattr(enc, name).dtype
    in_memory = load_encoded_dir(folder, mmap=False)
    assert not isinstance(in_memory.probs, np.memmap)
    np.testing.assert_array_equal(in_memory.embeddings, enc.embeddings)


def test_folder_is_replaced_whole_and_bad_folders_are_clear_errors(tmp_path) -> None:
    folder = save_encoded_dir(hand_made(), tmp_path / "enc")
    mapped = load_encoded_dir(folder)
    newer = hand_made(n_times=5, seed=1)
    save_encoded_dir(newer, folder)  # replaces the folder while the old one is still mapped
    assert [p.name for p in tmp_path.iterdir()] == ["enc"]  # no temporary or old folder left
    np.testing.assert_array_equal(load_encoded_dir(folder).probs, newer.probs)
    np.testing.assert_array_equal(mapped.probs, hand_made().probs)  # the old mapping stays valid
    (folder / "mask.npy").unlink()
    with pytest.raises(DataError, match="cannot read encoder outputs"):
        load_encoded_dir(folder)
    save_encoded_dir(newer, folder)
    (folder / "probs.npy").write_bytes((folder / "probs.npy").read_bytes()[:-8])  # truncated
    with pytest.raises(DataError, match="cannot read encoder outputs"):
        load_encoded_dir(folder)
    save_encoded_dir(newer, folder)
    (folder / "symbols.json").write_text('["S0USDT"]')  # inconsistent with the arrays
    with pytest.raises(DataError, match="inconsistent shapes"):
        load_encoded_dir(folder)
    with pytest.raises(DataError, match="does not exist"):
        save_encoded_dir(newer, tmp_path / "nope" / "enc")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    store = tiny_store(root)
    return store, tiny_checkpoint(root, store.root)


def test_predict_exports_a_range_equal_to_encode_range(trained, tmp_path, capsys) -> None:
    store, ckpt = trained
    expected = GraphEncoder.load(ckpt).encode_range(store, start="2024-01-10", end="2024-01-11T23:00")
    out = tmp_path / "preds.parquet"
    code = run_cli(main, ["--store", str(store.root), "--checkpoint", str(ckpt),
                          "--start", "2024-01-10", "--end", "2024-01-11T23:00", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "48 hour(s)" in capsys.readouterr().out
    frame = pd.read_parquet(out)
    assert len(frame) == 48 * TINY_MARKET.n_symbols
    pd.testing.assert_frame_equal(frame, expected.to_frame())


def test_predict_range_needs_out_and_excludes_time(trained, capsys) -> None:
    store, ckpt = trained
    base = ["--store", str(store.root), "--checkpoint", str(ckpt)]
    assert run_cli(main, [*base, "--start", "2024-01-10"]) == 2
    assert "--out" in capsys.readouterr().err
    assert run_cli(main, [*base, "--start", "2024-01-10", "--time", "2024-01-11", "--out", "x.npz"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
