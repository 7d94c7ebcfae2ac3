"""Benchmark: memory and steps/s of 1, 4 and 8 ``CryptoGraph-v0`` workers under SB3's ``SubprocVecEnv``.

Side by side, on one seeded synthetic spot market and the packaged checkpoint:

* ``shared`` (what :func:`envs.vector.env_fns` does): the range is encoded once,
  in the parent, into the encoder cache; every worker memory-maps that entry;
* ``naive`` (the reference): ``use_cache=False``, every worker encodes its own copy.

Each configuration runs in a fresh Python process (so one run's memory does not
linger into the next) that builds the vectorised environment, resets it, and
takes ``--steps`` vectorised steps with random actions. Reported per run:

* ``build_s``: from the first call to the reset of every worker (encoding included);
* ``pss_mb`` / ``rss_mb``: total proportional / resident set size of the parent and
  every process under it (workers, the forkserver, the resource tracker), after the
  steps. PSS divides a shared page among the processes mapping it, so the sum is the
  memory really used; RSS counts a shared page once per process;
* ``env_steps_per_s``: ``n_envs x steps / seconds`` of the stepping loop.

Prints a table and writes ``benchmarks/results/local/vec_env.json`` (ignored by git;
``--out benchmarks/results/vec_env.json`` updates the published figures).

    python benchmarks/bench_vec_env.py [--pairs 30] [--hours 2160] [--envs 1 4 8] [--steps 2000]
                                       [--start-method forkserver|fork|spawn] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
#: Default output: an ignored folder, so running a benchmark never dirties the checkout.
LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"
MODES = ("shared", "naive")


def tree_memory(pid: int) -> tuple[float, float, int]:
    """(total PSS MB, total RSS MB, process count) of ``pid`` and all its descendants."""
    import psutil

    root = psutil.Process(pid)
    pss = rss = 0
    procs = [root, *root.children(recursive=True)]
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        pss += info.pss
        rss += info.rss
    return pss / 2**20, rss / 2**20, len(procs)


def run_one(mode: str, n_envs: int, store: str, cache: str, steps: int, start_method: str, obs_mode: str) -> dict:
    """One configuration, in this (fresh) process; returns its measurements."""
    import numpy as np
    import torch  # noqa: F401  (a training process holds torch for its agent whatever the mode)
    from stable_baselines3.common.vec_env import SubprocVecEnv

    import envs.factory  # noqa: F401
    from envs.vector import env_fns

    kwargs = dict(store=store, cache_dir=cache, episode_hours=168, use_cache=mode == "shared", obs_mode=obs_mode)
    t0 = time.perf_counter()
    fns = env_fns(n_envs, warm=mode == "shared", **kwargs)
    vec = SubprocVecEnv(fns, start_method=start_method)
    try:
        vec.seed(0)
        vec.reset()
        build_s = time.perf_counter() - t0
        actions = np.random.default_rng(0).uniform(-1, 1, (steps, n_envs, vec.action_space.shape[0]))
        actions = actions.astype(np.float32)
        t0 = time.perf_counter()
        for a in actions:
            vec.step(a)
        elapsed = time.perf_counter() - t0
        pss, rss, n_procs = tree_memory(os.getpid())
        space = vec.observation_space
        obs_floats = int(sum(int(np.prod(s.shape)) for s in space.spaces.values()) if obs_mode == "dict"
                         else np.prod(space.shape))
    finally:
        vec.close()
    entry = [p for p in Path(cache).glob("encoded-*")] if mode == "shared" else []
    encoded_mb = sum(f.stat().st_size for e in entry for f in e.iterdir()) / 2**20
    return {"mode": mode, "obs_mode": obs_mode, "n_envs": n_envs, "build_s": round(build_s, 2), "pss_mb": round(pss, 1),
            "rss_mb": round(rss, 1), "processes": n_procs, "env_steps_per_s": round(n_envs * steps / elapsed, 1),
            "obs_floats": obs_floats, "encoded_entry_mb": round(encoded_mb, 2)}


def save(args: argparse.Namespace, rows: list[dict]) -> None:
    """Write the rows so far, with the settings and the machine's state, atomically to ``args.out``."""
    from gnn_market.atomic import write_text_atomic

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    result = {"benchmark": "bench_vec_env", "pairs": args.pairs, "hours": args.hours, "steps": args.steps,
              "start_method": args.start_method, "checkpoint": "packaged", "rows": rows,
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "load_average_at_last_row": load, "platform": platform.platform()},
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=30)
    p.add_argument("--hours", type=int, default=2160, help="hours of the synthetic market (90 days)")
    p.add_argument("--envs", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--steps", type=int, default=2000, help="vectorised steps timed per run")
    p.add_argument("--start-method", default="forkserver", choices=("forkserver", "fork", "spawn"),
                   help="SubprocVecEnv start method (SB3's default is forkserver)")
    p.add_argument("--obs-modes", nargs="+", default=["flat", "dict"], choices=("flat", "dict"))
    p.add_argument("--out", type=Path, default=LOCAL_RESULTS / "vec_env.json", help="JSON output")
    p.add_argument("--one", nargs=5, metavar=("MODE", "N", "STORE", "CACHE", "OBS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:  # a child run: print one JSON line
        mode, n, store, cache, obs_mode = args.one
        print(json.dumps(run_one(mode, int(n), store, cache, args.steps, args.start_method, obs_mode)))
        return 0

    from gnn_market.synthetic import SyntheticConfig, write_synthetic_store

    work = Path(tempfile.mkdtemp(prefix="bench-vec-env-"))
    config = SyntheticConfig(n_symbols=args.pairs, hours=args.hours, seed=0)
    store = write_synthetic_store(work / "store", config)
    rows = []
    for obs_mode in args.obs_modes:
        for n in args.envs:
            for mode in MODES:  # interleaved: the shared machine's load hits both alike
                cache = work / f"cache-{mode}-{n}-{obs_mode}"  # fresh: the shared run pays its one encoding
                cmd = [sys.executable, __file__, "--steps", str(args.steps), "--start-method", args.start_method,
                       "--one", mode, str(n), str(store.root), str(cache), obs_mode]
                done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                if done.returncode != 0:
                    print(done.stderr, file=sys.stderr)
                    shutil.rmtree(work, ignore_errors=True)
                    return 1
                row = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append(row)
                save(args, rows)  # after every configuration: an interrupted run keeps what it measured
                print(f"  {obs_mode} {mode:>6} x{n}: build {row['build_s']:6.1f} s  PSS {row['pss_mb']:7.0f} MB  "
                      f"RSS {row['rss_mb']:7.0f} MB  {row['env_steps_per_s']:8.0f} env steps/s", flush=True)
    shutil.rmtree(work, ignore_errors=True)

    print(f"\n{args.pairs} pairs x {args.hours} hours, {args.steps} vectorised steps, SubprocVecEnv "
          f"start_method={args.start_method}\n")
    print("| obs | envs | mode | build (s) | total PSS (MB) | total RSS (MB) | env steps/s |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['obs_mode']} | {r['n_envs']} | {r['mode']} | {r['build_s']:.1f} | {r['pss_mb']:,.0f} | {r['rss_mb']:,.0f} | "
              f"{r['env_steps_per_s']:,.0f} |")
    save(args, rows)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
