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

Workers do not load the model: when :func:`env_fns` is given a checkpoint (or
none: the packaged one), it loads the model here, once, and hands the workers
an :class:`EncoderSummary` instead: the few facts the environment reads
(embedding width, market, fit range, splits, the checkpoint file's SHA-256 as
the cache key), picklable and torch-free. A worker whose cache entry exists
never imports the encoder, PyTorch Geometric or (unless something else does)
torch. SB3's ``SubprocVecEnv`` worker imports torch itself (its worker
function lives in ``stable_baselines3``); Gymnasium's ``AsyncVectorEnv``
workers import none. A worker that misses the entry (an emptied cache), or
``obs_source="raw"``, loads the checkpoint then, after checking that the file
still has the hash the parent saw.

What each worker still holds itself: its portfolio state and the per-hour
price and funding arrays (``[T, N + 1]`` float64 each). Observations, flat or
dict, are read from the mapped arrays at every step.

``subrange=`` makes each worker cut its environment to part of the range
(:meth:`~envs.crypto_graph.CryptoGraphEnv.subrange`, e.g. the training weeks
of a study) after mapping the whole range's entry: no worker encodes, and no
environment is pickled into a worker (a pickled environment would carry a copy
of its arrays, memory-mapped ones included).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import gymnasium as gym

from gnn_market.errors import CheckpointError

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


def env_fns(num_envs: int, warm: bool = True, subrange: Mapping[str, Any] | None = None,
            **env_kwargs: Any) -> list[Callable[[], gym.Env]]:
    """``num_envs`` factories of ``gym.make("CryptoGraph-v0", **env_kwargs)`` for a vectorised environment.

    With ``warm`` (default) the range is encoded here first (:func:`warm_cache`),
    so workers only map the cache entry; a ``checkpoint=`` (or none: the
    packaged one) is loaded here and replaced by an :class:`EncoderSummary`, so
    workers do not load the model. The factories hold only ``env_kwargs``: pass
    ``store=`` paths rather than loaded ``panel=`` objects when workers are
    spawned (SB3's default ``forkserver``), which would pickle them into every worker.

    ``subrange``: keyword arguments of :meth:`~envs.crypto_graph.CryptoGraphEnv.subrange`
    (``start``, ``end``, option overrides such as ``episode_hours``), applied in
    each worker to the environment over the whole range; the factory then
    returns that unwrapped sub-environment, as ``subrange`` does.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if warm and env_kwargs.get("use_cache", True):
        if env_kwargs.get("encoder") is None:  # load the model once, here; workers get a torch-free summary
            from gnn_market.encoder import GraphEncoder

            encoder = GraphEncoder.load(env_kwargs.pop("checkpoint", None))
            warm_cache(**env_kwargs, encoder=encoder)
            env_kwargs["encoder"] = EncoderSummary.of(encoder)
        else:
            warm_cache(**env_kwargs)
    return [_Factory(env_kwargs, None if subrange is None else dict(subrange)) for _ in range(num_envs)]


@dataclass(frozen=True)
class CheckpointRanges:
    """The checkpoint's recorded splits, as :class:`envs.protocols.CheckpointInfo` reads them."""

    ranges: Mapping[str, Sequence[Any] | None]


class EncoderSummary:
    """A picklable, torch-free stand-in for a :class:`~gnn_market.encoder.GraphEncoder` loaded from a file.

    It satisfies :class:`envs.protocols.ObservationEncoder` with the facts the
    environment reads before its cache lookup; ``encode_range`` and
    ``node_features`` load the real encoder on first use (a cache miss, or
    ``obs_source="raw"``), refusing a checkpoint file whose SHA-256 is no longer
    the one summarised.
    """

    def __init__(self, path: str, sha256: str, embedding_dim: int, market: str, fit_range: tuple[Any, Any] | None,
                 checkpoint: CheckpointRanges | None) -> None:
        self.path, self.sha256 = path, sha256
        self.embedding_dim, self.market, self.fit_range, self.checkpoint = embedding_dim, market, fit_range, checkpoint
        self._encoder: Any = None

    @classmethod
    def of(cls, encoder: Any) -> "EncoderSummary":
        """Summarise a loaded ``GraphEncoder`` (it must come from a checkpoint file)."""
        if encoder.path is None or not Path(encoder.path).is_file():
            raise ValueError("EncoderSummary needs an encoder loaded from a checkpoint file")
        ranges = getattr(encoder.checkpoint, "ranges", None)
        return cls(str(encoder.path), encoder.fingerprint(), encoder.embedding_dim, encoder.market,
                   encoder.fit_range, None if encoder.checkpoint is None else CheckpointRanges(dict(ranges or {})))

    def fingerprint(self) -> str:
        """The checkpoint file's SHA-256 (what ``GraphEncoder.fingerprint`` returns for it)."""
        return self.sha256

    def encode_range(self, *args: Any, **kwargs: Any) -> Any:
        return self._load().encode_range(*args, **kwargs)

    def node_features(self, *args: Any, **kwargs: Any) -> Any:
        return self._load().node_features(*args, **kwargs)

    def _load(self) -> Any:
        if self._encoder is None:
            digest = hashlib.sha256(Path(self.path).read_bytes()).hexdigest()
            if digest != self.sha256:
                raise CheckpointError(f"checkpoint {self.path} changed since the vectorised environment was set up; "
                                      f"build it again")
            from gnn_market.encoder import GraphEncoder

            self._encoder = GraphEncoder.load(self.path)
        return self._encoder

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_encoder": None}  # workers get the summary, never a loaded model


class _Factory:
    """A picklable ``lambda: gym.make(ENV_ID, **kwargs)`` (a plain lambda cannot go to spawned workers),
    cut to ``subrange`` when one is given."""

    def __init__(self, kwargs: dict[str, Any], subrange: dict[str, Any] | None = None) -> None:
        self.kwargs, self.subrange = kwargs, subrange

    def __call__(self) -> gym.Env:
        import envs  # noqa: F401  (registers CryptoGraph-v0 in a freshly spawned worker)

        env = gym.make(ENV_ID, **self.kwargs)
        if self.subrange is None:
            return env
        part = env.unwrapped.subrange(**self.subrange)  # views of the mapped arrays: no copy, no encoding
        env.close()
        return part
