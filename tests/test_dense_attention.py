"""The dense GATv2 path equals PyG's GATv2Conv on the same fully connected graphs (values and gradients)."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import GATv2Conv, GraphNorm

from gnn_market.dense_attention import DenseGATv2Conv, dense_graph_norm, fully_connected, gatv2_scores

TOL = dict(atol=1e-5, rtol=1e-5)


def _graphs(B: int = 3, N: int = 7, F: int = 5, D: int = 2, seed: int = 0):
    """Random hours with some absent pairs: dense inputs and the equivalent PyG edge list."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, F, generator=g)
    mask = torch.rand(B, N, generator=g) > 0.25
    mask[:, 0] = True
    x = x * mask[..., None]
    edge = torch.rand(B, N, N, D, generator=g) * 2 - 1
    src, dst, attr = [], [], []
    for b in range(B):  # the reference graph, built the slow obvious way
        for i in range(N):
            for j in range(N):
                if i != j and mask[b, i] and mask[b, j]:
                    src.append(b * N + j)
                    dst.append(b * N + i)
                    attr.append(edge[b, i, j])
    edge_index = torch.tensor([src, dst], dtype=torch.long)
    return x, mask, edge, edge_index, torch.stack(attr)


def _pair(in_ch: int, out_ch: int, heads: int, D: int | None, seed: int, **kw):
    torch.manual_seed(seed)
    sparse = GATv2Conv(in_ch, out_ch, heads=heads, edge_dim=D, fill_value=1.0, residual=True, **kw)
    dense = DenseGATv2Conv(in_ch, out_ch, heads=heads, edge_dim=D, fill_value=1.0, residual=True, **kw)
    dense.load_state_dict(sparse.state_dict())  # same names: loads without renaming
    with torch.no_grad():
        sparse.att.mul_(3.0)  # sharper attention than the init, so a wrong mask or softmax shows
        dense.att.copy_(sparse.att)
    return sparse.eval(), dense.eval()


