r"""Fully connected GATv2 attention as batched dense tensor operations.

The hourly graph of ``N`` pairs is fully connected: every present pair
attends to every other, so an edge list of ``N (N - 1)`` entries per hour
carries no information beyond ``node_mask``. :class:`DenseGATv2Conv` is a
``torch_geometric.nn.GATv2Conv`` (same parameters, same names, same
``reset_parameters``: a checkpoint loads into either path) with a second
forward, :meth:`DenseGATv2Conv.forward_dense`, over ``[B, N, ...]`` tensors of
``B`` hours. PyG's sparse ``forward`` stays the reference and the path for
top-k graphs; ``tests/test_dense_attention.py`` checks the two agree.

The expensive part of GATv2 is its score, a LeakyReLU *inside* the sum over
channels, which needs a ``[B, N, N, H, C]`` tensor. :func:`gatv2_scores`
computes it in cache-sized chunks and recomputes each chunk in the backward
pass instead of keeping it (a custom ``autograd.Function``): memory grows as
``B N^2 H`` (the scores), not ``B N^2 H C``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import GATv2Conv, GraphNorm

__all__ = ["DenseGATv2Conv", "gatv2_scores", "attention_dropout", "dense_graph_norm", "fully_connected",
           "SCORE_CHUNK_ELEMENTS"]

#: Elements of the ``[.., N, H * C]`` pre-activation tensor computed at once (4 MB in float32): small
#: enough to stay in cache between the chunk's passes, large enough to amortise the per-op overhead.
SCORE_CHUNK_ELEMENTS = 1 << 20


def _chunks(B: int, N: int, width: int, budget: int) -> list[tuple[slice, slice]]:
    """(hour slice, target-row slice) blocks with at most ~``budget`` elements of ``[b, i, N, width]``."""
    per_hour = N * N * width
    if per_hour <= budget:
        step = max(1, budget // per_hour)
        return [(slice(b, min(b + step, B)), slice(0, N)) for b in range(0, B, step)]
    rows = max(1, budget // (N * width))
    return [(slice(b, b + 1), slice(i, min(i + rows, N))) for b in range(B) for i in range(0, N, rows)]


def _augmented(edge_attr: Tensor | None, x_l: Tensor) -> Tensor:
    """``[B, N, N, D + 1]``: the edge features and a column of ones (``[B, N, N, 1]`` without features)."""
    B, N, _ = x_l.shape
    ones = x_l.new_ones((B, N, N, 1))
    return ones if edge_attr is None else torch.cat([edge_attr.to(x_l.dtype), ones], dim=-1)


def _right_factors(x_r: Tensor, w_edge: Tensor | None) -> Tensor:
    """``[B, N, D + 1, H * C]``: per target ``i``, ``[W_e^T; x_r[i]]`` (``[B, N, 1, HC]`` without ``W_e``)."""
    right = x_r[:, :, None, :]
    if w_edge is None:
        return right
    return torch.cat([w_edge.T.expand(*x_r.shape[:2], -1, -1), right], dim=2)


def _pre_activation(x_l: Tensor, right: Tensor, e_aug: Tensor, hours: slice, rows: slice) -> Tensor:
    """``x_r[b, i] + x_l[b, j] + W_e e[b, i, j]`` for one chunk: ``[b, i, N, H * C]``.

    One batched matrix product per target row, ``[e_ij, 1] @ [W_e^T; x_r[i]]``, added to ``x_l[j]``
    (BLAS does it in one pass over the output; elementwise broadcasts take several).
    """
    e = e_aug[hours, rows]                                                       # [b, i, N, D + 1]
    if e.size(0) == 1:
        pre = torch.baddbmm(x_l[hours][0].expand(e.size(1), -1, -1), e[0], right[hours, rows][0])
        return pre.unsqueeze(0)
    return torch.matmul(e, right[hours, rows]).add_(x_l[hours, None])


def _block_att(att: Tensor) -> Tensor:
    """``att [1, H, C]`` -> block-diagonal ``[H, H * C]``: row ``h`` holds ``a_h`` in head ``h``'s columns."""
    H, C = att.shape[-2:]
    eye = torch.eye(H, dtype=att.dtype, device=att.device)
    return (eye[:, :, None] * att.reshape(1, H, C)).reshape(H, H * C)


