"""PPO on CryptoGraph-v0, over seeds and observation sources, against four reference policies.

For each ``--obs-source`` (``gnn``: the encoder's probabilities and
embeddings; ``raw``: the normalised node features it reads) and each seed, a
Stable-Baselines3 PPO agent (``MlpPolicy`` on the flat observation) trains on
the first part of the environment's range and is evaluated deterministically
on the held-out rest, next to equal-weight buy-and-hold, all cash, GNN-greedy
(weights proportional to the positive part of P(UP) - P(DOWN), rebalanced
hourly) and random actions (one run per seed). PPO and random act through the
environment's turnover control; the rule-based policies trade exactly as they say.

The environment's default range starts after every hour the checkpoint's
training run used; on the bundled sample and the packaged checkpoint that is
September to December 2023: PPO trains on September-October, evaluation is
November-December.

    python examples/ppo_agent.py --timesteps 20000                 # one seed, GNN observations: a quick look
    python examples/ppo_agent.py --seeds 0 1 2 --obs-source gnn raw --out runs/ppo_study

Prints the table (mean ± sd over seeds); writes ``results.json``, ``results.md``,
``equity.png`` and the agents to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from envs.crypto_graph import CryptoGraphEnv
from envs.evaluation import (
    EpisodeResult,
    across_seeds,
    all_cash,
    equal_weight_buy_and_hold,
    format_seed_table,
    gnn_greedy,
    random_policy,
    run_policy,
    run_summary,
    sb3_policy,
)
from envs.factory import make_crypto_graph_env
from envs.sb3_progress import TqdmProgress
from envs.vector import env_fns
from gnn_market.cli import DefaultsHelpFormatter, OneLineParser, run_cli
from gnn_market.errors import DataError

DETERMINISTIC = {"equal_weight": equal_weight_buy_and_hold, "cash": all_cash, "gnn_greedy": gnn_greedy}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="examples/ppo_agent.py", description=__doc__, formatter_class=DefaultsHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="PPO (and random policy) seeds")
    p.add_argument("--obs-source", nargs="+", choices=["gnn", "raw"], default=["gnn"],
                   help="observation sources to train PPO on")
    p.add_argument("--timesteps", type=int, default=200_000, help="PPO environment steps per run")
    p.add_argument("--store", help="market store folder (default: the bundled sample)")
    p.add_argument("--checkpoint", help="encoder checkpoint (default: the packaged one)")
    p.add_argument("--fee-bps", type=float, default=10.0, help="fee per unit of turnover, basis points")
    p.add_argument("--rebalance-threshold", type=float, help="no-trade band (default: the environment's, 0.05)")
    p.add_argument("--rebalance-rate", type=float, help="share of the way to the target per trading step (default: the environment's, 0.5)")
    p.add_argument("--rebalance-every", type=int, help="trade every k hours (default: the environment's, 4)")
    p.add_argument("--n-envs", type=int, default=4, help="parallel training environments")
    p.add_argument("--subproc", action="store_true", help="one process per environment (SubprocVecEnv)")
    p.add_argument("--train-fraction", type=float, default=0.5, help="share of the range PPO trains on")
    p.add_argument("--episode-hours", type=int, default=168, help="training episode length")
    p.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard logs to DIR")
    p.add_argument("--out", type=Path, default=Path("runs/ppo_agent"), help="output folder")
    return p.parse_args(argv)


def split_hour(times: pd.DatetimeIndex, fraction: float) -> pd.Timestamp:
    """First UTC midnight at or after ``fraction`` of the range: train before it, evaluate from it."""
    cut = times[int(len(times) * fraction)].ceil("D")
    if not times[0] < cut <= times[-2]:
        raise DataError(f"cannot split {times[0]} .. {times[-1]} at {fraction:.0%}")
    return cut


def train(env: CryptoGraphEnv, seed: int, args: argparse.Namespace,
          worker_env: Callable[[], CryptoGraphEnv] | None = None) -> PPO:
    """PPO with SB3's defaults except a rollout sized for a few thousand hours of data.

    ``worker_env`` (with ``--subproc``) makes the training environment in each worker process;
    without it every environment is a copy of ``env`` in this process.
    """
    torch.manual_seed(seed)
    if args.subproc:
        vec = make_vec_env(worker_env, n_envs=args.n_envs, seed=seed, vec_env_cls=SubprocVecEnv)
    else:
        vec = make_vec_env(lambda: env.subrange(), n_envs=args.n_envs, seed=seed, vec_env_cls=DummyVecEnv)
    n_steps = max(8, min(512, args.timesteps // args.n_envs))  # tiny --timesteps: a short rollout, not 512
    model = PPO("MlpPolicy", vec, n_steps=n_steps, batch_size=min(256, n_steps * args.n_envs), n_epochs=5,
                learning_rate=3e-4, gamma=0.99, ent_coef=0.0, seed=seed, device="cpu", verbose=0,
                tensorboard_log=args.tensorboard, policy_kwargs={"net_arch": [128, 128]})
    model.learn(total_timesteps=args.timesteps, callback=TqdmProgress(args.timesteps, desc=f"PPO seed {seed}"))
    vec.close()
    return model


def plot_equity(curves: dict[str, list[EpisodeResult]], path: Path) -> None:
    """Every policy's equity curve; over several seeds the mean and a min-max band."""
    fig = Figure(figsize=(9, 4.5))  # no pyplot: no GUI backend, no global figure state
    ax = fig.subplots()
    for name, runs in curves.items():
        v = np.stack([r.values / r.values[0] for r in runs])
        line, = ax.plot(runs[0].times, v.mean(axis=0), label=name if len(runs) == 1 else f"{name} ({len(runs)} seeds)",
                        lw=1.2)
        if len(runs) > 1:
            ax.fill_between(runs[0].times, v.min(axis=0), v.max(axis=0), color=line.get_color(), alpha=0.2, lw=0)
    ax.set_ylabel("portfolio value (start = 1)")
    banded = any(len(runs) > 1 for runs in curves.values())
    ax.set_title("CryptoGraph-v0, held-out range (deterministic PPO"
                 + ("; mean over seeds, band = min..max)" if banded else ")"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None, **env_kwargs: Any) -> dict[str, Any]:
    """Run the study; ``env_kwargs`` go to every ``make_crypto_graph_env`` call (tests pass fakes)."""
    args = parse_args(argv)
    if args.tensorboard:
        try:  # an optional dependency, needed only with this flag: checked before the long run
            import tensorboard  # noqa: F401  (SB3 writes its logs through it)
        except ImportError:
            raise DataError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    # A 2-layer MLP is too small for intra-op threads: their synchronisation costs more than it
    # saves, and on a busy machine it slows PPO down by 20x. One thread per process.
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    control = {k: v for k in ("rebalance_threshold", "rebalance_rate", "rebalance_every")
               if (v := getattr(args, k)) is not None}

    # One environment per observation source over the same range (GNN outputs encoded once, cached).
    make_kwargs = {src: dict(store=args.store, checkpoint=args.checkpoint, fee_bps=args.fee_bps, obs_source=src,
                             **control, **env_kwargs) for src in dict.fromkeys(["gnn", *args.obs_source])}
    full = {src: make_crypto_graph_env(**kwargs) for src, kwargs in make_kwargs.items()}
    cut = split_hour(full["gnn"].times, args.train_fraction)
    test = {src: env.subrange(start=cut, episode_hours=None) for src, env in full.items()}
    ref = test["gnn"]
    print(f"{len(ref.symbols)} pairs; train {full['gnn'].times[0]:%Y-%m-%d} .. {cut - pd.Timedelta(hours=1):%Y-%m-%d %H:%M}, "
          f"test {ref.times[0]:%Y-%m-%d} .. {ref.times[-1]:%Y-%m-%d %H:%M} ({time.perf_counter() - t0:.0f} s)")

    curves: dict[str, list[EpisodeResult]] = {}
    for src in args.obs_source:
        train_range = {"end": cut - pd.Timedelta(hours=1), "episode_hours": args.episode_hours}
        train_env = full[src].subrange(**train_range)
        # --subproc: workers rebuild the environment from its arguments and map the encoder cache,
        # rather than receive a pickled copy of this one's arrays
        worker_env = env_fns(1, subrange=train_range, **make_kwargs[src])[0] if args.subproc else None
        for seed in args.seeds:
            t1 = time.perf_counter()
            model = train(train_env, seed, args, worker_env)
            model.save(args.out / f"ppo_{src}_seed{seed}")
            curves.setdefault(f"ppo_{src}", []).append(run_policy(test[src], sb3_policy(model)))
            print(f"ppo_{src} seed {seed}: {args.timesteps:,} steps in {time.perf_counter() - t1:.0f} s")
    for name, policy in DETERMINISTIC.items():
        curves[name] = [run_policy(ref, policy)]
    curves["random"] = [run_policy(ref, random_policy(seed)) for seed in args.seeds]

    rows = {name: across_seeds([run_summary(r) for r in runs], args.seeds, deterministic=name in DETERMINISTIC)
            for name, runs in curves.items()}
    title = (f"Held-out {ref.times[0]:%Y-%m-%d} .. {ref.times[-1]:%Y-%m-%d} ({len(ref.times) - 1} hours, "
             f"{len(ref.symbols)} pairs, fee {args.fee_bps:g} bps, PPO {args.timesteps:,} steps; "
             f"mean ± sd over seeds {args.seeds})")
    table = format_seed_table(rows, title)
    print("\n" + table + "\n")
    results = {"policies": rows, "test_range": [ref.times[0].isoformat(), ref.times[-1].isoformat()],
               "timesteps": args.timesteps, "options": ref.metadata["options"]}
    (args.out / "results.json").write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    (args.out / "results.md").write_text(table + "\n")
    plot_equity(curves, args.out / "equity.png")
    print(f"{args.out / 'results.json'}, equity curves {args.out / 'equity.png'}; {time.perf_counter() - t0:.0f} s")
    return results


def cli(argv: Sequence[str] | None = None) -> int:
    """The command line: a bad store, checkpoint or option is one ``error:`` line and exit 2."""
    main(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(cli))
