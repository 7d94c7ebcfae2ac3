"""GATv2 node classifier: hourly pair graph -> next-hour class log-probabilities.

See :class:`GATv2Classifier`. The graph itself is built by
:mod:`gnn_market.graph_builder`; this module only knows tensors.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import GATv2Conv, GraphNorm

from .classes import NUM_CLASSES
#: Gain on the Glorot init of each layer's edge projection ``W_e``. With gain 1
#: a correlation in [-1, 1] barely moves the attention logits, attention starts
#: uniform over the dense graph, the aggregated message is the same for every
#: node of the hour and GraphNorm removes it: training sits on a plateau. A
#: larger gain makes attention depend on correlation from the first step (on
#: the synthetic lead-lag market: test macro-F1 0.36 -> 0.45 after 15 epochs,
#: gains 5 and 10 alike; see docs/model.md).
EDGE_INIT_GAIN = 5.0


@dataclass
class ModelConfig:
    """Hyper-parameters of :class:`GATv2Classifier`.

    Args:
        in_channels: number of node features ``F``.
        hidden: width ``d`` of every hidden layer and of the returned embeddings;
            must be divisible by ``heads`` (heads are concatenated).
        heads: attention heads per layer.
        layers: number of ``GATv2Conv`` layers (2-3 recommended).
        dropout: dropout on hidden activations and on attention coefficients.
    """

    in_channels: int
    hidden: int = 64
    heads: int = 4
    layers: int = 2
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.layers < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")
        if self.heads < 1 or self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a positive multiple of heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return cls(**d)


class GATv2Classifier(torch.nn.Module):
    r"""Graph attention classifier of each trading pair's next hour.

    One graph per hour :math:`t`: node :math:`i` is a trading pair with
    normalised features :math:`\mathbf{x}_i \in \mathbb{R}^F` (known at
    :math:`t`), an edge :math:`j \to i` carries the Pearson correlation
    :math:`e_{ji} = \rho_{ji}` of the two pairs' last 100 hourly log returns
    (fully connected, or the top-k by :math:`|\rho|`; self-loops only in the
    no-edge ablation). Self-loops are (re-)added with :math:`e_{ii} = 1`.

    Each of the :math:`L` layers is a ``GATv2Conv`` (Brody et al., 2022) with
    :math:`H` concatenated heads of width :math:`d/H` and the edge weight as
    an edge feature,

    .. math::
        \alpha_{ij} = \operatorname{softmax}_{j \in \mathcal{N}(i) \cup \{i\}}
        \left( \mathbf{a}^{\top} \operatorname{LeakyReLU}\left(
        \mathbf{W} [\mathbf{h}_i \,\Vert\, \mathbf{h}_j] + \mathbf{W}_e e_{ji}
        \right) \right), \qquad
        \mathbf{h}_i' = \Big\Vert_{k=1}^{H} \sum_j \alpha^{(k)}_{ij}
        \mathbf{\Theta}^{(k)}_t \mathbf{h}_j + \mathbf{R}\mathbf{h}_i,

    (:math:`\mathbf{R}\mathbf{h}_i` a residual projection, so a node keeps its
    own signal however attention is spread; :math:`\mathbf{W}_e` starts at
    :data:`EDGE_INIT_GAIN` times its Glorot init so attention depends on the
    correlation from the first step) followed by ``GraphNorm`` computed
    per graph (``batch`` keeps hours that share a mini-batch apart), ReLU and
    dropout. The last hidden state is the node embedding
    :math:`\mathbf{z}_i \in \mathbb{R}^d`; the class scores are
    :math:`\log \operatorname{softmax}(\mathbf{W}_o \mathbf{z}_i + \mathbf{b}_o)`
    over DOWN / SIDEWAYS / UP.

    Note that ``GraphNorm`` normalises each channel across the nodes of one
    hour, so even the no-edge ablation sees cross-sectional statistics; only
    pairwise message passing is removed by the ablation.

    Args:
        config: a :class:`ModelConfig`.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)`, edge indices
          :math:`(2, |\mathcal{E}|)`, edge weights :math:`(|\mathcal{E}|, 1)`,
          batch vector :math:`(|\mathcal{V}|)` *(optional, one graph if None)*
        - **output:** log-probabilities :math:`(|\mathcal{V}|, 3)`,
          embeddings :math:`(|\mathcal{V}|, d)`
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        per_head = config.hidden // config.heads
        self.convs = torch.nn.ModuleList()
        self.norms = torch.nn.ModuleList()
        for layer in range(config.layers):
            in_ch = config.in_channels if layer == 0 else config.hidden
            self.convs.append(GATv2Conv(
                in_ch, per_head, heads=config.heads, concat=True, dropout=config.dropout,
                add_self_loops=True, edge_dim=1, fill_value=1.0, residual=True,
            ))
            self.norms.append(GraphNorm(config.hidden))
        self.head = torch.nn.Linear(config.hidden, NUM_CLASSES)
        self._scale_edge_init()

    @torch.no_grad()
    def _scale_edge_init(self) -> None:
        for conv in self.convs:
            conv.lin_edge.weight.mul_(EDGE_INIT_GAIN)

    @property
    def embedding_dim(self) -> int:
        return self.config.hidden

    def reset_parameters(self) -> None:
        """Re-initialise every learnable parameter."""
        for conv, norm in zip(self.convs, self.norms):
            conv.reset_parameters()
            norm.reset_parameters()
        self.head.reset_parameters()
        self._scale_edge_init()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None,
                batch: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Return ``(log_probs [N, 3], embeddings [N, hidden])``.

        Args:
            x: node features ``[N, F]``.
            edge_index: ``[2, E]`` (may be empty: self-loops are added).
            edge_attr: edge weights ``[E, 1]`` or ``[E]``; ``None`` means all 1.
            batch: graph id of every node ``[N]`` when several hours are batched.
        """
        if edge_attr is None:
            edge_attr = x.new_ones((edge_index.size(1), 1))
        elif edge_attr.dim() == 1:
            edge_attr = edge_attr.unsqueeze(-1)
        h = x
        for conv, norm in zip(self.convs, self.norms):
            h = conv(h, edge_index, edge_attr)
            h = norm(h, batch)
            h = F.relu(h)
            h = F.dropout(h, p=self.config.dropout, training=self.training)
        return F.log_softmax(self.head(h), dim=-1), h