class _GATv2Scores(torch.autograd.Function):
    """See :func:`gatv2_scores`. Saves only its (small) inputs; the backward recomputes each chunk."""

    @staticmethod
    def forward(ctx, x_l: Tensor, x_r: Tensor, edge_attr: Tensor | None, w_edge: Tensor | None, att: Tensor,
                negative_slope: float, chunk: int) -> Tensor:
        B, N, HC = x_l.shape
        H = att.size(1)
        block = _block_att(att)                                                  # [H, HC]
        e_aug = _augmented(edge_attr if w_edge is not None else None, x_l)
        right = _right_factors(x_r, w_edge)
        scores = x_l.new_empty((B, H, N, N))
        for hours, rows in _chunks(B, N, HC, chunk):
            act = F.leaky_relu_(_pre_activation(x_l, right, e_aug, hours, rows), negative_slope)
            # [H, HC] @ [b, i, HC, N] -> [b, i, H, N]: the heads' weighted channel sums, head-major
            scores[hours, :, rows] = torch.matmul(block, act.transpose(-1, -2)).transpose(1, 2)
        ctx.save_for_backward(x_l, x_r, e_aug, w_edge, att)
        ctx.negative_slope, ctx.chunk = negative_slope, chunk
        return scores

    @staticmethod
    def backward(ctx, grad: Tensor):
        x_l, x_r, e_aug, w_edge, att = ctx.saved_tensors
        B, N, HC = x_l.shape
        H, D = att.size(1), e_aug.size(-1) - 1
        block = _block_att(att)
        d_l, d_r = torch.zeros_like(x_l), torch.zeros_like(x_r)
        d_block = x_l.new_zeros((H, HC))
        d_edge = None if w_edge is None else torch.zeros_like(w_edge)
        right = _right_factors(x_r, w_edge)
        for hours, rows in _chunks(B, N, HC, ctx.chunk):
            pre = _pre_activation(x_l, right, e_aug, hours, rows)               # [b, i, N, HC]
            g = grad[hours, :, rows].transpose(1, 2)                             # [b, i, H, N]
            d_block += torch.matmul(g, F.leaky_relu(pre, ctx.negative_slope)).sum((0, 1))   # [H, HC]
            d_pre = torch.ops.aten.leaky_relu_backward(torch.matmul(g.transpose(-1, -2), block), pre,
                                                       ctx.negative_slope, False)  # [b, i, N, HC]
            # [b, i, D + 1, N] @ [b, i, N, HC]: sums over sources weighted by each edge feature and by 1
            sums = torch.matmul(e_aug[hours, rows].transpose(-1, -2), d_pre)     # [b, i, D + 1, HC]
            d_r[hours, rows] += sums[:, :, D]
            if d_edge is not None:
                d_edge += sums[:, :, :D].sum((0, 1)).T
            d_l[hours] += d_pre.sum(1)
        C = HC // H
        d_att = d_block.view(H, H, C).diagonal(dim1=0, dim2=1).T.reshape(1, H, C)  # head h's own block
        return d_l, d_r, None, d_edge, d_att, None, None


