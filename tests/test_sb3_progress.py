"""envs.sb3_progress.TqdmProgress: the PPO example's progress bar counts what SB3 counts."""
from __future__ import annotations

from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from envs.sb3_progress import TqdmProgress


def test_the_bar_counts_every_environment_step_and_is_closed(capsys):
    vec = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = PPO("MlpPolicy", vec, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
    progress = TqdmProgress(64, desc="PPO seed 0")
    model.learn(total_timesteps=64, callback=progress)
    assert progress.bar.n == model.num_timesteps == 64  # 2 rollouts of 16 steps x 2 environments
    err = capsys.readouterr().err
    assert "PPO seed 0" in err and "64/64" in err  # closed: the final count was printed


def test_disabled_bar_prints_nothing(capsys):
    vec = make_vec_env("CartPole-v1", n_envs=1, seed=0)
    model = PPO("MlpPolicy", vec, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=16, callback=TqdmProgress(16, disable=True))
    assert "PPO" not in capsys.readouterr().err


def test_the_bar_ends_at_the_steps_ppo_really_runs_past_total_timesteps():
    vec = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = PPO("MlpPolicy", vec, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
    progress = TqdmProgress(50)
    model.learn(total_timesteps=50, callback=progress)  # rollouts of 32 steps: SB3 stops after 64
    assert model.num_timesteps == 64 and progress.bar.total == 64 and progress.bar.n == 64
