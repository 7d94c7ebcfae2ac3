"""Mini-batches of hourly graphs built on demand from compact per-hour arrays.

A fully connected hour of ``N`` pairs has ``N (N - 1)`` edges; at 450 pairs
that is ~200,000 edges, and keeping every hour's edge list for a run is what
used to exhaust memory. The structure is the same every hour (every present
pair to every other), so only two things are kept per hour:

* node arrays ``x [T, N, F]``, ``valid [T, N]``, ``y [T, N]`` (shared with the
  baselines), and
* the edge features of the hour, ``[N, N, D]`` (correlation and lead-lag),
  computed once for the run in chunks by :class:`DenseEdges` and kept in
  memory when they fit ``memory_mb`` or else in an anonymous temporary file
  read per batch.

:class:`HourBatcher` turns a list of hours into an :class:`HourBatch`: dense
``[B, N, ...]`` tensors for the fast path
(:meth:`~gnn_market.model.GATv2Classifier.forward_dense`), or, for top-k
graphs (and the sparse reference), a ``torch_geometric`` batch of
:func:`~gnn_market.graph_builder.build_snapshot` graphs. Peak memory grows
with ``batch_hours x N^2``, not with the number of hours.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch_geometric.data import Batch, Data
from tqdm.auto import tqdm

from .classes import IGNORE_INDEX
from .correlations import iter_correlations, iter_lead_lag
from .errors import DataError
from .graph_builder import GraphConfig, build_snapshot

__all__ = ["DenseEdges", "HourBatch", "HourBatcher", "iter_dense_edges", "hour_batches"]

#: Elements of one ``[K, N, N]`` chunk of correlations computed at once (the lead-lag kernel holds a few
#: float64 copies of it).
EDGE_CHUNK_ELEMENTS = 8 * 2**20


def iter_dense_edges(log_ret: np.ndarray, start: int, stop: int, config: GraphConfig,
                     chunk_hours: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Dense edge features of hours ``start .. stop-1`` in chunks: yields ``(t0, edges [K, N, N, D] float32)``.

    ``edges[k, i, j]`` are the features of the edge ``j -> i`` at hour ``t0 + k``
    (target-major, the layout of :meth:`DenseGATv2Conv.forward_dense`): column 0
    the return correlation ``corr[j, i]``, column 1 (``config.lead_lag``) the
    lead-lag ``lag[j, i]`` of :func:`~gnn_market.correlations.lead_lag_matrix`.
    The diagonal holds 1 (the self-loop fill value); undefined values are 0.
    Only returns up to each hour enter it.
    """
    T, N = log_ret.shape
    stop = min(stop, T)
    if chunk_hours is None:
        chunk_hours = int(np.clip(EDGE_CHUNK_ELEMENTS // max(N * N, 1), 1, 64))
    corr_chunks = iter_correlations(log_ret, start, stop, config.window, config.min_periods, chunk_hours)
    lag_chunks = (iter_lead_lag(log_ret, start, stop, config.window, config.min_periods, chunk_hours)
                  if config.lead_lag else None)
    diag = np.arange(N)
    for t0, corr in corr_chunks:
        out = np.empty((len(corr), N, N, config.edge_dim), dtype=np.float32)
        out[..., 0] = corr
        if lag_chunks is not None:
            t_lag, lag = next(lag_chunks)
            if t_lag != t0 or len(lag) != len(corr):  # both iterators chunk the same hours
                raise RuntimeError("correlation and lead-lag chunks out of step")
            out[..., 1] = lag.transpose(0, 2, 1)
        np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        out[:, diag, diag, :] = 1.0
        yield t0, out


class DenseEdges:
    """Per-hour edge features ``[N, N, D]`` of hours ``lo .. hi-1``, computed once, read per batch.

    Held in memory when ``(hi - lo) * N^2 * D * 4`` bytes fit ``memory_mb``, else
    written to an anonymous temporary file (deleted when closed or when the
    process ends, even on a crash) in ``directory`` (default: the system's
    temporary folder, ``TMPDIR``) and read back per batch, so
    the run's memory holds one batch of edges, not all of them.

    Args:
        log_ret: ``[T, N]`` log returns of the panel.
        lo, hi: the hour range needed (indices into T).
        config: graph options (window, min_periods, lead_lag).
        memory_mb: in-memory budget (0 = always a file).
        directory: where the file goes.
        device: where an in-memory copy lives (a GPU keeps the run's edges resident there).
        progress: show a progress bar while computing.

    Shapes:
        - :meth:`read` input: hours ``[B]`` (indices into T, in ``lo .. hi-1``)
        - :meth:`read` output: ``[B, N, N, D]`` float32 tensor on ``device``
    """

    def __init__(self, log_ret: np.ndarray, lo: int, hi: int, config: GraphConfig, memory_mb: float = 512.0,
                 directory: str | os.PathLike | None = None, device: torch.device | str = "cpu",
                 progress: bool = False) -> None:
        T, N = log_ret.shape
        if not 0 <= lo < hi <= T:
            raise DataError(f"edge hours {lo}..{hi - 1} outside the panel's 0..{T - 1}")
        self.lo, self.hi, self.num_nodes, self.edge_dim = int(lo), int(hi), N, config.edge_dim
        self.device = torch.device(device)
        self._hour_bytes = N * N * self.edge_dim * 4
        self._resident: torch.Tensor | None = None
        self._file = None
        total_mb = (hi - lo) * self._hour_bytes / 2**20
        chunks = iter_dense_edges(log_ret, lo, hi, config)
        bar = tqdm(total=hi - lo, desc="edge features", unit="hour", leave=False, disable=not progress)
        if total_mb <= memory_mb:
            resident = np.empty((hi - lo, N, N, self.edge_dim), dtype=np.float32)
            for t0, chunk in chunks:
                resident[t0 - lo: t0 - lo + len(chunk)] = chunk
                bar.update(len(chunk))
            self._resident = torch.from_numpy(resident).to(self.device)
        else:
            self._file = tempfile.TemporaryFile(prefix="cryptograph-edges-", dir=directory)
            try:
                for _, chunk in chunks:
                    self._file.write(memoryview(np.ascontiguousarray(chunk)).cast("B"))
                    bar.update(len(chunk))
                self._file.flush()
            except OSError as exc:
                self.close()
                raise DataError(f"cannot write the {total_mb:,.0f} MB edge-feature file in "
                                f"{directory or tempfile.gettempdir()}: {exc.strerror or exc} (set TMPDIR to a "
                                f"folder with room)") from None
        bar.close()

    @property
    def in_memory(self) -> bool:
        """True when the features are held in memory (or on the device), False when read from a file."""
        return self._resident is not None

    def read(self, hours: np.ndarray) -> torch.Tensor:
        """Edge features ``[B, N, N, D]`` of ``hours`` ``[B]``."""
        hours = np.asarray(hours, dtype=np.int64).reshape(-1)
        if len(hours) and (hours.min() < self.lo or hours.max() >= self.hi):
            raise DataError(f"hours outside the edge range {self.lo}..{self.hi - 1}")
        if self._resident is not None:
            return self._resident[torch.as_tensor(hours - self.lo, device=self.device)]
        if self._file is None:
            raise DataError("the edge features were closed")
        out = np.empty((len(hours), self.num_nodes, self.num_nodes, self.edge_dim), dtype=np.float32)
        for k, t in enumerate(hours):  # one read per hour, straight into the batch (seek + readinto: any OS)
            self._file.seek(int(t - self.lo) * self._hour_bytes)
            got = self._file.readinto(memoryview(out[k]).cast("B"))
            if got != self._hour_bytes:
                raise DataError(f"the edge-feature file is short at hour {t} (disk full or removed?)")
        return torch.from_numpy(out).to(self.device)

    def close(self) -> None:
        """Release the memory or delete the file."""
        self._resident = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "DenseEdges":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class HourBatch:
    """``B`` hourly graphs of ``N`` nodes.

    Attributes:
        hours: ``[B]`` indices into T.
        x: ``[B, N, F]`` normalised node features (0 where absent).
        node_mask: ``[B, N]`` bool.
        y: ``[B, N]`` class indices (``IGNORE_INDEX`` where unlabelled or absent).
        edge_attr: ``[B, N, N, D]`` dense edge features of fully connected graphs, or None.
        graphs: a ``torch_geometric`` batch of the same hours (top-k graphs, or the sparse
            reference), or None on the dense path.
    """

    hours: torch.Tensor
    x: torch.Tensor
    node_mask: torch.Tensor
    y: torch.Tensor
    edge_attr: torch.Tensor | None = None
    graphs: Batch | None = None

    @property
    def num_hours(self) -> int:
        return int(self.x.size(0))

    @property
    def dense(self) -> bool:
        """True on the dense path (``graphs`` is None)."""
        return self.graphs is None


class HourBatcher:
    """Builds :class:`HourBatch` es from per-hour arrays and (for edges) a :class:`DenseEdges`.

    Args:
        x: ``[T, N, F]`` normalised node features, 0 where ``valid`` is False
            (:func:`~gnn_market.graph_builder.normalised_node_features`).
        valid: ``[T, N]`` bool.
        y: ``[T, N]`` class indices, or None (inference: all ``IGNORE_INDEX``).
        config: graph options: ``edges="none"`` gives self-loops only, ``top_k`` sparse
            graphs, otherwise fully connected dense graphs.
        edges: the run's :class:`DenseEdges` (not needed for ``edges="none"``; may also be given per batch).
        sparse: build PyG snapshots for fully connected graphs too (the reference path).
        device: where batches are assembled (node arrays are moved there once).
    """

    def __init__(self, x: np.ndarray, valid: np.ndarray, y: np.ndarray | None, config: GraphConfig,
                 edges: DenseEdges | None = None, sparse: bool = False,
                 device: torch.device | str = "cpu") -> None:
        T, N, _ = x.shape
        if valid.shape != (T, N) or (y is not None and y.shape != (T, N)):
            raise DataError(f"x {x.shape}, valid {valid.shape} and y {None if y is None else y.shape} "
                            f"must share [T, N]")
        self.config, self.edges = config, edges
        self.sparse = bool(sparse or config.top_k is not None)
        self.device = torch.device(device)
        self.num_nodes = N
        labels = np.full((T, N), IGNORE_INDEX, np.int64) if y is None else np.where(valid, y, IGNORE_INDEX)
        self._x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        self._valid = torch.from_numpy(np.ascontiguousarray(valid, dtype=bool)).to(self.device)
        self._y = torch.from_numpy(labels.astype(np.int64)).to(self.device)
        self._x_host, self._valid_host, self._y_host = x, np.asarray(valid, dtype=bool), labels
        self._edge_lists: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}   # top-k: hour -> (index, attr)

    def node_features(self, hour: np.ndarray, pair: np.ndarray) -> np.ndarray:
        """``[M, F]`` normalised features of rows ``(hour[m], pair[m])`` (host copy)."""
        return self._x_host[np.asarray(hour, dtype=np.int64), np.asarray(pair, dtype=np.int64)]

    def labels(self, hours: np.ndarray) -> np.ndarray:
        """``[H, N]`` class indices of ``hours`` (``IGNORE_INDEX`` where unlabelled)."""
        return self._y_host[np.asarray(hours, dtype=np.int64)]

    def batch(self, hours: np.ndarray, edges: DenseEdges | None = None) -> HourBatch:
        """The graphs of ``hours`` ``[B]`` as one :class:`HourBatch` (edge features from ``edges``, default
        the batcher's own)."""
        hours = np.asarray(hours, dtype=np.int64).reshape(-1)
        index = torch.as_tensor(hours, device=self.device)
        batch = HourBatch(hours=index, x=self._x[index], node_mask=self._valid[index], y=self._y[index])
        if self.config.edges == "none" and not self.sparse:
            return batch
        edges = edges or self.edges
        if self.config.edges != "none" and edges is None:
            raise DataError("correlation graphs need edge features (DenseEdges)")
        if not self.sparse:
            batch.edge_attr = None if self.config.edges == "none" else edges.read(hours)
            return batch
        batch.graphs = self._snapshots(hours, edges).to(self.device)
        return batch

    def _snapshots(self, hours: np.ndarray, edges: DenseEdges | None) -> Batch:
        """PyG snapshots of ``hours``, from the same dense edge features the fast path reads.

        Top-k edge lists (at most ``2 N k`` edges per hour) are kept after their first use, so
        later epochs skip reading the hour's ``[N, N, D]`` features and the top-k selection.
        """
        todo = [t for t in hours if int(t) not in self._edge_lists] if self.config.top_k is not None else list(hours)
        dense = {}
        if todo and self.config.edges != "none":
            read = edges.read(np.asarray(todo)).cpu().numpy()
            dense = {int(t): read[k] for k, t in enumerate(todo)}
        graphs = []
        for t in map(int, hours):
            if t in self._edge_lists:
                index, attr = self._edge_lists[t]
                graphs.append(self._snapshot_with(t, index, attr))
                continue
            corr = lag = None
            if t in dense:
                corr = dense[t][..., 0]
                lag = dense[t][..., 1].T if self.config.lead_lag else None  # lag[j, i] = edge j -> i
            graph = build_snapshot(self._x_host[t], corr, self._y_host[t], self._valid_host[t], 0, [], self.config,
                                   hour=t, lag=lag)
            if self.config.top_k is not None:
                self._edge_lists[t] = (graph.edge_index, graph.edge_attr)
            graphs.append(graph)
        return Batch.from_data_list(graphs)

    def _snapshot_with(self, t: int, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> Data:
        """Hour ``t``'s snapshot with its kept edge list (the node arrays as :func:`build_snapshot` sets them)."""
        mask = self._valid_host[t]
        return Data(x=torch.from_numpy(np.ascontiguousarray(self._x_host[t], dtype=np.float32)),
                    edge_index=edge_index, edge_attr=edge_attr, y=torch.from_numpy(self._y_host[t].copy()),
                    node_mask=torch.from_numpy(mask.copy()), time=torch.tensor([0], dtype=torch.long),
                    hour=torch.tensor([t], dtype=torch.long), symbols=[])


def hour_batches(hours: np.ndarray, batch_hours: int, generator: torch.Generator | None = None
                 ) -> list[np.ndarray]:
    """Split ``hours`` into batches of ``batch_hours``, shuffled with ``generator`` (None = in order)."""
    hours = np.asarray(hours, dtype=np.int64).reshape(-1)
    if generator is not None:
        hours = hours[torch.randperm(len(hours), generator=generator).numpy()]
    return [hours[k:k + batch_hours] for k in range(0, len(hours), max(1, int(batch_hours)))]
