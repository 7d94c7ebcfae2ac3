"""A tqdm progress bar for Stable-Baselines3 training (SB3's own ``progress_bar=True`` needs ``rich``).

    model.learn(total_timesteps=50_000, callback=TqdmProgress(50_000, desc="PPO seed 0"))

Counts environment steps over all vectorised environments, like ``total_timesteps``.
"""
from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback
from tqdm import tqdm


class TqdmProgress(BaseCallback):
    """Advance a tqdm bar by the number of environments at every vectorised step.

    Args:
        total: the ``total_timesteps`` given to ``learn``.
        desc: the bar's label.
        disable: no bar (tqdm's ``None``: only on a terminal).
    """

    def __init__(self, total: int, desc: str = "PPO", disable: bool | None = False) -> None:
        super().__init__()
        self.total, self.desc, self.disable = total, desc, disable
        self.bar: tqdm | None = None

    def _on_training_start(self) -> None:
        total, rollout = self.total, getattr(self.model, "n_steps", 0) * self.training_env.num_envs
        if rollout:  # on-policy (PPO, A2C): SB3 finishes the last rollout, so it runs past total_timesteps
            total = -(-total // rollout) * rollout
        self.bar = tqdm(total=total, desc=self.desc, unit="step", mininterval=1.0, disable=self.disable)

    def _on_step(self) -> bool:
        if self.bar is not None:
            self.bar.update(self.training_env.num_envs)
        return True  # never stops training

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()