def gatv2_scores(x_l: Tensor, x_r: Tensor, edge_attr: Tensor | None, w_edge: Tensor | None, att: Tensor,
                 negative_slope: float = 0.2, chunk: int = SCORE_CHUNK_ELEMENTS) -> Tensor:
    r"""GATv2 attention logits of every (target, source) pair of every hour.

    .. math::
        s_{b,h,i,j} = \sum_c a_{h,c} \, \operatorname{LeakyReLU}\big(
        (\mathbf{W}_r \mathbf{x}_{b,i})_{h,c} + (\mathbf{W}_l \mathbf{x}_{b,j})_{h,c}
        + (\mathbf{W}_e \mathbf{e}_{b,i,j})_{h,c} \big)

    Shapes:
        - **x_l**, **x_r:** :math:`(B, N, H C)` (source and target projections)
        - **edge_attr:** :math:`(B, N, N, D)`, ``[b, i, j]`` the features of edge ``j -> i``
          (finite everywhere; ignored when ``w_edge`` is None)
        - **w_edge:** :math:`(H C, D)` (``lin_edge.weight``) or None
        - **att:** :math:`(1, H, C)`
        - **output:** :math:`(B, H, N, N)` (hour, head, target, source)

    Gradients flow to ``x_l``, ``x_r``, ``w_edge`` and ``att`` (not to the edge features).
    """
    # one reduction instead of an elementwise test: any NaN or inf makes the sum non-finite
    if w_edge is not None and (edge_attr is None or not bool(torch.isfinite(edge_attr.sum()))):
        raise ValueError("edge_attr must be given and finite wherever w_edge is used")
    # one dtype throughout (under autocast x_l is bfloat16 while the parameters stay float32); the casts
    # are differentiable, so each gradient comes back in its input's dtype
    dtype = x_l.dtype
    with torch.autocast(device_type=x_l.device.type, enabled=False):
        return _GATv2Scores.apply(x_l, x_r.to(dtype), None if edge_attr is None else edge_attr.to(dtype),
                                  None if w_edge is None else w_edge.to(dtype), att.to(dtype), negative_slope, chunk)


def attention_dropout(alpha: Tensor, p: float, training: bool) -> Tensor:
    """Dropout on attention coefficients (each (hour, head, target, source) kept with probability ``1 - p``).

    ``F.dropout`` draws a float per coefficient; at ``B N^2 H`` coefficients that dominates a layer on
    the CPU, so the mask comes from 15-bit integers instead (``p`` rounded to a multiple of 2^-15,
    e.g. 0.1 -> 0.100006), about 4x faster, with the same seeding (torch's global generator).
    """
    if not training or p <= 0.0:
        return alpha
    if p >= 1.0:
        return torch.zeros_like(alpha)
    threshold = int(round(p * 2**15))
    keep = torch.randint(0, 2**15, alpha.shape, dtype=torch.int16, device=alpha.device) >= threshold
    return torch.where(keep, alpha * (2**15 / (2**15 - threshold)), 0.0)


def fully_connected(node_mask: Tensor) -> Tensor:
    """Adjacency ``[B, N, N]`` bool of the hourly graphs: ``[b, i, j]`` True for present ``i != j`` and on the
    diagonal (every node's self-loop, present or not, as ``GATv2Conv(add_self_loops=True)`` adds them)."""
    adj = node_mask[:, :, None] & node_mask[:, None, :]
    eye = torch.eye(node_mask.size(1), dtype=torch.bool, device=node_mask.device)
    return adj | eye


def dense_graph_norm(norm: GraphNorm, h: Tensor) -> Tensor:
    """``GraphNorm`` of each hour's nodes, ``h`` ``[B, N, C]`` -> ``[B, N, C]`` (every node of the hour counts,
    as in a PyG batch of full snapshots)."""
    mean = h.mean(dim=1, keepdim=True)
    out = h - mean * norm.mean_scale
    std = (out.pow(2).mean(dim=1, keepdim=True) + norm.eps).sqrt()
    return norm.weight * out / std + norm.bias


