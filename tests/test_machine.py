"""The machine record beside each result."""
from __future__ import annotations

import json

import torch

from gnn_market.machine import machine_info


def test_machine_info_is_json_and_names_this_process():
    info = machine_info()
    assert set(info) == {"cpu", "logical_cores", "os", "python", "torch", "numpy", "cuda", "threads"}
    assert info["torch"] == torch.__version__ and info["threads"] == torch.get_num_threads()
    assert info["cuda"] is None or isinstance(info["cuda"], str)
    assert json.loads(json.dumps(info)) == info
    assert machine_info(threads=3)["threads"] == 3