def test_same_parameters_as_gatv2conv():
    sparse = GATv2Conv(4, 8, heads=2, edge_dim=2, residual=True)
    dense = DenseGATv2Conv(4, 8, heads=2, edge_dim=2, residual=True)
    assert {k: v.shape for k, v in sparse.state_dict().items()} == {k: v.shape for k, v in dense.state_dict().items()}


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("D", [1, 2])
def test_layers_equal_pyg_values_and_gradients(layers, D):
    B, N, F, heads, C = 3, 7, 5, 2, 4
    x, mask, edge, edge_index, edge_attr = _graphs(B, N, F, D, seed=layers)
    pairs = [_pair(F if k == 0 else heads * C, C, heads, D, seed=10 + k) for k in range(layers)]
    norms = [GraphNorm(heads * C) for _ in range(layers)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.mean_scale.uniform_(0.2, 1.0)
    batch = torch.arange(B).repeat_interleave(N)

    xs = x.reshape(B * N, F).clone().requires_grad_(True)
    h = xs
    for (sparse, _), norm in zip(pairs, norms):
        h = torch.relu(norm(sparse(h, edge_index, edge_attr), batch))
    xd = x.clone().requires_grad_(True)
    adj = fully_connected(mask)
    hd = xd
    for (_, dense), norm in zip(pairs, norms):
        hd = torch.relu(dense_graph_norm(norm, dense.forward_dense(hd, edge, adj)))
    torch.testing.assert_close(hd.reshape(B * N, -1), h, **TOL)

    weight = torch.randn_like(h)
    (h * weight).sum().backward()
    (hd.reshape(B * N, -1) * weight).sum().backward()
    torch.testing.assert_close(xd.grad.reshape(B * N, F), xs.grad, **TOL)
    for sparse, dense in pairs:
        for (name, p_s), (_, p_d) in zip(sparse.named_parameters(), dense.named_parameters()):
            torch.testing.assert_close(p_d.grad, p_s.grad, **TOL, msg=lambda m, n=name: f"{n}: {m}")


def test_absent_pairs_neither_send_nor_receive():
    """An absent node's output is its own self-loop message; present nodes ignore it."""
    x, mask, edge, _, _ = _graphs(B=2, N=6, seed=3)
    _, dense = _pair(5, 4, 2, 2, seed=1)
    out = dense.forward_dense(x, edge, fully_connected(mask))
    absent = ~mask
    changed = x.clone()
    changed[absent] = 100.0  # an absent node's features must not reach anyone else
    edge2 = edge.clone()
    edge2[absent] = 7.0
    out2 = dense.forward_dense(changed, edge2, fully_connected(mask))
    torch.testing.assert_close(out2[mask], out[mask], **TOL)
    alone = dense.lin_l(changed) + dense.res(changed) + dense.bias  # alpha = 1 on the self-loop
    torch.testing.assert_close(out2[absent], alone[absent], **TOL)


def test_no_edges_is_self_loops_only():
    x, mask, *_ = _graphs(B=2, N=5, seed=4)
    sparse, dense = _pair(5, 3, 2, 2, seed=2)
    loops = torch.arange(10)
    ref = sparse(x.reshape(10, 5), torch.stack([loops, loops]), torch.ones(10, 2))
    torch.testing.assert_close(dense.forward_dense(x, None, None).reshape(10, -1), ref, **TOL)


def test_diagonal_is_the_fill_value_whatever_the_input_holds():
    x, mask, edge, _, _ = _graphs(B=2, N=5, seed=5)
    _, dense = _pair(5, 3, 2, 2, seed=3)
    adj = fully_connected(mask)
    other = edge.clone()
    other.diagonal(dim1=1, dim2=2).fill_(-0.7)
    torch.testing.assert_close(dense.forward_dense(x, other, adj), dense.forward_dense(x, edge, adj), **TOL)


@pytest.mark.parametrize("chunk", [1, 17, 10_000, 1 << 22])
def test_scores_chunking_does_not_change_values_or_gradients(chunk):
    g = torch.Generator().manual_seed(0)
    B, N, H, C, D = 3, 6, 2, 4, 2
    x_l = torch.randn(B, N, H * C, generator=g, requires_grad=True)
    x_r = torch.randn(B, N, H * C, generator=g, requires_grad=True)
    e = torch.randn(B, N, N, D, generator=g)
    w = torch.randn(H * C, D, generator=g, requires_grad=True)
    att = torch.randn(1, H, C, generator=g, requires_grad=True)
    # the obvious formula, all of it in autograd
    pre = x_r[:, :, None] + x_l[:, None, :] + e @ w.T
    ref = (torch.nn.functional.leaky_relu(pre, 0.2).view(B, N, N, H, C) * att.view(H, C)).sum(-1)
    ref = ref.permute(0, 3, 1, 2)  # [B, H, target, source]
    weight = torch.randn(B, H, N, N, generator=g)
    ref_grads = torch.autograd.grad((ref * weight).sum(), (x_l, x_r, w, att))
    out = gatv2_scores(x_l, x_r, e, w, att, 0.2, chunk=chunk)
    torch.testing.assert_close(out, ref, **TOL)
    for got, want in zip(torch.autograd.grad((out * weight).sum(), (x_l, x_r, w, att)), ref_grads):
        torch.testing.assert_close(got, want, **TOL)


def test_scores_pass_gradcheck_in_double():
    g = torch.Generator().manual_seed(1)
    args = [torch.randn(2, 4, 6, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    e = torch.randn(2, 4, 4, 1, generator=g, dtype=torch.float64)
    w = torch.randn(6, 1, generator=g, dtype=torch.float64, requires_grad=True)
    att = torch.randn(1, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, w_, at: gatv2_scores(a, b, e, w_, at, 0.2, chunk=8),
                                    (*args, w, att))


def test_non_finite_edge_features_are_refused():
    x_l = torch.zeros(1, 3, 4)
    e = torch.zeros(1, 3, 3, 1)
    e[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        gatv2_scores(x_l, x_l, e, torch.zeros(4, 1), torch.zeros(1, 2, 2))


def test_string_fill_value_is_refused_on_the_dense_path():
    conv = DenseGATv2Conv(3, 2, edge_dim=1, fill_value="mean")
    with pytest.raises(ValueError, match="fill_value"):
        conv.forward_dense(torch.zeros(1, 2, 3), torch.zeros(1, 2, 2, 1), torch.ones(1, 2, 2, dtype=torch.bool))


def test_bfloat16_autocast_runs_forward_and_backward_close_to_float32():
    """``--amp``: the dense layer under torch.autocast(bfloat16) stays within bfloat16 rounding of fp32."""
    x, mask, edge, _, _ = _graphs(B=2, N=6, seed=6)
    _, dense = _pair(5, 4, 2, 2, seed=4)
    adj = fully_connected(mask)
    want = dense.forward_dense(x, edge, adj)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = dense.forward_dense(x, edge, adj)
    got.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in dense.parameters())
    torch.testing.assert_close(got.float(), want, atol=0.1, rtol=0.05)