class DenseGATv2Conv(GATv2Conv):
    r"""``GATv2Conv`` with a dense forward for fully connected hourly graphs.

    Same constructor, parameters (``lin_l``, ``lin_r``, ``att``, ``lin_edge``,
    ``res``, ``bias``) and sparse :meth:`forward` as
    ``torch_geometric.nn.GATv2Conv``. :meth:`forward_dense` computes, for every
    hour ``b`` and target ``i`` with neighbours :math:`\mathcal{N}(i)` given by
    ``adj[b, i]`` (the diagonal, the self-loop, must be True),

    .. math::
        \alpha_{ij} = \operatorname{softmax}_{j \in \mathcal{N}(i)}
        \left( \mathbf{a}^{\top} \operatorname{LeakyReLU}\left(
        \mathbf{W}_r \mathbf{x}_i + \mathbf{W}_l \mathbf{x}_j + \mathbf{W}_e \mathbf{e}_{ij}
        \right) \right), \qquad
        \mathbf{x}'_i = \Big\Vert_{h} \sum_{j \in \mathcal{N}(i)} \alpha^{(h)}_{ij} \mathbf{W}_l^{(h)} \mathbf{x}_j
        + \mathbf{R} \mathbf{x}_i + \mathbf{b},

    exactly the sparse layer's output on the graph whose edges are ``adj``
    (self-loops carrying ``fill_value``), with dropout on :math:`\alpha`
    in training. ``adj=None`` means self-loops only (the no-edge ablation):
    :math:`\alpha_{ii} = 1` and no score is computed.

    Only a float ``fill_value`` is supported on the dense path.

    Shapes:
        - **x:** :math:`(B, N, F_{in})`
        - **edge_attr:** :math:`(B, N, N, D)` or None, ``[b, i, j]`` the features of edge ``j -> i``;
          the diagonal is taken as ``fill_value`` whatever it holds
        - **adj:** :math:`(B, N, N)` bool or None
        - **output:** :math:`(B, N, H C)` (``concat``) or :math:`(B, N, C)`
    """

    def forward_dense(self, x: Tensor, edge_attr: Tensor | None, adj: Tensor | None) -> Tensor:
        """Dense forward; see the class docstring for shapes."""
        if not isinstance(self.fill_value, (int, float)):
            raise ValueError(f"the dense path needs a float fill_value, got {self.fill_value!r}")
        if not self.add_self_loops:
            raise ValueError("the dense path always adds self-loops (add_self_loops=True)")
        B, N, _ = x.shape
        H, C = self.heads, self.out_channels
        x_l = self.lin_l(x)
        x_r = x_l if self.share_weights else self.lin_r(x)
        if adj is None:
            alpha = F.dropout(x_l.new_ones((B, N, H, 1)), p=self.dropout, training=self.training)
            out = x_l.view(B, N, H, C) * alpha
        else:
            w_edge = None
            if self.lin_edge is not None:
                if edge_attr is None:
                    raise ValueError("this layer reads edge features: pass edge_attr [B, N, N, D]")
                edge_attr = self._with_self_loop_fill(edge_attr)
                w_edge = self.lin_edge.weight
            scores = gatv2_scores(x_l, x_r, edge_attr, w_edge, self.att, self.negative_slope)  # [B, H, N, N]
            scores = scores.masked_fill(~adj[:, None], float("-inf"))
            alpha = torch.softmax(scores, dim=-1)                              # over sources j
            alpha = attention_dropout(alpha, self.dropout, self.training)
            # [B, H, N_i, N_j] @ [B, H, N_j, C] -> [B, H, N_i, C]
            out = (alpha @ x_l.view(B, N, H, C).transpose(1, 2)).transpose(1, 2)
        out = out.reshape(B, N, H * C) if self.concat else out.mean(dim=2)
        if self.res is not None:
            out = out + self.res(x)
        if self.bias is not None:
            out = out + self.bias
        return out

    def _with_self_loop_fill(self, edge_attr: Tensor) -> Tensor:
        """``edge_attr`` with ``fill_value`` on the diagonal (a copy only when it holds something else)."""
        diagonal = edge_attr.diagonal(dim1=1, dim2=2)
        if bool((diagonal == self.fill_value).all()):
            return edge_attr
        edge_attr = edge_attr.clone()
        edge_attr.diagonal(dim1=1, dim2=2).fill_(float(self.fill_value))
        return edge_attr
