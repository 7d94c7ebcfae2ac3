"""Benchmark: how long each command line takes to answer ``--help``, beside a naive eager-import reference.

Every CLI parses its arguments before importing torch or PyTorch Geometric
(issue 23; ``tests/test_public_api.py`` checks the imports through ``sys.modules``,
not with a clock). The reference is what an eager CLI paid: the same ``--help``
after ``import torch, torch_geometric``. Each command runs ``--repeat`` times in a
fresh interpreter; the median wall time is printed.

    python benchmarks/bench_cli_help.py [--repeat 5] [--out benchmarks/results/cli_help.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"

#: Each CLI as a user runs it (module form; the console scripts call the same ``cli``).
COMMANDS: dict[str, list[str]] = {
    "train": ["-m", "gnn_market.train", "--help"],
    "diagnose": ["-m", "gnn_market.diagnose", "--help"],
    "predict": ["-m", "gnn_market.predict", "--help"],
    "data": ["-m", "gnn_market.data", "--help"],
    "data collect": ["-m", "gnn_market.data", "collect", "--help"],
}
EAGER = "import torch, torch_geometric, runpy, sys; sys.argv = {argv!r}; runpy.run_module({module!r}, run_name='__main__')"


def seconds(argv: list[str]) -> float:
    """Wall time of ``python <argv>`` in a fresh interpreter; fails loudly if the command fails."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t0
    if done.returncode != 0 or "usage:" not in done.stdout:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return wall


def eager_argv(argv: list[str]) -> list[str]:
    """The reference: the same help after importing torch and PyG first."""
    module, rest = argv[1], argv[2:]
    return ["-c", EAGER.format(argv=[module, *rest], module=module)]


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per command; the median is reported")
    ap.add_argument("--out", default=str(LOCAL_RESULTS / "cli_help.json"), help="JSON output")
    args = ap.parse_args(argv)
    seconds([*eager_argv(COMMANDS["train"])])  # warm the disk cache for both paths alike
    rows = []
    for name, cmd in COMMANDS.items():
        lazy = median([seconds(cmd) for _ in range(args.repeat)])
        eager = median([seconds(eager_argv(cmd)) for _ in range(args.repeat)])
        rows.append({"command": name, "help_s": round(lazy, 3), "eager_import_s": round(eager, 3)})
    print(f"--help wall time, median of {args.repeat} fresh interpreters; load before: {os.getloadavg()[0]:.2f}")
    print(f"{'command':>18} {'--help':>8} {'eager torch+PyG':>16}")
    for r in rows:
        print(f"{r['command']:>18} {r['help_s']:>7.2f}s {r['eager_import_s']:>15.2f}s")
    result = {"repeat": args.repeat, "rows": rows, "loadavg": os.getloadavg(), "python": platform.python_version(),
              "cpus": os.cpu_count(), "machine": platform.machine()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"saved {args.out}")
    return result


if __name__ == "__main__":
    main()
