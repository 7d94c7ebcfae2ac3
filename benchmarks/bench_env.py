"""Benchmark: CryptoGraph-v0 steps per second with 50 pairs, next to gym-anytrading's ``stocks-v0``.

Side by side in one process, same loop for both (actions drawn beforehand, so
action sampling is not timed; ``reset`` when an episode ends is timed):

* ``stocks-v0`` (gym-anytrading, one asset, Discrete(2) actions): the reference;
* ``CryptoGraph-v0`` with N = 50 pairs and the checkpoint's embeddings, flat and dict
  observations (``Box(51)`` softmax actions, fees, drift, ~50 x (d + 4)-float observations).

Both through ``gymnasium.make`` (the wrappers users get) and unwrapped. Also
times the one-off encoding of a year of hours (8,760 x 50 pairs) with the real
:class:`~gnn_market.encoder.GraphEncoder` on a seeded synthetic 50-pair market
(falls back to a random-weights GATv2 of the same size when no checkpoint can
be loaded, and says so). Target: at least half the reference's steps/s.

Prints a table and writes ``benchmarks/results/local/env.json`` (ignored by git;
``--out benchmarks/results/env.json`` updates the published figures).

    python benchmarks/bench_env.py [--steps 50000] [--pairs 50] [--hours 8760] [--checkpoint PATH]
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Batch, Data

import envs  # noqa: F401  (registers CryptoGraph-v0)
from envs.crypto_graph import CryptoGraphEnv
from envs.factory import make_crypto_graph_env
from envs.protocols import EncoderOutput
from gnn_market.encoder import EncodedRange, GraphEncoder
from gnn_market.model import GATv2Classifier, ModelConfig
from gnn_market.panel import Panel, load_panel
from gnn_market.synthetic import SyntheticConfig, write_synthetic_store

ROOT = Path(__file__).resolve().parents[1]
#: Default output: an ignored folder, so running a benchmark never dirties the checkout. Pass the
#: tracked file (``benchmarks/results/<name>.json``) explicitly to update the published figures.
LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"


def steps_per_second(env: gym.Env, actions: np.ndarray) -> float:
    """One timed loop of ``len(actions)`` steps (resetting when an episode ends)."""
    env.reset(seed=0)
    t0 = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    return len(actions) / (time.perf_counter() - t0)


def best_interleaved(contenders: dict[str, tuple[gym.Env, np.ndarray]], rounds: int) -> dict[str, float]:
    """Best steps/s of each environment over ``rounds`` rounds, taking turns within each round,
    so a burst of load from other processes hits every contender alike."""
    best = dict.fromkeys(contenders, 0.0)
    for _ in range(rounds):
        for name, (env, actions) in contenders.items():
            best[name] = max(best[name], steps_per_second(env, actions))
    return best


def reference_env(wrapped: bool) -> tuple[gym.Env, str]:
    try:  # not a dependency of the package: imported here so that a missing one is a clear message
        import gym_anytrading  # noqa: F401  (registers stocks-v0)
    except ImportError:
        raise SystemExit("gym-anytrading is not installed: pip install gym-anytrading==2.0.0") from None
    env = gym.make("stocks-v0")
    return (env if wrapped else env.unwrapped), f"gym-anytrading {_version('gym_anytrading')} stocks-v0"


def _version(dist: str) -> str:
    try:
        return version(dist.replace("_", "-"))
    except PackageNotFoundError:
        return "?"


def synthetic_panel(pairs: int, hours: int, warmup: int = 24 * 10) -> tuple[Panel, int]:
    """A seeded synthetic spot market of ``pairs`` pairs and ``hours`` + warm-up hours, as a Panel."""
    cfg = SyntheticConfig(n_symbols=pairs, hours=hours + warmup, with_book=False, with_funding=False)
    path = Path(tempfile.mkdtemp(prefix="bench-env-")) / "store"
    store = write_synthetic_store(path, cfg)
    return load_panel(store, market="spot"), warmup


class RandomGATv2Encoder:
    """Fallback when no checkpoint loads: a random-weights GATv2Classifier of the packaged size
    (hidden 64, 4 heads, 2 layers) on fully connected hourly graphs of random features."""

    market, checkpoint = "spot", None  # no checkpoint: no training ranges

    def __init__(self, in_channels: int = 24, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = GATv2Classifier(ModelConfig(in_channels=in_channels)).eval()
        self.in_channels, self.embedding_dim = in_channels, 64
        self.fit_range = (pd.Timestamp("1970-01-01", tz="UTC"), pd.Timestamp("1970-01-02", tz="UTC"))

    def fingerprint(self) -> None:
        return None  # random weights: never cached

    def encode_range(self, panel: Panel, start=None, end=None, batch_hours: int = 64,
                     progress: bool | None = False) -> EncodedRange:
        keep = np.ones(len(panel.times), bool)
        if start is not None:
            keep &= panel.times >= start
        if end is not None:
            keep &= panel.times <= end
        rows = np.flatnonzero(keep)
        n = len(panel.symbols)
        src, dst = np.meshgrid(np.arange(n), np.arange(n))
        ei = torch.as_tensor(np.stack([src.ravel(), dst.ravel()]), dtype=torch.long)
        gen = torch.Generator().manual_seed(0)
        probs = np.zeros((len(rows), n, 3), np.float32)
        emb = np.zeros((len(rows), n, 64), np.float32)
        with torch.no_grad():
            for i in range(0, len(rows), batch_hours):
                b = min(batch_hours, len(rows) - i)
                graphs = [Data(x=torch.randn(n, self.in_channels, generator=gen), edge_index=ei,
                               edge_attr=torch.rand(ei.shape[1], 1, generator=gen)) for _ in range(b)]
                batch = Batch.from_data_list(graphs)
                lp, z = self.model(batch.x, batch.edge_index, batch.edge_attr, batch.batch)
                probs[i:i + b] = lp.exp().view(b, n, 3).numpy()
                emb[i:i + b] = z.view(b, n, 64).numpy()
        return EncodedRange(times=panel.times[rows], symbols=list(panel.symbols), probs=probs,
                            embeddings=emb, mask=np.asarray(panel.mask)[rows])


def load_encoder(checkpoint: str | None):
    try:
        return GraphEncoder.load(checkpoint), "GraphEncoder (trained checkpoint)"
    except Exception as exc:  # noqa: BLE001 - any failure means: use the stand-in, and say so
        print(f"note: no checkpoint could be loaded ({exc}); timing a random-weights GATv2 instead")
        return RandomGATv2Encoder(), "random-weights GATv2Classifier (no checkpoint available)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (best is kept)")
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--hours", type=int, default=8760, help="hours to encode (a year)")
    p.add_argument("--checkpoint", help="encoder checkpoint (default: the packaged one)")
    p.add_argument("--out", type=Path, default=LOCAL_RESULTS / "env.json", help="JSON output")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")

    t0 = time.perf_counter()
    panel, warmup = synthetic_panel(args.pairs, args.hours)
    t_data = time.perf_counter() - t0
    encoder, encoder_kind = load_encoder(args.checkpoint)
    start = panel.times[warmup]
    t0 = time.perf_counter()
    env = make_crypto_graph_env(panel=panel, encoder=encoder, start=start, use_cache=False, allow_overlap=True)
    t_encode = time.perf_counter() - t0
    hours, n = len(env.times), len(env.symbols)

    rng = np.random.default_rng(0)
    ours_actions = rng.uniform(-1, 1, (args.steps, n + 1)).astype(np.float32)
    ref_actions = rng.integers(0, 2, args.steps)
    contenders, meta = {}, {}
    for wrapped in (True, False):
        ref, ref_name = reference_env(wrapped)
        contenders[("ref", wrapped)] = (ref, ref_actions)
        meta[("ref", wrapped)] = (ref_name, 1, int(np.prod(ref.observation_space.shape)))
        for mode in ("flat", "dict"):
            ours = env.subrange(obs_mode=mode)
            if wrapped:
                ours = gym.make("CryptoGraph-v0", panel=panel, encoder=_Cached(env), start=start,
                                use_cache=False, allow_overlap=True, obs_mode=mode)
            space = ours.observation_space
            size = sum(int(np.prod(s.shape)) for s in getattr(space, "spaces", {"": space}).values())
            contenders[(mode, wrapped)] = (ours, ours_actions)
            meta[(mode, wrapped)] = (f"CryptoGraph-v0 ({mode})", n, size)
    best = best_interleaved(contenders, args.rounds)
    rows = []
    for key, sps in best.items():
        name, pairs, size = meta[key]
        ref_sps = best[("ref", key[1])]
        rows.append({"env": name, "pairs": pairs, "obs_size": size, "wrapped": key[1], "steps_per_s": sps,
                     "vs_reference": sps / ref_sps})

    print(f"\nEnvironment steps/s ({args.steps:,} steps, best of {args.rounds} interleaved rounds; {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, numpy {np.__version__})\n")
    print("| environment | pairs | obs floats | through gym.make | steps/s | vs reference |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['env']} | {r['pairs']} | {r['obs_size']:,} | {'yes' if r['wrapped'] else 'no (unwrapped)'} | "
              f"{r['steps_per_s']:,.0f} | {r['vs_reference']:.2f}x |")
    ok = all(r["vs_reference"] >= 0.5 for r in rows)
    print(f"\ntarget >= 0.5x the reference: {'met' if ok else 'NOT met'}")
    print(f"\nOne-off encoding of {hours:,} hours x {n} pairs ({encoder_kind}): {t_encode:.1f} s "
          f"({hours / t_encode:,.0f} hours/s; includes features, correlations, graph building); "
          f"synthetic data generation {t_data:.1f} s (not part of the environment)")
    result = {"steps": args.steps, "rounds": args.rounds, "rows": rows, "target_met": ok,
              "encoding": {"hours": hours, "pairs": n, "seconds": t_encode, "encoder": encoder_kind,
                           "embedding_dim": env.embedding_dim},
              "machine": {"python": platform.python_version(), "numpy": np.__version__,
                          "processor": platform.processor() or platform.machine()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


class _Cached:
    """Serve an already-built environment's encoder outputs (so gym.make does not re-encode)."""

    market, checkpoint = "spot", None

    def __init__(self, env: CryptoGraphEnv) -> None:
        d = env._data
        self._encoded = EncodedRange(times=d.times, symbols=d.symbols, probs=d.probs, embeddings=d.embeddings,
                                     mask=d.mask)
        self.embedding_dim = env.embedding_dim
        self.fit_range = (d.times[0], d.times[0])

    def fingerprint(self) -> None:
        return None

    def encode_range(self, panel: Panel, start=None, end=None, batch_hours: int = 64,
                     progress: bool | None = False) -> EncoderOutput:
        return self._encoded


if __name__ == "__main__":
    raise SystemExit(main())
