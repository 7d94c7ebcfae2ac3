"""Vectorised CryptoGraph-v0: N workers share one encoded range (encoded once, memory-mapped) and agree."""
from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import SubprocVecEnv

import envs  # noqa: F401  (registers CryptoGraph-v0)
from envs.vector import EncoderSummary, env_fns, warm_cache
from gnn_market.encoder import GraphEncoder
from gnn_market.errors import CheckpointError

from env_fakes import FakeEncoder, make_env, make_panel

N_ENVS = 8
START = 40  # a common start hour, so every worker's observations can be compared


@dataclass
class CountingEncoder(FakeEncoder):
    """A FakeEncoder that appends one line to ``log`` per encoding, in whatever process runs it."""

    log: str = ""
    delay: float = 0.0  # seconds: a slow encoder, so that workers started together overlap

    def encode_range(self, panel, start=None, end=None, batch_hours: int = 64, progress=None):
        with open(self.log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(self.delay)
        return super().encode_range(panel, start, end, batch_hours, progress)


def encodings(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture
def setup(tmp_path):
    log = tmp_path / "encodings.log"
    kwargs = dict(panel=make_panel(), encoder=CountingEncoder(log=str(log)), cache_dir=tmp_path / "cache",
                  episode_hours=24)
    reference = make_env(panel=kwargs["panel"], encoder=FakeEncoder())  # uncached, in this process
    reference.reset(options={"start": START})
    expected = [reference.step(np.zeros(5))[0] for _ in range(3)]
    return log, kwargs, expected


def run_workers(vec, n: int) -> list[np.ndarray]:
    """Reset every worker at START, take three zero-action steps; the observations of each step."""
    vec.set_options({"start": START})
    vec.reset()
    return [vec.step(np.zeros((n, 5), np.float32))[0] for _ in range(3)]


def test_subproc_workers_map_the_cache_instead_of_encoding(setup):
    log, kwargs, expected = setup
    fns = env_fns(N_ENVS, **kwargs)  # encodes once, here
    assert encodings(log) == 1
    vec = SubprocVecEnv(fns, start_method="fork")
    try:
        observed = run_workers(vec, N_ENVS)
        assert encodings(log) == 1  # no worker encoded
        assert set(log.read_text().split()) == {str(os.getpid())}
        for got, want in zip(observed, expected):
            for row in got:
                np.testing.assert_array_equal(row, want)  # identical to an uncached environment
    finally:
        vec.close()


def test_workers_started_together_encode_once_under_the_cache_lock(setup):
    """Factories of one's own, no warming: the workers race for the entry and only the first encodes."""
    log, kwargs, expected = setup
    kwargs["encoder"].delay = 1.0  # without the lock, every worker started within that second encodes too
    vec = SubprocVecEnv([lambda: gym.make("CryptoGraph-v0", **kwargs)] * N_ENVS, start_method="fork")
    try:
        observed = run_workers(vec, N_ENVS)
    finally:
        vec.close()
    assert encodings(log) == 1
    assert len(list((kwargs["cache_dir"]).glob("encoded-*"))) == 1
    np.testing.assert_array_equal(observed[-1], np.stack([expected[-1]] * N_ENVS))


def test_gym_make_vec_async_encodes_once(setup):
    log, kwargs, expected = setup
    vec = gym.make_vec("CryptoGraph-v0", num_envs=N_ENVS, vectorization_mode="async",
                       vector_kwargs={"context": "fork"}, **kwargs)
    try:
        vec.reset(seed=0, options={"start": START})
        obs, rewards, *_ = vec.step(np.zeros((N_ENVS, 5), np.float32))
    finally:
        vec.close()
    assert encodings(log) == 1  # Gymnasium's AsyncVectorEnv makes one environment in the parent first
    np.testing.assert_array_equal(obs, np.stack([expected[0]] * N_ENVS))
    assert np.isfinite(rewards).all()


def test_warm_cache_refuses_to_run_without_the_cache(setup):
    _, kwargs, _ = setup
    with pytest.raises(ValueError, match="every worker would encode|its own copy"):
        warm_cache(**{**kwargs, "use_cache": False})
    with pytest.raises(ValueError, match="num_envs"):
        env_fns(0, **kwargs)


# ------------------------------------------------------------------ torch-free workers (real checkpoint)
REAL_RANGE = dict(start="2023-12-01", end="2023-12-04")  # the bundled sample and the packaged checkpoint

WORKER = """
import pickle, sys
factory = pickle.loads(sys.stdin.buffer.read())
env = factory()
obs, _ = env.reset(seed=0, options={"start": "2023-12-02"})
sys.stdout.buffer.write(pickle.dumps((obs, "torch" in sys.modules, type(env.unwrapped).__name__)))
"""


def run_worker(factory) -> tuple[np.ndarray, bool, str]:
    """Build and reset ``factory``'s environment in a fresh interpreter (as a spawned worker would)."""
    done = subprocess.run([sys.executable, "-c", WORKER], input=pickle.dumps(factory), capture_output=True,
                          check=True)
    return pickle.loads(done.stdout)


def test_workers_of_a_checkpoint_get_a_torch_free_summary_and_the_same_observations(tmp_path):
    fns = env_fns(2, cache_dir=tmp_path / "cache", **REAL_RANGE)   # the packaged checkpoint, loaded here once
    summary = fns[0].kwargs["encoder"]
    assert isinstance(summary, EncoderSummary) and "checkpoint" not in fns[0].kwargs
    real = GraphEncoder.load()
    assert (summary.fingerprint(), summary.embedding_dim, summary.market) == (real.fingerprint(), real.embedding_dim,
                                                                             real.market)
    obs, imported_torch, name = run_worker(fns[0])
    assert not imported_torch and name == "CryptoGraphEnv"
    reference = gym.make("CryptoGraph-v0", cache_dir=tmp_path / "other", **REAL_RANGE)  # encodes in this process
    want, _ = reference.reset(seed=0, options={"start": "2023-12-02"})
    np.testing.assert_allclose(obs, want, rtol=1e-6, atol=1e-7)


def test_a_summary_loads_the_model_on_a_cache_miss_and_refuses_a_changed_checkpoint(tmp_path):
    ckpt = tmp_path / "model.pt"
    shutil.copyfile(GraphEncoder.load().path, ckpt)
    fns = env_fns(1, checkpoint=str(ckpt), cache_dir=tmp_path / "cache", **REAL_RANGE)
    summary = fns[0].kwargs["encoder"]
    shutil.rmtree(tmp_path / "cache")                 # a miss: the worker must encode after all
    obs, imported_torch, _ = run_worker(fns[0])
    assert imported_torch and obs.shape == fns[0]().observation_space.shape
    ckpt.write_bytes(ckpt.read_bytes() + b"\0")       # another model behind the same path
    with pytest.raises(CheckpointError, match="changed"):
        summary.encode_range(None)


def test_flat_observations_hold_no_private_copy_of_the_mapped_outputs(tmp_path):
    # A flat environment on a cache entry assembles each observation from the memory-mapped
    # outputs, so every worker of a vectorised environment shares them; it must not keep its
    # own [T, obs] table (16.5 MB here, ~155 MB per worker on three years of 40 pairs).
    panel, encoder = make_panel(n_hours=3000, n_pairs=20), FakeEncoder(embedding_dim=64)
    make_env(panel=panel, encoder=encoder, cache_dir=tmp_path)  # writes the entry
    held = {}
    for mode in ("dict", "flat"):
        tracemalloc.start()
        env = make_env(panel=panel, encoder=encoder, cache_dir=tmp_path, obs_mode=mode)
        held[mode] = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del env
    table_bytes = 3000 * (20 * (3 + 64) + 20 + 21) * 4
    assert held["flat"] - held["dict"] < table_bytes / 10
    # and what it serves is the dict observation, flattened in order
    flat = make_env(panel=panel, encoder=encoder, cache_dir=tmp_path, obs_mode="flat")
    as_dict = make_env(panel=panel, encoder=encoder, cache_dir=tmp_path, obs_mode="dict")
    fobs, _ = flat.reset(seed=0, options={"start": 500})
    dobs, _ = as_dict.reset(seed=0, options={"start": 500})
    action = np.linspace(-1, 1, 21, dtype=np.float32)
    for _ in range(3):
        want = np.concatenate([dobs[k].ravel() for k in ("probs", "embeddings", "mask", "weights")])
        np.testing.assert_array_equal(fobs, want)
        fobs, *_ = flat.step(action)
        dobs, *_ = as_dict.step(action)


def test_workers_cut_a_subrange_from_the_mapped_entry_without_encoding(setup):
    log, kwargs, _ = setup
    end = kwargs["panel"].times[300]
    fns = env_fns(2, subrange={"end": end, "episode_hours": 24}, **kwargs)
    assert encodings(log) == 1  # the whole range, once, here
    reference = make_env(panel=kwargs["panel"], encoder=FakeEncoder()).subrange(end=end, episode_hours=24)
    reference.reset(options={"start": START})
    expected = [reference.step(np.zeros(5))[0] for _ in range(3)]
    vec = SubprocVecEnv(fns, start_method="fork")
    try:
        assert vec.get_attr("times")[0][-1] == end  # cut in the worker
        observed = run_workers(vec, 2)
        assert encodings(log) == 1  # the workers mapped the entry and sliced it
        for got, want in zip(observed, expected):
            for row in got:
                np.testing.assert_array_equal(row, want)
    finally:
        vec.close()
    with pytest.raises(Exception, match="empty subrange"):
        env_fns(1, subrange={"start": end, "end": end}, **kwargs)[0]()
