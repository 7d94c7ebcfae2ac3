"""Benchmark: GATv2 training and encoding at full universe, PyG's sparse path beside the dense fast path.

For N = 100, 300 and 450 pairs, fully connected graphs (N(N-1) edges per hour)
and top-k graphs (k = 10, symmetrised), on a random-walk panel
(``bench_graphs.random_panel``), with the model of ``python -m gnn_market.train``
(per-node GRU over ``TrainConfig.lookback`` hours, market context, lead-lag edge
feature, hidden 32, 2 heads) and ``--layers`` GATv2 layers (default 2, the
task's 2-3). Every case runs in its own subprocess, so its peak RSS
(``ru_maxrss``: imports, panel, edge features, model, the steps) is its own.

Paths:

- ``pyg``: ``torch_geometric.nn.GATv2Conv`` on a PyG batch of per-hour
  snapshots (edge lists built from the same edge features each step): the
  reference, and how top-k graphs always run;
- ``dense``: :meth:`GATv2Classifier.forward_dense` on ``[B, N, N, D]`` edge
  features (fully connected graphs only), what ``python -m gnn_market.train``
  runs by default.

Columns:

- **train h/s**: hours of graph per second of training step (batch assembly +
  forward + backward + Adam), ``--batch-hours`` hours per step, after one
  warm-up step; **outside**: the share of a step spent assembling the batch;
  **(later)**: the same in a second pass over the hours (top-k graphs keep
  their edge lists after the first epoch);
- **encode h/s**: ``GraphEncoder.encode_range`` over ``--encode-hours`` hours
  (features, normaliser, edge features, forward);
- **edges ms/h**: computing one hour's correlation and lead-lag matrices
  (``DenseEdges``, once per run in training);
- **peak RSS**: of the case's process, in MB.

    python benchmarks/bench_training.py [--symbols 100 300 450] [--layers 2] [--steps 4] [--batch-hours 32]
                                        [--threads 2] [--device cpu|cuda] [--results PATH]

Prints a table and writes ``benchmarks/results/local/training.json`` (ignored by
git; ``--results benchmarks/results/training.json`` updates the published figures).
A case that exceeds ``--memory-limit-gb`` (address space) is reported as out of memory.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

#: Default output: an ignored folder, so running a benchmark never dirties the checkout.
LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"
RESULTS = LOCAL_RESULTS / "training.json"
PANEL_HOURS = 900   # random_panel needs ~600+ hours for its listing/delisting pattern


def run_case(n: int, graph: str, path: str, layers: int, steps: int, batch_hours: int, encode_hours: int,
             threads: int, device_name: str) -> dict:
    """One (N, graph, path) case in this process; returns its row."""
    import numpy as np
    import torch
    from bench_graphs import random_panel

    from gnn_market.checkpoint import Checkpoint
    from gnn_market.encoder import GraphEncoder
    from gnn_market.feature_generator import FeatureConfig
    from gnn_market.graph_builder import GraphConfig, normalised_node_features
    from gnn_market.hour_batches import DenseEdges, HourBatcher, hour_batches
    from gnn_market.model import GATv2Classifier, ModelConfig
    from gnn_market.normalizer import FeatureNormalizer
    from gnn_market.pipeline import prepare_market
    from gnn_market.training import TrainConfig
    from gnn_market.windows import NodeWindows

    torch.set_num_threads(threads)
    device = torch.device(device_name)
    d = TrainConfig()
    top_k = None if graph == "dense" else int(graph.split("-")[1])
    gconfig = GraphConfig(top_k=top_k, lead_lag=d.lead_lag)
    market = prepare_market(random_panel(PANEL_HOURS, n, seed=n))
    hours = np.arange(PANEL_HOURS - batch_hours * (steps + 1), PANEL_HOURS)
    normalizer = FeatureNormalizer().fit(market.features, hours)
    x = normalised_node_features(market.features, normalizer)
    valid = market.features.valid
    t0 = time.perf_counter()
    edges = DenseEdges(market.log_ret, int(hours[0]), PANEL_HOURS, gconfig, device=device)
    edges_ms = (time.perf_counter() - t0) / len(hours) * 1e3
    batcher = HourBatcher(x, valid, market.labels.classes, gconfig, edges, sparse=path == "pyg", device=device)
    windows = NodeWindows(x, valid, d.lookback, device)
    config = ModelConfig(in_channels=x.shape[-1], hidden=d.hidden, heads=d.heads, layers=layers,
                         lookback=d.lookback, context=d.context, edge_dim=gconfig.edge_dim, edge_gain=d.edge_gain)
    torch.manual_seed(0)
    model = GATv2Classifier(config).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.NLLLoss(ignore_index=-100)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def epoch(chunks: list) -> tuple[float, float]:
        """(step seconds, batch-assembly seconds) over ``chunks``."""
        total = assembly = 0.0
        for chunk in chunks:
            sync()
            t0 = time.perf_counter()
            batch = batcher.batch(chunk)
            sync()
            t1 = time.perf_counter()
            optimiser.zero_grad()
            log_probs, _ = model.forward_hours(batch, windows)
            loss_fn(log_probs, batch.y.reshape(-1)).backward()
            optimiser.step()
            sync()
            total += time.perf_counter() - t0
            assembly += t1 - t0
        return total, assembly

    chunks = hour_batches(hours, batch_hours)[: steps + 1]
    epoch(chunks[:1])  # warm-up: allocators, first-call overheads
    total, assembly = epoch(chunks[1:])
    later = None
    if top_k is not None:  # top-k edge lists are kept after their first use: a second epoch shows the steady state
        again, again_assembly = epoch(chunks[1:])
        later = again_assembly / again
    encode = float("nan")
    if path == "dense" or top_k is not None:  # the encoder always takes the default path for its graph
        ckpt = Checkpoint(state_dict=model.state_dict(), model_config=config.to_dict(),
                          graph_config=gconfig.to_dict(), feature_config=FeatureConfig().to_dict(),
                          feature_names=list(market.features.names), normalizer=normalizer.state_dict(),
                          threshold=0.01, market="spot", symbols=list(market.panel.symbols),
                          ranges={"train": [str(market.times[0]), str(market.times[1])], "val": None, "test": None})
        encoder = GraphEncoder(ckpt, device=device)
        start = market.times[PANEL_HOURS - encode_hours]
        t0 = time.perf_counter()
        encoder.encode_range(market.panel, start=start, batch_hours=batch_hours)
        encode = encode_hours / (time.perf_counter() - t0)
    return {"symbols": n, "graph": graph, "path": path, "layers": layers, "batch_hours": batch_hours,
            "steps": steps, "train_hours_per_s": batch_hours * steps / total, "outside_share": assembly / total,
            "outside_share_later_epochs": later,
            "encode_hours_per_s": encode, "edges_ms_per_hour": edges_ms,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def spawn_case(args: argparse.Namespace, n: int, graph: str, path: str) -> dict:
    """Run one case in a child process (own peak RSS, own address-space limit)."""
    cmd = [sys.executable, __file__, "--case", str(n), graph, path, "--layers", str(args.layers),
           "--steps", str(args.steps), "--batch-hours", str(args.batch_hours), "--encode-hours",
           str(args.encode_hours), "--threads", str(args.threads), "--device", args.device,
           "--memory-limit-gb", str(args.memory_limit_gb)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        oom = "MemoryError" in done.stderr or "DefaultCPUAllocator" in done.stderr or done.returncode < 0
        print(done.stderr[-2000:], file=sys.stderr)
        return {"symbols": n, "graph": graph, "path": path, "layers": args.layers, "batch_hours": args.batch_hours,
                "failed": f"out of memory (> {args.memory_limit_gb} GB)" if oom else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    head = (f"{'N':>5} {'graph':>7} {'path':>6} {'layers':>6} {'train h/s':>10} {'outside':>8} {'(later)':>8} "
            f"{'encode h/s':>11} {'edges ms/h':>11} {'peak RSS MB':>12}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "failed" in r:
            lines.append(f"{r['symbols']:>5} {r['graph']:>7} {r['path']:>6} {r['layers']:>6}   {r['failed']}")
            continue
        encode = "-" if r["encode_hours_per_s"] != r["encode_hours_per_s"] else f"{r['encode_hours_per_s']:.1f}"
        later = "-" if r.get("outside_share_later_epochs") is None else f"{r['outside_share_later_epochs']:.1%}"
        lines.append(f"{r['symbols']:>5} {r['graph']:>7} {r['path']:>6} {r['layers']:>6} "
                     f"{r['train_hours_per_s']:>10.1f} {r['outside_share']:>8.1%} {later:>8} {encode:>11} "
                     f"{r['edges_ms_per_hour']:>11.1f} {r['peak_rss_mb']:>12.0f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--symbols", type=int, nargs="+", default=[100, 300, 450])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch-hours", type=int, default=32)
    p.add_argument("--encode-hours", type=int, default=64)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--memory-limit-gb", type=float, default=16.0)
    p.add_argument("--results", type=Path, default=None)
    p.add_argument("--case", nargs=3, metavar=("N", "GRAPH", "PATH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:
        limit = int(args.memory_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        n, graph, path = args.case
        print(json.dumps(run_case(int(n), graph, path, args.layers, args.steps, args.batch_hours,
                                  args.encode_hours, args.threads, args.device)))
        return
    rows = []
    for n in args.symbols:
        for graph, path in (("dense", "pyg"), ("dense", "dense"), (f"top-{args.top_k}", "pyg")):
            rows.append(spawn_case(args, n, graph, path))
            print(f"done N={n} {graph} {path}", file=sys.stderr)
    print(table(rows))
    import torch
    meta = {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
            "machine": platform.machine(), "device": args.device, "layers": args.layers,
            "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
    results = args.results or (RESULTS if args.device == "cpu" else RESULTS.with_name("training_cuda.json"))
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
