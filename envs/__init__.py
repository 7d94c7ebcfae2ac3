"""Gymnasium environments of CryptoGraph.

Importing this package registers ``CryptoGraph-v0``::

    import gymnasium as gym
    import envs  # noqa: F401  (registers CryptoGraph-v0)
    env = gym.make("CryptoGraph-v0")

or, without the explicit import (Gymnasium imports the module named before the colon)::

    env = gym.make("envs:CryptoGraph-v0")

Registration is cheap: the factory (:mod:`envs.factory`: torch, the encoder)
is imported only when an environment is made. Modules: ``crypto_graph`` (the
``gym.Env``), ``factory`` (store, checkpoint, range, cache -> environment),
``market_arrays``, ``options``, ``cache``, ``protocols`` (what an encoder must
provide), ``portfolio`` (the arithmetic), ``evaluation`` (baselines, metrics).
"""
from __future__ import annotations

from gymnasium.envs.registration import register, registry

ENV_ID = "CryptoGraph-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="envs.factory:make_crypto_graph_env")

__all__ = ["ENV_ID"]
