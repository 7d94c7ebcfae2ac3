"""Turnover control grid: GNN-greedy and random actions through the control, per setting.

On the bundled sample with the packaged checkpoint (10 bps), over ``--start`` ..
``--end`` (default 2023-09-01 .. 09-30: the one month of the sample's RL range
outside every PPO evaluation window -- the sample study evaluates Nov-Dec 2023,
the three-year study Oct-Dec 2023), for each (rebalance_threshold b, rebalance_rate r,
rebalance_every k): net and gross return and mean hourly turnover of
GNN-greedy routed through the control and of uniformly random actions (seed 0).
The table behind the defaults in docs/environment.md.

Choice rule (fixed before looking): the setting with the highest mean of the two
policies' net returns; ``chosen`` in the JSON.

    python benchmarks/turnover_grid.py [--start 2023-09-01] [--end 2023-09-30T23:00] [--out FILE]

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
    p.add_argument("--start", default="2023-09-01", help="first hour (UTC)")
    p.add_argument("--end", default="2023-09-30T23:00", help="last hour (UTC)")
    args = p.parse_args()
    rows = []
    base = make_crypto_graph_env(start=args.start, end=args.end, episode_hours=None)
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
    chosen = max(GRID, key=lambda g: np.mean([r["net_return"] for r in rows if (r["b"], r["r"], r["k"]) == g]))
    print(f"chosen (highest mean net return of the two policies): b={chosen[0]} r={chosen[1]} k={chosen[2]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"range": [str(base.times[0]), str(base.times[-1])], "rows": rows,
                                    "rule": "highest mean net return of greedy and random",
                                    "chosen": dict(zip("brk", chosen))}, indent=2) + "\n")


if __name__ == "__main__":
    main()
