"""PPO on CryptoGraph-v0: hourly allocation over crypto pairs seen through the GATv2 encoder.

Trains a Stable-Baselines3 PPO agent (``MlpPolicy`` on the flat observation)
on the first part of the environment's range and evaluates it
deterministically on the held-out rest, next to four simple policies:
equal-weight buy-and-hold, all cash, GNN-greedy (weights proportional to the
positive part of P(UP) - P(DOWN), rebalanced hourly) and random actions.

The environment's default range starts after the checkpoint's fit range, so
the encoder never saw any of these hours; on the bundled sample (2023) and the
packaged checkpoint that is September to December 2023: PPO trains on
September-October and is evaluated on November-December.

    python examples/ppo_agent.py                       # 1-3 min on 2 idle CPU cores (measured; docs/environment.md)
    python examples/ppo_agent.py --timesteps 500000 --n-envs 8 --tensorboard runs/tb

Prints one table; writes the agent, the equity-curve PNG and the table to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from matplotlib.figure import Figure
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from envs.crypto_graph import CryptoGraphEnv
from envs.evaluation import (
    EpisodeResult,
    all_cash,
    equal_weight_buy_and_hold,
    format_table,
    gnn_greedy,
    random_policy,
    run_policy,
    sb3_policy,
    summarize,
)
from envs.factory import make_crypto_graph_env


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timesteps", type=int, default=200_000, help="PPO environment steps (default 200k)")
    p.add_argument("--store", help="market store folder (default: the bundled sample)")
    p.add_argument("--checkpoint", help="encoder checkpoint (default: the packaged one)")
    p.add_argument("--fee-bps", type=float, default=10.0, help="fee per unit of turnover, basis points")
    p.add_argument("--n-envs", type=int, default=4, help="parallel training environments")
    p.add_argument("--subproc", action="store_true", help="one process per environment (SubprocVecEnv)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-fraction", type=float, default=0.5, help="share of the range PPO trains on")
    p.add_argument("--episode-hours", type=int, default=168, help="training episode length")
    p.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard logs to DIR")
    p.add_argument("--out", type=Path, default=Path("runs/ppo_agent"), help="output folder")
    return p.parse_args(argv)


def split_hour(times: pd.DatetimeIndex, fraction: float) -> pd.Timestamp:
    """First UTC midnight at or after ``fraction`` of the range: train before it, evaluate from it."""
    cut = times[int(len(times) * fraction)].ceil("D")
    if not times[0] < cut <= times[-2]:
        raise SystemExit(f"cannot split {times[0]} .. {times[-1]} at {fraction:.0%}")
    return cut


def train(env: CryptoGraphEnv, args: argparse.Namespace) -> PPO:
    """PPO with SB3's defaults except a rollout sized for a few thousand hours of data."""
    vec = make_vec_env(lambda: env.subrange(), n_envs=args.n_envs, seed=args.seed,
                       vec_env_cls=SubprocVecEnv if args.subproc else DummyVecEnv)
    model = PPO("MlpPolicy", vec, n_steps=512, batch_size=256, n_epochs=5, learning_rate=3e-4,
                gamma=0.99, ent_coef=0.0, seed=args.seed, device="cpu", verbose=0,
                tensorboard_log=args.tensorboard, policy_kwargs={"net_arch": [128, 128]})
    model.learn(total_timesteps=args.timesteps)
    vec.close()
    return model


def plot_equity(results: dict[str, EpisodeResult], path: Path) -> None:
    fig = Figure(figsize=(9, 4.5))  # no pyplot: no GUI backend, no global figure state
    ax = fig.subplots()
    for name, res in results.items():
        ax.plot(res.times, res.values / res.values[0], label=name, lw=1.2)
    ax.set_ylabel("portfolio value (start = 1)")
    ax.set_title("CryptoGraph-v0, held-out range (deterministic)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tensorboard:
        try:  # an optional dependency, needed only with this flag: checked before the long run
            import tensorboard  # noqa: F401  (SB3 writes its logs through it)
        except ImportError:
            raise SystemExit("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    torch.manual_seed(args.seed)
    # A 2-layer MLP is too small for intra-op threads: their synchronisation costs more than it
    # saves, and on a busy machine it slows PPO down by 20x. One thread per process.
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    # Encode the whole range once (cached on disk); train/test share those arrays.
    full = make_crypto_graph_env(store=args.store, checkpoint=args.checkpoint, fee_bps=args.fee_bps)
    cut = split_hour(full.times, args.train_fraction)
    train_env = full.subrange(end=cut - pd.Timedelta(hours=1), episode_hours=args.episode_hours)
    test_env = full.subrange(start=cut, episode_hours=None)
    print(f"{len(full.symbols)} pairs, embeddings d={full.embedding_dim}; "
          f"train {train_env.times[0]:%Y-%m-%d} .. {train_env.times[-1]:%Y-%m-%d %H:%M}, "
          f"test {test_env.times[0]:%Y-%m-%d} .. {test_env.times[-1]:%Y-%m-%d %H:%M} "
          f"(encoding {time.perf_counter() - t0:.0f} s)")

    t1 = time.perf_counter()
    model = train(train_env, args)
    model.save(args.out / "ppo_cryptograph")
    print(f"PPO: {args.timesteps:,} steps in {time.perf_counter() - t1:.0f} s -> {args.out / 'ppo_cryptograph.zip'}")

    policies = {
        "PPO (GNN observations)": sb3_policy(model),
        "equal-weight buy & hold": equal_weight_buy_and_hold,
        "all cash": all_cash,
        "GNN-greedy": gnn_greedy,
        "random": random_policy(args.seed),
    }
    results = {name: run_policy(test_env, policy) for name, policy in policies.items()}
    rows = {name: summarize(res) for name, res in results.items()}
    title = (f"Held-out {test_env.times[0]:%Y-%m-%d} .. {test_env.times[-1]:%Y-%m-%d} "
             f"({len(test_env.times) - 1} hours, {len(full.symbols)} pairs, fee {args.fee_bps:g} bps)")
    table = format_table(rows, title)
    print("\n" + table + "\n")
    plot_equity(results, args.out / "equity.png")
    (args.out / "results.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"equity curve {args.out / 'equity.png'}; {time.perf_counter() - t0:.0f} s total")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
