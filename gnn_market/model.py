"""GATv2 node classifier: hourly pair graph -> next-hour class log-probabilities.

See :class:`GATv2Classifier`. The graph itself is built by
:mod:`gnn_market.graph_builder` and the per-node lookback windows by
:class:`gnn_market.windows.NodeWindows`; this module only knows tensors.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.nn import GraphNorm
from torch_geometric.utils import scatter

from .classes import NUM_CLASSES
from .dense_attention import DenseGATv2Conv, dense_graph_norm, fully_connected
from .windows import NodeWindows

if TYPE_CHECKING:  # only for the annotation: hour_batches imports the graph builder, not the model
    from .hour_batches import HourBatch

#: Default gain on the Glorot init of each layer's edge projection ``W_e``
#: (:attr:`ModelConfig.edge_gain`). With gain 1 a correlation in [-1, 1] barely
#: moves the attention logits, attention starts uniform over the dense graph,
#: the aggregated message is the same for every node of the hour and GraphNorm
#: removes it: training sits on a plateau. A larger gain makes attention depend
#: on correlation from the first step. Chosen on validation macro-F1 of the
#: synthetic market (see docs/model.md, "How the defaults were chosen").
EDGE_INIT_GAIN = 5.0

#: What a stored ``model_config`` without the temporal-era fields means: the
#: original architecture (no temporal encoder, no market context, correlation
#: as the only edge feature). Checkpoints written before these fields existed
#: therefore load as exactly the network they were trained as.
LEGACY_FIELDS: dict[str, Any] = {"lookback": 0, "context": False, "edge_dim": 1, "edge_gain": EDGE_INIT_GAIN,
                                 "current_skip": False, "context_inputs": False}


@dataclass
class ModelConfig:
    """Hyper-parameters of :class:`GATv2Classifier`.

    The defaults of the temporal-era fields are the legacy architecture
    (:data:`LEGACY_FIELDS`); ``python -m gnn_market.train`` sets its own
    defaults (``TrainConfig``).

    Args:
        in_channels: number of node features ``F``.
        hidden: width ``d`` of every hidden layer and of the returned embeddings;
            must be divisible by ``heads`` (heads are concatenated).
        heads: attention heads per layer.
        layers: number of ``GATv2Conv`` layers (2-3 recommended).
        dropout: dropout on hidden activations and on attention coefficients.
        lookback: ``L``, hours of each pair's history read by the per-node GRU
            before message passing; 0 = no temporal encoder (the node state is
            the current hour's features).
        context: add a per-hour market summary (mean of the valid nodes'
            states, linearly projected) to every node's embedding.
        edge_dim: edge features per edge: 1 = return correlation; 2 = also the
            lead-lag correlation of the source's previous-hour return with the
            target's return.
        edge_gain: gain on the Glorot init of the edge projections.
        current_skip: temporal models only: add a linear projection of the
            current hour's features to the GRU state, so the node state keeps
            the hour-``t`` inputs however the GRU compresses its window.
        context_inputs: with ``context``, pool the current hour's input
            features instead of the node states (the same for a model without
            a temporal encoder).
    """

    in_channels: int
    hidden: int = 64
    heads: int = 4
    layers: int = 2
    dropout: float = 0.1
    lookback: int = 0
    context: bool = False
    edge_dim: int = 1
    edge_gain: float = EDGE_INIT_GAIN
    current_skip: bool = False
    context_inputs: bool = False

    def __post_init__(self) -> None:
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.layers < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")
        if self.heads < 1 or self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a positive multiple of heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lookback < 0:
            raise ValueError(f"lookback must be >= 0 (0 = no temporal encoder), got {self.lookback}")
        if self.edge_dim not in (1, 2):
            raise ValueError(f"edge_dim must be 1 (correlation) or 2 (+ lead-lag), got {self.edge_dim}")
        if self.edge_gain <= 0:
            raise ValueError(f"edge_gain must be > 0, got {self.edge_gain}")

    @property
    def temporal(self) -> bool:
        """True when the model has a per-node temporal encoder (``lookback > 0``)."""
        return self.lookback > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Rebuild from :meth:`to_dict`; missing temporal-era fields mean the legacy model (:data:`LEGACY_FIELDS`)."""
        return cls(**{**LEGACY_FIELDS, **d})


class GATv2Classifier(torch.nn.Module):
    r"""Graph attention classifier of each trading pair's next hour.

    One graph per hour :math:`t`: node :math:`i` is a trading pair with
    normalised features :math:`\mathbf{x}_{i,t} \in \mathbb{R}^F` (known at
    :math:`t`), an edge :math:`j \to i` carries the Pearson correlation
    :math:`\rho_{ji}` of the two pairs' last 100 hourly log returns and, with
    ``edge_dim = 2``, the lead-lag correlation :math:`\lambda_{ji} =
    \operatorname{corr}(r_{j,s-1}, r_{i,s})` over the same window (fully
    connected, or the top-k by :math:`|\rho|`; self-loops only in the no-edge
    ablation). Self-loops are (re-)added with edge features 1.

    **Node state.** Without a temporal encoder (``lookback = 0``) it is
    :math:`\mathbf{h}^{(0)}_i = \mathbf{x}_{i,t}`. With one, a GRU reads the
    pair's last :math:`L` hours of features plus a validity flag
    (:class:`~gnn_market.windows.NodeWindows`), oldest first, from a zero state:

    .. math::
        \mathbf{s}_k = \operatorname{GRU}(\tilde{\mathbf{x}}_{i,t-L+k},
        \mathbf{s}_{k-1}), \quad k = 1..L, \qquad
        \mathbf{h}^{(0)}_i = \mathbf{s}_L \in \mathbb{R}^d,

    followed by dropout, so the graph mixes states rather than single-hour snapshots.
    With ``current_skip`` the current hour also enters directly,
    :math:`\mathbf{h}^{(0)}_i = \operatorname{dropout}(\mathbf{s}_L) +
    \mathbf{W}_x \mathbf{x}_{i,t} + \mathbf{b}_x`: a recurrent state that
    forgets or blurs hour :math:`t` cannot hide it from message passing.
    Nodes outside ``node_mask`` (no valid row at :math:`t`) get the state 0,
    as their features are 0 in a snapshot.

    **Message passing.** Each of the layers is a ``GATv2Conv`` (Brody et al.,
    2022) with :math:`H` concatenated heads of width :math:`d/H` and the edge
    features as edge attributes,

    .. math::
        \alpha_{ij} = \operatorname{softmax}_{j \in \mathcal{N}(i) \cup \{i\}}
        \left( \mathbf{a}^{\top} \operatorname{LeakyReLU}\left(
        \mathbf{W} [\mathbf{h}_i \,\Vert\, \mathbf{h}_j] + \mathbf{W}_e \mathbf{e}_{ji}
        \right) \right), \qquad
        \mathbf{h}_i' = \Big\Vert_{k=1}^{H} \sum_j \alpha^{(k)}_{ij}
        \mathbf{\Theta}^{(k)}_t \mathbf{h}_j + \mathbf{R}\mathbf{h}_i,

    (:math:`\mathbf{R}\mathbf{h}_i` a residual projection, so the graph term
    adds to a node's own state however attention is spread;
    :math:`\mathbf{W}_e` starts at ``edge_gain`` times its Glorot init so
    attention depends on the edge features from the first step) followed by
    ``GraphNorm`` computed per graph (``batch`` keeps hours that share a
    mini-batch apart), ReLU and dropout: :math:`\mathbf{z}_i`.

    **Market context** (``context=True``). ``GraphNorm`` removes each channel's
    per-hour mean, so market-wide information (a volatile hour, a sell-off)
    cannot survive message passing. The mean state of the hour's valid nodes
    :math:`\mathcal{V}_t` is therefore added back after the last layer:

    .. math::
        \mathbf{c}_t = \frac{1}{|\mathcal{V}_t|} \sum_{j \in \mathcal{V}_t}
        \mathbf{h}^{(0)}_j, \qquad \mathbf{z}_i \leftarrow \mathbf{z}_i +
        \mathbf{W}_c \mathbf{c}_t + \mathbf{b}_c.

    With ``context_inputs`` the mean runs over the current hour's input
    features :math:`\mathbf{x}_{j,t}` instead of the states: the market's level
    (its mean return, its volatility) reaches the head as the inputs state it,
    not as a GRU has squashed it.

    The embedding is :math:`\mathbf{z}_i \in \mathbb{R}^d`; the class scores are
    :math:`\log \operatorname{softmax}(\mathbf{W}_o \mathbf{z}_i + \mathbf{b}_o)`
    over DOWN / SIDEWAYS / UP.

    Note that ``GraphNorm`` normalises each channel across the nodes of one
    hour, so even the no-edge ablation sees cross-sectional statistics; only
    pairwise message passing is removed by the ablation.

    Args:
        config: a :class:`ModelConfig`.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)`, edge indices
          :math:`(2, |\mathcal{E}|)`, edge features :math:`(|\mathcal{E}|, D_e)`,
          batch vector :math:`(|\mathcal{V}|)` *(optional, one graph if None)*,
          lookback windows :math:`(|\mathcal{V}|, L, F + 1)` *(temporal models only)*,
          node mask :math:`(|\mathcal{V}|)` *(optional, all valid if None)*
        - **output:** log-probabilities :math:`(|\mathcal{V}|, 3)`,
          embeddings :math:`(|\mathcal{V}|, d)`
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        per_head = config.hidden // config.heads
        state_dim = config.in_channels
        self.temporal: torch.nn.GRU | None = None
        if config.temporal:
            self.temporal = torch.nn.GRU(config.in_channels + 1, config.hidden, batch_first=True)
            state_dim = config.hidden
        self.current = (torch.nn.Linear(config.in_channels, config.hidden)
                        if config.temporal and config.current_skip else None)
        self.convs = torch.nn.ModuleList()
        self.norms = torch.nn.ModuleList()
        for layer in range(config.layers):
            in_ch = state_dim if layer == 0 else config.hidden
            self.convs.append(DenseGATv2Conv(
                in_ch, per_head, heads=config.heads, concat=True, dropout=config.dropout,
                add_self_loops=True, edge_dim=config.edge_dim, fill_value=1.0, residual=True,
            ))
            self.norms.append(GraphNorm(config.hidden))
        context_dim = config.in_channels if config.context_inputs else state_dim
        self.context = torch.nn.Linear(context_dim, config.hidden) if config.context else None
        self.head = torch.nn.Linear(config.hidden, NUM_CLASSES)
        self._scale_edge_init()

    @torch.no_grad()
    def _scale_edge_init(self) -> None:
        for conv in self.convs:
            conv.lin_edge.weight.mul_(self.config.edge_gain)

    @property
    def embedding_dim(self) -> int:
        return self.config.hidden

    def reset_parameters(self) -> None:
        """Re-initialise every learnable parameter."""
        if self.temporal is not None:
            self.temporal.reset_parameters()
        if self.current is not None:
            self.current.reset_parameters()
        for conv, norm in zip(self.convs, self.norms):
            conv.reset_parameters()
            norm.reset_parameters()
        if self.context is not None:
            self.context.reset_parameters()
        self.head.reset_parameters()
        self._scale_edge_init()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None,
                batch: Tensor | None = None, x_seq: Tensor | None = None,
                node_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Return ``(log_probs [N, 3], embeddings [N, hidden])``.

        Args:
            x: node features ``[N, F]`` of the current hour.
            edge_index: ``[2, E]`` (may be empty: self-loops are added).
            edge_attr: edge features ``[E, edge_dim]`` (or ``[E]`` when ``edge_dim = 1``);
                ``None`` means all 1.
            batch: graph id of every node ``[N]`` when several hours are batched.
            x_seq: lookback windows ``[N, L, F + 1]`` (required iff ``config.lookback > 0``).
            node_mask: ``[N]`` bool, the valid nodes (None = all): the market context averages
                them, and a temporal model zeroes the others' states.
        """
        if edge_attr is None:
            edge_attr = x.new_ones((edge_index.size(1), self.config.edge_dim))
        elif edge_attr.dim() == 1:
            edge_attr = edge_attr.unsqueeze(-1)
        if edge_attr.size(-1) != self.config.edge_dim:
            raise ValueError(f"edge_attr has {edge_attr.size(-1)} features per edge, the model expects "
                             f"{self.config.edge_dim}")
        h = self.encode_nodes(x, x_seq)
        if self.temporal is not None and node_mask is not None:
            h = h * node_mask.to(h.dtype)[:, None]  # invalid nodes start from 0, like their features
        state = h
        for conv, norm in zip(self.convs, self.norms):
            h = conv(h, edge_index, edge_attr)
            h = norm(h, batch)
            h = F.relu(h)
            h = F.dropout(h, p=self.config.dropout, training=self.training)
        if self.context is not None:
            pooled = market_mean(x if self.config.context_inputs else state, batch, node_mask)
            h = h + self.context(pooled)[_graph_of(batch, h)]
        return F.log_softmax(self.head(h), dim=-1), h

    def forward_dense(self, x: Tensor, node_mask: Tensor, edge_attr: Tensor | None,
                      x_seq: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """:meth:`forward` on ``B`` fully connected hourly graphs held as dense tensors (the fast path).

        The same network as :meth:`forward` on a batch of snapshots where every present pair
        is connected to every other (``edge_attr`` given) or has only its self-loop
        (``edge_attr=None``, the no-edge ablation); see :class:`~gnn_market.dense_attention.DenseGATv2Conv`.

        Args:
            x: node features ``[B, N, F]`` (0 where absent).
            node_mask: ``[B, N]`` bool, the present pairs.
            edge_attr: ``[B, N, N, edge_dim]``, ``[b, i, j]`` the features of edge ``j -> i``, or None.
            x_seq: lookback windows ``[B * N, L, F + 1]`` (temporal models).
        Returns ``(log_probs [B, N, 3], embeddings [B, N, hidden])``.
        """
        B, N, F_in = x.shape
        if edge_attr is not None and edge_attr.shape != (B, N, N, self.config.edge_dim):
            raise ValueError(f"edge_attr must be [{B}, {N}, {N}, {self.config.edge_dim}], "
                             f"got {list(edge_attr.shape)}")
        h = self.encode_nodes(x.reshape(B * N, F_in), x_seq).view(B, N, -1)
        if self.temporal is not None:
            h = h * node_mask.to(h.dtype)[..., None]
        state = h
        adj = None if edge_attr is None else fully_connected(node_mask)
        for conv, norm in zip(self.convs, self.norms):
            h = conv.forward_dense(h, edge_attr, adj)
            h = F.relu(dense_graph_norm(norm, h))
            h = F.dropout(h, p=self.config.dropout, training=self.training)
        if self.context is not None:
            weight = node_mask.to(h.dtype)[..., None]
            pooled_from = x if self.config.context_inputs else state
            pooled = (pooled_from * weight).sum(1) / weight.sum(1).clamp(min=1.0)   # [B, C]
            h = h + self.context(pooled)[:, None, :]
        return F.log_softmax(self.head(h), dim=-1), h

    def encode_nodes(self, x: Tensor, x_seq: Tensor | None) -> Tensor:
        """Node states before message passing: ``x`` ``[N, F]``, or the GRU's last state ``[N, d]``
        (plus the projected current hour with ``current_skip``)."""
        if self.temporal is None:
            return x
        if x_seq is None:
            raise ValueError(f"this model reads {self.config.lookback}-hour lookback windows: pass x_seq")
        if x_seq.dim() != 3 or x_seq.size(0) != x.size(0) or x_seq.size(1) != self.config.lookback:
            raise ValueError(f"x_seq must be [{x.size(0)}, {self.config.lookback}, "
                             f"{self.config.in_channels + 1}], got {list(x_seq.shape)}")
        _, last = self.temporal(x_seq)
        state = F.dropout(last[-1], p=self.config.dropout, training=self.training)
        return state if self.current is None else state + self.current(x)

    def forward_batch(self, batch: Batch, windows: NodeWindows | None = None) -> tuple[Tensor, Tensor]:
        """:meth:`forward` on a batch of snapshots (``x``, ``edge_index``, ``edge_attr``, ``batch``,
        ``node_mask``, ``hour``), gathering lookback windows from ``windows`` for temporal models."""
        x_seq = None
        if self.temporal is not None:
            if windows is None or windows.length != self.config.lookback:
                raise ValueError(f"this model needs NodeWindows of length {self.config.lookback}")
            x_seq = windows.gather(batch.hour)
        return self(batch.x, batch.edge_index, batch.edge_attr, batch.batch, x_seq=x_seq,
                    node_mask=getattr(batch, "node_mask", None))


    def forward_hours(self, batch: "HourBatch", windows: NodeWindows | None = None) -> tuple[Tensor, Tensor]:
        """The network on an :class:`~gnn_market.hour_batches.HourBatch`: the dense fast path for fully
        connected (or edgeless) hours, PyG's sparse path when the batch carries snapshots (top-k).

        Returns ``(log_probs [B * N, 3], embeddings [B * N, hidden])``, hour-major (the node order of
        a PyG batch of full snapshots).
        """
        if not batch.dense:
            return self.forward_batch(batch.graphs, windows)
        x_seq = None
        if self.temporal is not None:
            if windows is None or windows.length != self.config.lookback:
                raise ValueError(f"this model needs NodeWindows of length {self.config.lookback}")
            x_seq = windows.gather(batch.hours)
        log_probs, h = self.forward_dense(batch.x, batch.node_mask, batch.edge_attr, x_seq)
        B, N = batch.node_mask.shape
        return log_probs.reshape(B * N, -1), h.reshape(B * N, -1)


def _graph_of(batch: Tensor | None, h: Tensor) -> Tensor:
    """Graph id of every node (zeros when ``batch`` is None)."""
    return h.new_zeros(h.size(0), dtype=torch.long) if batch is None else batch


def market_mean(h: Tensor, batch: Tensor | None = None, node_mask: Tensor | None = None) -> Tensor:
    """Per-graph mean ``[B, d]`` of node states ``h`` ``[N, d]`` over the nodes where ``node_mask`` is True.

    A graph without any valid node gets zeros.
    """
    index = _graph_of(batch, h)
    weight = h.new_ones(h.size(0)) if node_mask is None else node_mask.to(h.dtype)
    size = int(index.max()) + 1 if index.numel() else 1
    total = scatter(h * weight[:, None], index, dim=0, dim_size=size, reduce="sum")
    count = scatter(weight, index, dim=0, dim_size=size, reduce="sum")
    return total / count.clamp(min=1.0)[:, None]
