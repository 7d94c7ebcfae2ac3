"""Turnover control grid: GNN-greedy and random actions through the control, per setting.

On the default environment (bundled sample, packaged checkpoint, 2023-09-01 ..
12-30, 10 bps), for each (rebalance_threshold b, rebalance_rate r,
rebalance_every k): net and gross return and mean hourly turnover of
GNN-greedy routed through the control and of uniformly random actions (seed 0).
The table behind the defaults in docs/environment.md.

    python benchmarks/turnover_grid.py [--out FILE]

Prints the table and writes ``benchmarks/results/local/turnover_grid.json`` (ignored by git).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from envs.evaluation import gnn_greedy, random_policy, run_policy, run_summary
from envs.factory import make_crypto_graph_env

ROOT = Path(__file__).resolve().parents[1]
LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"
GRID = [(0, 1, 1), (0.05, 0.5, 1), (0.1, 0.5, 1), (0.05, 0.25, 1), (0.1, 0.25, 1), (0.05, 1, 4), (0.05, 0.5, 4)]


def controlled(policy):
    """A weights policy whose targets go through the environment's turnover control, as an agent's do."""
    def act(env, obs):
        return env._control(np.asarray(policy(env, obs), dtype=np.float64))[0]
    return act


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=LOCAL_RESULTS / "turnover_grid.json", help="JSON output")
    args = p.parse_args()
    rows = []
    base = make_crypto_graph_env()
    print(f"range {base.times[0]} .. {base.times[-1]}")
    print(f"{'b':>5} {'r':>5} {'k':>3} | {'policy':<8} {'net':>8} {'gross':>8} {'turnover/h':>10}")
    for b, r, k in GRID:
        env = base.subrange(rebalance_threshold=b, rebalance_rate=r, rebalance_every=k)
        for name, policy in (("greedy", controlled(gnn_greedy)), ("random", random_policy(0))):
            m = run_summary(run_policy(env, policy))
            rows.append({"b": b, "r": r, "k": k, "policy": name, "net_return": m["total_return"],
                         "gross_return": m["gross_return"], "turnover": m["mean_turnover"]})
            print(f"{b:>5} {r:>5} {k:>3} | {name:<8} {m['total_return']:>+8.1%} {m['gross_return']:>+8.1%} "
                  f"{m['mean_turnover']:>10.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"range": [str(base.times[0]), str(base.times[-1])], "rows": rows}, indent=2)
                        + "\n")


if __name__ == "__main__":
    main()
