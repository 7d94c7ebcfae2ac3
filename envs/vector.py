"""Many ``CryptoGraph-v0`` environments over one encoded range: encode once, map it in every worker.

    from stable_baselines3.common.vec_env import SubprocVecEnv
    from envs.vector import env_fns

    vec = SubprocVecEnv(env_fns(8, store="data/", checkpoint="runs/X/model.pt", market="perp", top=50))

:func:`env_fns` builds one environment in the calling process first, which
encodes the range into the encoder cache (:mod:`envs.cache`), and returns
factories that each make an environment in their worker from the same
arguments: every worker finds the cache entry and memory-maps it, so the
probabilities and embeddings exist once in memory however many workers run,
and none re-encodes. ``gym.make_vec("CryptoGraph-v0", num_envs=8,
vectorization_mode="async")`` gets the same sharing without this module:
Gymnasium's ``AsyncVectorEnv`` makes one environment in the parent before it
starts the workers, and the cache's lock makes workers started at once (e.g.
``SubprocVecEnv`` with factories of your own) wait for a single encoding.

What each worker still holds itself: its portfolio state, the per-hour price
and funding arrays (``[T, N + 1]`` float64 each), and in ``obs_mode="flat"`` a
``[T, obs_size]`` float32 observation table built for step speed.
"""
from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym

from . import ENV_ID


def warm_cache(**env_kwargs: Any) -> None:
    """Make one environment here with ``env_kwargs``, so its range is encoded into the cache before forking.

    Refuses ``use_cache=False``: without the cache every worker would encode its own copy.
    """
    if env_kwargs.get("use_cache") is False:
        raise ValueError("warm_cache needs the encoder cache: use_cache=False makes every worker encode "
                         "its own copy")
    from .factory import make_crypto_graph_env  # torch and the encoder: only when an environment is made

    make_crypto_graph_env(**env_kwargs).close()


def env_fns(num_envs: int, warm: bool = True, **env_kwargs: Any) -> list[Callable[[], gym.Env]]:
    """``num_envs`` factories of ``gym.make("CryptoGraph-v0", **env_kwargs)`` for a vectorised environment.

    With ``warm`` (default) the range is encoded here first (:func:`warm_cache`),
    so workers only map the cache entry. The factories hold only
    ``env_kwargs``: pass ``store=``/``checkpoint=`` paths rather than loaded
    ``panel=``/``encoder=`` objects when workers are spawned (SB3's default
    ``forkserver``), which would pickle them into every worker.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if warm and env_kwargs.get("use_cache", True):
        warm_cache(**env_kwargs)
    return [_Factory(env_kwargs) for _ in range(num_envs)]


class _Factory:
    """A picklable ``lambda: gym.make(ENV_ID, **kwargs)`` (a plain lambda cannot go to spawned workers)."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs

    def __call__(self) -> gym.Env:
        import envs  # noqa: F401  (registers CryptoGraph-v0 in a freshly spawned worker)

        return gym.make(ENV_ID, **self.kwargs)
