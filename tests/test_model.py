"""GATv2Classifier: shapes, probabilities, per-hour GraphNorm, edge weights, determinism."""
from __future__ import annotations

import pytest
import torch

from gnn_market.model import GATv2Classifier, ModelConfig

N, F = 12, 7


def dense_edges(n: int, offset: int = 0) -> torch.Tensor:
    src, dst = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = src != dst
    return torch.stack([src[keep], dst[keep]]) + offset


def make_model(seed: int = 0, **kw) -> GATv2Classifier:
    torch.manual_seed(seed)
    return GATv2Classifier(ModelConfig(in_channels=F, hidden=16, heads=2, **kw)).eval()


def hour(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ei = dense_edges(N)
    return torch.randn(N, F, generator=g), ei, torch.rand(ei.size(1), 1, generator=g) * 2 - 1


@pytest.mark.parametrize("layers", [2, 3])
def test_shapes_and_log_probs(layers: int) -> None:
    model = make_model(layers=layers)
    x, ei, ea = hour(1)
    log_probs, emb = model(x, ei, ea)
    assert log_probs.shape == (N, 3) and emb.shape == (N, 16)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(N))
    assert model.embedding_dim == 16


def test_no_edges_is_accepted() -> None:
    model = make_model()
    x, _, _ = hour(1)
    empty = torch.empty(2, 0, dtype=torch.long)
    log_probs, _ = model(x, empty, torch.empty(0, 1))
    assert torch.isfinite(log_probs).all()


def test_batched_hours_equal_each_hour_alone() -> None:
    """GraphNorm must use each hour's own statistics: batching must not mix hours."""
    model = make_model()
    (x1, ei1, ea1), (x2, ei2, ea2) = hour(1), hour(2)
    x2 = x2 * 5 + 3  # very different statistics in the second hour
    batch = torch.cat([torch.zeros(N), torch.ones(N)]).long()
    both, emb_both = model(torch.cat([x1, x2]), torch.cat([ei1, ei2 + N], 1), torch.cat([ea1, ea2]), batch)
    alone1, emb1 = model(x1, ei1, ea1)
    alone2, _ = model(x2, ei2, ea2)
    torch.testing.assert_close(both[:N], alone1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[N:], alone2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(emb_both[:N], emb1, atol=1e-5, rtol=1e-5)


def test_edge_attr_is_used() -> None:
    model = make_model()
    x, ei, ea = hour(1)
    a, _ = model(x, ei, ea)
    b, _ = model(x, ei, -ea)
    assert not torch.allclose(a, b, atol=1e-4)
    c, _ = model(x, ei, ea.squeeze(-1))  # [E] is accepted as [E, 1]
    torch.testing.assert_close(a, c)


def test_neighbours_change_a_nodes_output() -> None:
    model = make_model()
    x, ei, ea = hour(1)
    a, _ = model(x, ei, ea)
    x2 = x.clone()
    x2[1:] = torch.randn(N - 1, F)
    b, _ = model(x2, ei, ea)
    assert not torch.allclose(a[0], b[0], atol=1e-4)


def test_reset_parameters_changes_weights_and_keeps_shapes() -> None:
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    model.reset_parameters()
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(before[k].shape == after[k].shape for k in before)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_deterministic_given_seed() -> None:
    x, ei, ea = hour(3)
    outs = []
    for _ in range(2):
        model = make_model(seed=7).train()
        torch.manual_seed(11)  # dropout
        log_probs, _ = model(x, ei, ea)
        log_probs.sum().backward()
        outs.append((log_probs.detach(), model.head.weight.grad.clone()))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=0, atol=0)


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError):
        ModelConfig(in_channels=F, hidden=10, heads=4)
    with pytest.raises(ValueError):
        ModelConfig(in_channels=0)
