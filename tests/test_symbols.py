"""A symbol listed twice is refused everywhere a list of symbols is taken (issue 11): it used to become
a duplicated graph node that changed the other pairs' probabilities. Never silently de-duplicated."""
from __future__ import annotations

import pytest

from envs.factory import make_crypto_graph_env
from gnn_market.cli import parse_symbols, run_cli
from gnn_market.errors import DataError
from gnn_market.panel import load_panel
from gnn_market.predict import main as predict_main
from gnn_market.store_schema import unique_symbols
from gnn_market.train import main as train_main
from gnn_market.training import TrainConfig

from env_fakes import FakeEncoder, make_panel
from train_fixtures import TINY_MARKET, tiny_checkpoint, tiny_store

A, B = TINY_MARKET.symbols[:2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("symbols")
    store = tiny_store(root)
    return store, tiny_checkpoint(root, store.root)


def test_parse_symbols_refuses_repeats_whatever_the_case() -> None:
    assert parse_symbols("btcusdt, ETHUSDT") == ["BTCUSDT", "ETHUSDT"]
    for text in ("BTCUSDT,BTCUSDT,ETHUSDT", "BTCUSDT,ETHUSDT,btcusdt", "ETHUSDT, ETHUSDT ,BTCUSDT,BTCUSDT"):
        with pytest.raises(DataError, match="--symbols lists .*BTCUSDT.* more than once") as err:
            parse_symbols(text)
    assert "BTCUSDT, ETHUSDT" in str(err.value)  # every repeated name, once each


def test_python_lists_are_checked_too() -> None:
    with pytest.raises(DataError, match="XUSDT more than once"):
        unique_symbols(["XUSDT", "YUSDT", "XUSDT"])
    with pytest.raises(DataError, match="must be a list of symbols, got the string"):
        unique_symbols("BTCUSDT")
    with pytest.raises(DataError, match="more than once"):
        TrainConfig(symbols=["XUSDT", "XUSDT"])
    panel = make_panel()
    with pytest.raises(DataError, match="P1USDT more than once"):
        panel.select(["P1USDT", "P0USDT", "P1USDT"])


def test_predict_refuses_a_repeated_symbol_and_other_pairs_are_unaffected(trained, capsys) -> None:
    store, ckpt = trained
    base = ["--store", str(store.root), "--checkpoint", str(ckpt), "--format", "csv"]
    code = run_cli(predict_main, [*base, "--symbols", f"{A},{A},{B}"])
    out = capsys.readouterr()
    assert code == 2 and out.out == "" and len(out.err.strip().splitlines()) == 1
    assert out.err.startswith(f"error: --symbols lists {A} more than once")
    assert run_cli(predict_main, [*base, "--symbols", f"{A},{B}"]) == 0
    two = capsys.readouterr().out
    assert two.count(A) == 1 and two.count(B) == 1


def test_load_panel_and_train_refuse_a_repeated_symbol(trained, tmp_path, capsys) -> None:
    store = trained[0]
    with pytest.raises(DataError, match=f"{A} more than once"):
        load_panel(store, symbols=[A, B, A])
    code = run_cli(train_main, ["--store", str(store.root), "--symbols", f"{B},{A},{B}", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: --symbols lists {B} more than once")
    assert not (tmp_path / "r").exists()


def test_env_refuses_a_repeated_symbol(trained) -> None:
    with pytest.raises(DataError, match=f"{A} more than once"):
        make_crypto_graph_env(store=trained[0].root, encoder=FakeEncoder(), symbols=[A, B, A], use_cache=False)
    env = make_crypto_graph_env(store=trained[0].root, encoder=FakeEncoder(), symbols=[B, A], use_cache=False,
                                allow_overlap=True)
    assert env.symbols == [B, A]
