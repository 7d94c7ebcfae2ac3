"""The package root's public API: every name resolves, and importing it (or asking a CLI for --help) stays light."""
from __future__ import annotations

import configparser
import json
import subprocess
import sys
from pathlib import Path

import pytest

import gnn_market

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torch_geometric")


def _loaded_after(code: str) -> dict[str, bool]:
    """Run ``code`` in a fresh interpreter; which heavy modules did it import?"""
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_public_name_resolves_to_its_module_object() -> None:
    from envs.factory import make_crypto_graph_env
    from gnn_market.encoder import GraphEncoder
    from gnn_market.model import GATv2Classifier
    from gnn_market.sources import open_store
    from gnn_market.store import Store
    from gnn_market.training.config import TrainConfig
    from gnn_market.training.run import run_training

    expected = {"GraphEncoder": GraphEncoder, "GATv2Classifier": GATv2Classifier, "open_store": open_store,
                "Store": Store, "TrainConfig": TrainConfig, "run_training": run_training,
                "make_crypto_graph_env": make_crypto_graph_env}
    for name, obj in expected.items():
        assert getattr(gnn_market, name) is obj
    for name in gnn_market.__all__:
        assert getattr(gnn_market, name) is not None, name
    assert set(gnn_market.__all__) <= set(dir(gnn_market))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        gnn_market.Nope  # noqa: B018


def test_version_has_one_value() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert gnn_market.__version__ == cfg["metadata"]["version"]


@pytest.mark.parametrize("code", [
    "import gnn_market",
    "from gnn_market import TrainConfig, Store, open_store, load_panel",
    "import gnn_market.training.config",
])
def test_light_imports_do_not_load_torch(code: str) -> None:
    assert _loaded_after(code) == dict.fromkeys(HEAVY, False)


def test_a_public_model_name_does_load_torch() -> None:
    # the probe must be able to fail: the heavy names really import torch
    assert _loaded_after("from gnn_market import GraphEncoder")["torch"] is True


@pytest.mark.parametrize("cli", ["gnn_market.train", "gnn_market.diagnose", "gnn_market.data",
                                 "gnn_market.predict"])
def test_cli_help_does_not_load_torch(cli: str) -> None:
    code = (f"from {cli} import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as stop:\n    assert stop.code == 0\n")
    assert _loaded_after(code) == dict.fromkeys(HEAVY, False)


def test_usage_names_the_program_that_was_run():
    from gnn_market.cli import program_name

    assert program_name("gnn_market.train", "/venv/bin/cryptograph-train") == "cryptograph-train"
    assert program_name("gnn_market.train", "/repo/gnn_market/train.py") == "python -m gnn_market.train"
    assert program_name("gnn_market.diagnose", "cryptograph-train") == "python -m gnn_market.diagnose"


def test_every_data_subcommand_describes_itself_and_shows_its_defaults():
    from gnn_market.data import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert set(commands) == {"backfill", "collect", "import-vision", "import-csv", "info", "repair", "migrate"}
    for name, sub in commands.items():
        assert sub.description, name
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings}"
    backfill = " ".join(commands["backfill"].format_help().split())
    assert "--workers WORKERS concurrent requests (default: 16)" in backfill
    assert "--store STORE store folder (created if missing)" in backfill
