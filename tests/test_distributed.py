"""Training under torchrun: 2 CPU processes (gloo) give the single-process result and one set of artefacts."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from gnn_market.synthetic import SyntheticConfig
from gnn_market.training import TrainConfig, run_training
from gnn_market.training.distributed import World, gather_blocks, shard, world
from gnn_market.training.loop import _batch_loss

from train_fixtures import TINY_TRAIN, tiny_store

MARKET = SyntheticConfig(n_symbols=10, hours=720, seed=5, n_sectors=2, leaders_per_sector=1,
                         with_funding=False, with_book=False)
#: No dropout: then the 2-process update equals the 1-process one up to summation order.
RUN = dict(TINY_TRAIN, epochs=2, dropout=0.0, threads=1, lookback=4, select_encoder=False)


def test_plain_run_is_a_world_of_one() -> None:
    assert world() == World() and world().describe() == {"world_size": 1, "backend": None}
    hours = np.arange(10)
    np.testing.assert_array_equal(shard(hours), hours)
    a, b = gather_blocks(hours, hours * 2)
    np.testing.assert_array_equal(b, hours * 2)


def test_batch_loss_of_one_process_is_the_weighted_mean() -> None:
    g = torch.Generator().manual_seed(0)
    log_probs = torch.log_softmax(torch.randn(40, 3, generator=g), -1)
    y = torch.randint(0, 3, (40,), generator=g)
    y[::7] = -100
    weight = torch.tensor([2.0, 0.5, 1.5])
    want = torch.nn.functional.nll_loss(log_probs, y, weight=weight, ignore_index=-100)
    torch.testing.assert_close(_batch_loss(log_probs, y, weight, 1), want)
    torch.testing.assert_close(_batch_loss(log_probs, y, None, 1),
                               torch.nn.functional.nll_loss(log_probs, y, ignore_index=-100))


def test_two_gloo_processes_match_one_process(tmp_path) -> None:
    store = tiny_store(tmp_path, MARKET)
    single = run_training(TrainConfig(store=str(store.root), out=str(tmp_path / "one"), **RUN))
    assert single["distributed"] == {"world_size": 1, "backend": None}

    out = tmp_path / "two"
    flags = ["--store", str(store.root), "--out", str(out), "--epochs", "2", "--dropout", "0", "--threads", "1",
             "--hidden", "8", "--heads", "2", "--batch-hours", "32", "--lookback", "4", "--no-encoder-selection",
             "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "gnn_market.train", *flags], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("artefacts in") == 1  # rank 0 reports, rank 1 stays quiet
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert (out / "model.pt").is_file() and (out / "report.md").is_file()
    for model in ("gnn", "gnn_no_edges", "majority", "logistic"):  # baselines ran (once, on rank 0)
        assert model in metrics["test"]
    two, one = metrics["test"]["gnn"]["macro_f1"], single["test"]["gnn"]["macro_f1"]
    assert abs(two - one) <= 0.02, (two, one)
    # the baselines do not depend on the number of processes at all
    for model in ("majority", "logistic"):
        assert metrics["test"][model]["macro_f1"] == pytest.approx(single["test"][model]["macro_f1"], abs=1e-9)
