"""Every CLI's ``--help`` stays light (issue 23), and the light parsers show the real defaults.

Each ``--help`` runs as ``python -m <module> ...`` in a fresh interpreter (``runpy``, what ``-m``
uses); the check reads ``sys.modules`` afterwards, never a clock (the time is in
``benchmarks/bench_cli_help.py``). ``--help`` answers before the command's heavy modules load:
torch, PyG, scipy, python-binance and scikit-learn never; pandas and pyarrow
only where listed in :data:`PANDAS_ALLOWED` (the training settings hold ``pd.Timestamp`` defaults, and
``predict`` builds its parser beside the live-output modules): the data CLI and diagnose are
pandas-free, and a CLI not listed there fails if it starts importing pandas.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Never imported by any ``--help`` (``binance`` is python-binance, not ``gnn_market.binance``).
NEVER = ("torch", "torch_geometric", "scipy", "binance", "sklearn")
#: pandas and pyarrow: only the CLIs of :data:`PANDAS_ALLOWED` may import them for ``--help``.
SHARED = ("pandas", "pyarrow")
PANDAS_ALLOWED = {"gnn_market.train", "gnn_market.predict"}
DATA_COMMANDS = ("backfill", "collect", "import-vision", "import-csv", "info", "repair", "migrate")
CLIS = [("gnn_market.train",), ("gnn_market.train", "--diagnose"), ("gnn_market.diagnose",),
        ("gnn_market.predict",), ("gnn_market.data",), *(("gnn_market.data", c) for c in DATA_COMMANDS)]


def _run(code: str) -> tuple[dict, str]:
    """Run ``code`` in a fresh interpreter that ends by printing a JSON line; (that JSON, the rest of stdout)."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text, _, last = out.stdout.rstrip().rpartition("\n")
    return json.loads(last), text


def _loaded(names: tuple[str, ...]) -> str:
    return f"print('\\n' + json.dumps({{'loaded': sorted(m for m in {names!r} if m in sys.modules)}}))"


def help_run(module: str, *args: str) -> tuple[int, str, set[str]]:
    """``python -m module *args --help`` in a fresh interpreter: (exit code, stdout, heavy modules imported)."""
    code = ("import json, runpy, sys\n"
            f"sys.argv = [{module!r}, *{list(args)!r}, '--help']\n"
            "exit_code = 0\n"
            "try:\n"
            f"    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
            "except SystemExit as stop:\n"
            "    exit_code = stop.code or 0\n"
            f"loaded = sorted(m for m in {NEVER + SHARED!r} if m in sys.modules)\n"
            "print('\\n' + json.dumps({'loaded': loaded, 'code': exit_code}))\n")
    result, text = _run(code)
    return result["code"], text, set(result["loaded"])


@pytest.mark.parametrize("argv", CLIS, ids=" ".join)
def test_help_answers_without_importing_heavy_modules(argv):
    code, text, loaded = help_run(*argv)
    assert code == 0 and text.startswith("usage: "), text
    assert not loaded & set(NEVER), f"{' '.join(argv)} --help imports {sorted(loaded & set(NEVER))}"
    if argv[0] not in PANDAS_ALLOWED:
        assert not loaded & set(SHARED), f"{' '.join(argv)} --help imports {sorted(loaded & set(SHARED))}"


def test_the_probe_sees_a_heavy_import():
    # the check must be able to fail: running a data command (not --help) loads python-binance
    result, _ = _run("import json, sys\nimport gnn_market.data as d\nd.refresh_reference\n" + _loaded(NEVER))
    assert "binance" in result["loaded"]


def test_importing_the_data_cli_loads_no_command_module():
    result, _ = _run("import json, sys\nimport gnn_market.data\n"
                     "print(json.dumps({'loaded': [m for m in ('gnn_market.data_commands', 'gnn_market.binance.client', "
                     "'gnn_market.store', 'binance') if m in sys.modules]}))")
    assert result["loaded"] == []


# --------------------------------------------------------------------------- defaults: never drift
def _defaults(command: str) -> dict[str, object]:
    from gnn_market.data import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return {a.dest: a.default for a in sub._actions}


@pytest.mark.parametrize("command", ["backfill", "collect"])
def test_network_defaults_are_the_clients(command):
    from gnn_market.binance.client import ClientConfig

    real, shown = ClientConfig(), _defaults(command)
    assert (shown["spot_url"], shown["futures_url"], shown["timeout"], shown["retries"], shown["workers"]) == \
        (real.spot_url, real.futures_url, real.timeout, real.max_retries, real.max_workers)


def test_limits_shown_by_the_data_cli_are_the_real_ones():
    from gnn_market import data_defaults
    from gnn_market.data import build_parser
    from gnn_market.panel import BOOK_TOLERANCE
    from gnn_market.vision import MAX_MEMBER_BYTES

    assert data_defaults.BOOK_TOLERANCE_S == BOOK_TOLERANCE.total_seconds()
    assert data_defaults.MAX_MEMBER_BYTES == MAX_MEMBER_BYTES
    assert _defaults("import-vision")["max_member_mb"] == MAX_MEMBER_BYTES / 2 ** 20
    collect = next(a for a in build_parser()._actions if a.dest == "command").choices["collect"]
    assert f"(at most {BOOK_TOLERANCE.total_seconds():.0f}, the panel's window)" in " ".join(
        collect.format_help().split())


def test_diagnose_data_choices_are_the_sources():
    from gnn_market import diagnose
    from gnn_market.sources import DATA_SOURCES

    assert diagnose.DATA_SOURCES == DATA_SOURCES
    data = next(a for a in diagnose.build_parser()._actions if a.dest == "data")
    assert tuple(data.choices) == DATA_SOURCES


# --------------------------------------------------------------------------- old import paths keep working
def test_every_name_of_the_commands_module_is_importable_from_the_data_cli():
    import gnn_market.data as data
    import gnn_market.data_commands as commands

    public = [n for n in vars(commands) if not n.startswith("__")]
    assert {"refresh_reference", "refresh_any", "stops_collect", "cmd_backfill", "cmd_info", "format_info",
            "sync_symbol", "BOOK_TOLERANCE", "FailureStreak", "select", "make_client", "log"} <= set(public)
    for name in public:
        assert getattr(data, name) is getattr(commands, name), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        data.nope  # noqa: B018


def test_client_config_is_one_class_under_every_old_path():
    import gnn_market.binance as package
    import gnn_market.binance.client as client
    import gnn_market.binance.config as config

    assert package.ClientConfig is client.ClientConfig is config.ClientConfig
    assert package.BinanceClient is client.BinanceClient
    assert (package.SPOT, package.PERP) == ("spot", "perp")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        package.nope  # noqa: B018
