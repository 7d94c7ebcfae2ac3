"""python -m gnn_market.predict: formats, latest vs given hour, errors."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from gnn_market.checkpoint import load_checkpoint
from gnn_market.cli import run_cli
from gnn_market.panel import load_panel
from gnn_market.predict import main

from train_fixtures import TINY_MARKET, tiny_checkpoint, tiny_store


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    store = tiny_store(root)
    return store, tiny_checkpoint(root, store.root)


def predict(trained, capsys, *extra: str) -> tuple[int, str, str]:
    store, ckpt = trained
    code = run_cli(main, ["--store", str(store.root), "--checkpoint", str(ckpt), *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_has_every_pair_at_the_latest_hour(trained, capsys) -> None:
    code, out, err = predict(trained, capsys, "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    last = load_panel(trained[0]).times[-1]
    assert doc["time"] == last.isoformat()
    assert doc["predicted_candle"] == (last + np.timedelta64(1, "h")).isoformat()
    assert [p["symbol"] for p in doc["pairs"]] == TINY_MARKET.symbols
    weights = np.asarray(load_checkpoint(trained[1]).decision_rule["weights"])
    for p in doc["pairs"]:
        assert p["valid"] is True
        probs = [p["p_down"], p["p_sideways"], p["p_up"]]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        # the checkpoint's decision rule (chosen on validation), not plain argmax
        assert p["prediction"] == ("DOWN", "SIDEWAYS", "UP")[int(np.argmax(weights * np.asarray(probs)))]


def test_table_and_csv_agree_and_time_is_honoured(trained, capsys) -> None:
    hour = load_panel(trained[0]).times[300].isoformat()
    code, table, _ = predict(trained, capsys, "--time", hour)
    assert code == 0 and hour in table and table.count("USDT") == TINY_MARKET.n_symbols
    code, text, _ = predict(trained, capsys, "--time", hour, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert code == 0 and len(rows) == TINY_MARKET.n_symbols and rows[0]["time"] == hour
    code, doc, _ = predict(trained, capsys, "--time", hour, "--format", "json")
    first = json.loads(doc)["pairs"][0]
    assert float(rows[0]["p_up"]) == pytest.approx(first["p_up"], abs=1e-6)
    assert f"{first['p_up']:.3f}" in table


def test_errors_are_one_line(trained, capsys, tmp_path) -> None:
    code, _, err = predict(trained, capsys, "--time", "1999-01-01T00:00")
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    code, _, err = predict(trained, capsys, "--symbols", "NOPEUSDT")
    assert code == 2 and "NOPEUSDT" in err
    code = run_cli(main, ["--store", str(trained[0].root), "--checkpoint", str(tmp_path / "none.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "not found" in err


@pytest.mark.parametrize("argv, words", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--format", "xml"], "invalid choice: 'xml'"),
    (["--interval", "soon"], "--interval"),
    (["--store", "a", "--data", "synthetic"], "not allowed with argument"),
])
def test_argument_errors_are_one_error_line_not_the_usage_block(capsys, argv, words) -> None:
    """Issue 21 item 16: argparse printed its whole usage block (10-24 lines) here; data printed one line."""
    code = run_cli(main, argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: python -m gnn_market.predict: "), lines
    assert words in lines[0] and lines[0].endswith("(see --help)")


def test_a_range_that_ends_before_it_starts_or_lies_outside_the_data_says_so(capsys):
    """Found by a break-it probe: start > end read "no hours between A and B", and an open end "and None"."""
    from gnn_market.cli import run_cli
    from gnn_market.predict import main

    assert run_cli(main, ["--start", "2023-12-30", "--end", "2023-12-01", "--out", "unused.csv"]) == 2
    assert "starts at 2023-12-30 00:00:00+00:00, after its end 2023-12-01" in capsys.readouterr().err
    assert run_cli(main, ["--start", "2030-01-01", "--out", "unused.csv"]) == 2
    err = capsys.readouterr().err
    assert "no hours from 2030-01-01 00:00:00+00:00 in the data" in err and "None" not in err
