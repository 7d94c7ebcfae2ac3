"""examples/ppo_agent.py end to end on the fake panel and encoder: a few PPO steps, two seeds, both sources."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from env_fakes import FakeEncoder, make_panel

pytest.importorskip("stable_baselines3")
SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "ppo_agent.py"
FIELDS = {"net_return_mean", "net_return_sd", "gross_return_mean", "gross_return_sd", "sharpe_mean", "sharpe_sd",
          "max_drawdown_mean", "max_drawdown_sd", "turnover_mean", "turnover_sd", "seeds"}


@pytest.fixture
def ppo_agent():
    spec = importlib.util.spec_from_file_location("ppo_agent", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_writes_the_results_json_schema_table_and_plot(tmp_path, ppo_agent):
    import torch

    threads = torch.get_num_threads()
    try:
        ppo_agent.main(["--seeds", "0", "1", "--obs-source", "gnn", "raw", "--timesteps", "32", "--n-envs", "1",
                        "--out", str(tmp_path)], panel=make_panel(n_hours=300), encoder=FakeEncoder(),
                       use_cache=False)
    finally:
        torch.set_num_threads(threads)
    text = (tmp_path / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    policies = json.loads(text)["policies"]
    assert list(policies) == ["ppo_gnn", "ppo_raw", "equal_weight", "cash", "gnn_greedy", "random"]
    for name, row in policies.items():
        assert FIELDS <= set(row), name
        assert row["seeds"] == [0, 1]
        if name in ("equal_weight", "cash", "gnn_greedy"):
            assert row["net_return_sd"] == 0.0 and row["turnover_sd"] == 0.0
        else:  # two seeds: a sample sd
            assert isinstance(row["net_return_sd"], float) and math.isfinite(row["net_return_sd"])
        assert row["gross_return_mean"] >= row["net_return_mean"] - 1e-12
    cash = policies["cash"]
    assert cash["net_return_mean"] == 0.0 and cash["turnover_mean"] == 0.0
    assert cash["sharpe_mean"] is None and cash["sharpe_sd"] is None  # undefined: null, never NaN
    assert policies["equal_weight"]["turnover_mean"] > 0.0  # bought once
    assert (tmp_path / "equity.png").stat().st_size > 10_000
    assert (tmp_path / "ppo_raw_seed1.zip").is_file()
    assert "± " in (tmp_path / "results.md").read_text()


def test_subproc_workers_build_their_training_environment_from_the_cache(tmp_path, ppo_agent):
    """--subproc: PPO trains in worker processes that rebuild the environment (no pickled copy of its arrays)."""
    import torch

    threads = torch.get_num_threads()
    try:
        results = ppo_agent.main(["--timesteps", "32", "--n-envs", "2", "--subproc", "--out", str(tmp_path / "run")],
                                 panel=make_panel(n_hours=300), encoder=FakeEncoder(), cache_dir=tmp_path / "cache")
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "run" / "ppo_gnn_seed0.zip").is_file()
    assert math.isfinite(results["policies"]["ppo_gnn"]["net_return_mean"])


@pytest.mark.parametrize("args, words", [
    (["--store", "no/such/store"], "no/such/store"),
    (["--bogus"], "unrecognized arguments: --bogus (see --help)"),
    (["--timesteps", "many"], "--timesteps"),
])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, args, words):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(tmp_path / "out")], capture_output=True,
                          text=True, cwd=tmp_path, env={"PYTHONPATH": str(SCRIPT.parents[1]), "PATH": "/usr/bin:/bin"},
                          timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and words in lines[0]


def test_help_shows_every_default(ppo_agent, capsys):
    with pytest.raises(SystemExit) as done:
        ppo_agent.parse_args(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "usage: examples/ppo_agent.py" in out
    assert "(default: 200000)" in out and "(default: 10.0)" in out and "(default: 4)" in out
