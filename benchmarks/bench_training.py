"""Benchmark: GATv2 training throughput, step-time breakdown and predict latency.

For N = 100 and N = 300 pairs, dense graphs (N(N-1) edges per hour) and
top-k graphs (k = 10, symmetrised), on a random-walk panel
(``bench_graphs.random_panel``), hidden 32, 2 heads on CPU, two models:

- ``gatv2``: the original snapshot model and default before issue 12 (2 layers,
  no temporal encoder, no context, correlation as the only edge feature);
- ``temporal``: the default of ``python -m gnn_market.train`` (per-node GRU
  over ``TrainConfig.lookback`` hours, ``TrainConfig.layers`` GATv2 layer(s),
  market context, lead-lag edge feature);
  its lookback windows are gathered per batch from the shared ``[T, N, F + 1]``
  array, which counts as data time (outside the model).

- **train hours/s**: hours of graph per second of training steps
  (forward + backward + Adam), batches of ``--batch-hours`` hours.
- **outside share**: part of a training step spent outside the model's
  forward/backward/update, i.e. data: (a) ``collate`` - batching
  pre-built snapshots, which is what ``python -m gnn_market.train`` does
  every step (it builds each hour's graph once and re-uses it every epoch);
  (b) ``lazy`` - building every hour's correlation graph inside the step
  (``HourlyGraphDataset`` on the fly, the worst case). Target: < 15%.
- **predict latency**: ``GraphEncoder.encode(panel)`` for the latest hour with
  two weeks of history (features + normaliser + correlation graph + forward).

    python benchmarks/bench_training.py [--steps 6] [--batch-hours 16] [--threads 1]
                                        [--device cpu|cuda] [--results PATH]

Prints a table and writes ``benchmarks/results/local/training.json`` (CPU) or
``training_cuda.json`` (``--device cuda``), ignored by git; ``--results PATH``
writes elsewhere (the tracked ``benchmarks/results/`` to update the published figures). On a GPU the host-to-device copy
of each batch counts as data time (outside the model).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch_geometric.loader import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_graphs import random_panel  # noqa: E402

from gnn_market.checkpoint import Checkpoint  # noqa: E402
from gnn_market.encoder import GraphEncoder  # noqa: E402
from gnn_market.feature_generator import FeatureConfig  # noqa: E402
from gnn_market.graph_builder import GraphConfig, HourlyGraphDataset  # noqa: E402
from gnn_market.model import GATv2Classifier, ModelConfig  # noqa: E402
from gnn_market.normalizer import FeatureNormalizer  # noqa: E402
from gnn_market.pipeline import prepare_market  # noqa: E402
from gnn_market.training import TrainConfig  # noqa: E402
from gnn_market.windows import NodeWindows  # noqa: E402

#: Default output: an ignored folder, so running a benchmark never dirties the checkout. Pass the
#: tracked file (``benchmarks/results/<name>.json``) explicitly to update the published figures.
LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"
RESULTS = LOCAL_RESULTS / "training.json"
HISTORY_HOURS = 24 * 14
PANEL_HOURS = 1000  # random_panel needs ~600+ hours for its listing/delisting pattern


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timers measure it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(model, optimiser, batches, device: torch.device,
                windows: NodeWindows | None = None) -> tuple[float, float]:
    """(total seconds, model seconds) over ``batches`` (an iterable that may build data lazily)."""
    loss_fn = torch.nn.NLLLoss(ignore_index=-100)
    total = model_s = 0.0
    t_data = time.perf_counter()
    for batch in batches:
        batch = batch.to(device)
        x_seq = windows.gather(batch.hour) if windows is not None else None
        _sync(device)
        t_model = time.perf_counter()
        optimiser.zero_grad()
        log_probs, _ = model(batch.x, batch.edge_index, batch.edge_attr, batch.batch, x_seq=x_seq,
                             node_mask=batch.node_mask)
        loss_fn(log_probs, batch.y).backward()
        optimiser.step()
        _sync(device)
        t_end = time.perf_counter()
        model_s += t_end - t_model
        total += t_end - t_data
        t_data = time.perf_counter()
    return total, model_s


def model_setup(kind: str) -> tuple[dict, bool]:
    """``(ModelConfig fields, lead_lag)`` of the benchmarked model kind."""
    if kind == "gatv2":
        return {}, False
    d = TrainConfig()
    return {"layers": d.layers, "lookback": d.lookback, "context": d.context, "edge_dim": 2 if d.lead_lag else 1,
            "edge_gain": d.edge_gain}, d.lead_lag


def bench_case(n: int, top_k: int | None, steps: int, batch_hours: int, device: torch.device,
               kind: str = "gatv2") -> dict:
    panel = random_panel(PANEL_HOURS, n, seed=n)
    market = prepare_market(panel)
    hours = np.arange(PANEL_HOURS - batch_hours * (steps + 1), PANEL_HOURS)
    fields, lead_lag = model_setup(kind)
    gconf = GraphConfig(top_k=top_k, lead_lag=lead_lag)
    norm = FeatureNormalizer().fit(market.features, hours)
    dataset = HourlyGraphDataset(market.features, market.labels, market.log_ret, hours, gconf, norm)
    windows = None
    if fields.get("lookback"):
        windows = NodeWindows(dataset.x, dataset.valid, fields["lookback"], device)
    torch.manual_seed(0)
    model = GATv2Classifier(ModelConfig(in_channels=len(market.features.names), hidden=32, heads=2,
                                        **fields)).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    t0 = time.perf_counter()
    graphs = [dataset[i] for i in range(len(dataset))]
    build_per_hour = (time.perf_counter() - t0) / len(graphs)
    edges = float(np.mean([g.edge_index.size(1) for g in graphs]))
    warm = DataLoader(graphs[:batch_hours], batch_size=batch_hours)
    timed_steps(model, optimiser, warm, device, windows)  # warm-up: allocator, first-call overheads
    collate_total, collate_model = timed_steps(model, optimiser, DataLoader(graphs[batch_hours:],
                                                                            batch_size=batch_hours), device, windows)
    lazy_total, lazy_model = timed_steps(
        model, optimiser, DataLoader(torch.utils.data.Subset(dataset, range(batch_hours, len(dataset))),
                                     batch_size=batch_hours), device, windows)
    trained_hours = batch_hours * steps

    # predict latency: a checkpoint around the (untrained) model, latest hour of two weeks
    ckpt = Checkpoint(state_dict=model.state_dict(), model_config=model.config.to_dict(),
                      graph_config=gconf.to_dict(), feature_config=FeatureConfig().to_dict(),
                      feature_names=list(market.features.names), normalizer=norm.state_dict(), threshold=0.01,
                      market="spot", symbols=list(panel.symbols),
                      ranges={"train": [str(panel.times[0]), str(panel.times[1])], "val": None, "test": None})
    encoder = GraphEncoder(ckpt, device=device)
    history = panel.slice(start=panel.times[-HISTORY_HOURS])
    encoder.encode(history)  # warm-up
    lat = []
    for _ in range(3):
        t0 = time.perf_counter()
        encoder.encode(history)  # returns numpy arrays, so the GPU work is finished when it returns
        lat.append(time.perf_counter() - t0)
    return {
        "device": device.type, "model": kind, "lookback": fields.get("lookback", 0), "layers": model.config.layers,
        "symbols": n, "graph": "dense" if top_k is None else f"top-{top_k}",
        "edges_per_hour": edges,
        "batch_hours": batch_hours, "steps": steps,
        "train_hours_per_s": trained_hours / collate_model,
        "step_s": collate_total / steps,
        "outside_share_collate": 1 - collate_model / collate_total,
        "outside_share_lazy": 1 - lazy_model / lazy_total,
        "graph_build_ms_per_hour": build_per_hour * 1e3,
        "predict_latency_ms": float(np.median(lat)) * 1e3,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch-hours", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--symbols", type=int, nargs="+", default=[100, 300])
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--models", nargs="+", default=["gatv2", "temporal"], choices=("gatv2", "temporal"))
    p.add_argument("--results", type=Path, default=None, help="JSON output (default benchmarks/results/local/training*.json)")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_training: --device cuda but torch sees no CUDA device")
    device = torch.device(args.device)
    results = args.results or (RESULTS if device.type == "cpu" else RESULTS.with_name("training_cuda.json"))
    torch.set_num_threads(args.threads)
    rows = []
    for n in args.symbols:
        for top_k in (None, args.top_k):
            for kind in args.models:
                # dense N=300 batches hold ~90k edges per hour: fewer hours per step keep memory modest
                bh = args.batch_hours if not (top_k is None and n >= 300) else max(2, args.batch_hours // 4)
                rows.append(bench_case(n, top_k, args.steps, bh, device, kind))
                r = rows[-1]
                print(f"done N={n} {r['graph']} {kind}", file=sys.stderr)
    head = (f"{'model':>11} {'N':>5} {'graph':>7} {'edges/h':>9} {'hours/step':>10} {'train h/s':>10} {'step s':>8} "
            f"{'outside (collate)':>18} {'outside (lazy)':>15} {'build ms/h':>11} {'predict ms':>11}")
    print(head)
    print("-" * len(head))
    for r in rows:
        name = r["model"] if r["model"] == "gatv2" else f"temp L{r['lookback']}/{r['layers']}"
        print(f"{name:>11} {r['symbols']:>5} {r['graph']:>7} {r['edges_per_hour']:>9.0f} {r['batch_hours']:>10} "
              f"{r['train_hours_per_s']:>10.1f} {r['step_s']:>8.3f} {r['outside_share_collate']:>18.1%} "
              f"{r['outside_share_lazy']:>15.1%} {r['graph_build_ms_per_hour']:>11.1f} {r['predict_latency_ms']:>11.1f}")
    results.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
            "machine": platform.machine(), "device": args.device,
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    results.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
