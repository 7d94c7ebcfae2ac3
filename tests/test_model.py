"""GATv2Classifier: shapes, probabilities, per-hour GraphNorm, edge weights, determinism; the temporal
encoder against a hand-written GRU, the market context against a hand computation, legacy configs."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import GraphNorm

from gnn_market.model import LEGACY_FIELDS, GATv2Classifier, ModelConfig, market_mean

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


def test_default_network_is_two_gatv2_layers_each_with_graphnorm() -> None:
    """The task's architecture: ModelConfig's default stacks 2 GATv2 layers, a GraphNorm after each."""
    model = GATv2Classifier(ModelConfig(in_channels=F))
    assert ModelConfig(in_channels=F).layers == 2 and len(model.convs) == 2 and len(model.norms) == 2
    assert all(isinstance(norm, GraphNorm) for norm in model.norms)


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


# --------------------------------------------------------------------------- temporal model
L = 5


def temporal_model(seed: int = 0, **kw) -> GATv2Classifier:
    torch.manual_seed(seed)
    return GATv2Classifier(ModelConfig(in_channels=F, hidden=16, heads=2, lookback=L, **kw)).eval()


def windows(seed: int, n: int = N) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, L, F + 1, generator=g)


def gru_by_hand(gru: torch.nn.GRU, seq: torch.Tensor) -> torch.Tensor:
    """Textbook GRU (Cho et al.; PyTorch's gate order r, z, n) from a zero state; returns the last state."""
    w_ih, w_hh, b_ih, b_hh = gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0
    d = gru.hidden_size
    out = []
    for node in seq:
        h = torch.zeros(d)
        for x in node:
            gi, gh = w_ih @ x + b_ih, w_hh @ h + b_hh
            r = torch.sigmoid(gi[:d] + gh[:d])
            z = torch.sigmoid(gi[d:2 * d] + gh[d:2 * d])
            n = torch.tanh(gi[2 * d:] + r * gh[2 * d:])
            h = (1 - z) * n + z * h
        out.append(h)
    return torch.stack(out)


def test_temporal_encoder_is_a_gru_over_the_window() -> None:
    model = temporal_model()
    x, _, _ = hour(1)
    seq = windows(2)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_nodes(x, seq), gru_by_hand(model.temporal, seq), atol=1e-5, rtol=1e-5)


def test_temporal_model_reads_the_window_and_refuses_a_missing_one() -> None:
    model = temporal_model()
    x, ei, ea = hour(1)
    seq = windows(2)
    a, emb = model(x, ei, ea, x_seq=seq)
    assert a.shape == (N, 3) and emb.shape == (N, 16)
    older = seq.clone()
    older[:, 0] += 1.0  # the oldest hour of every window
    b, _ = model(x, ei, ea, x_seq=older)
    assert not torch.allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError, match="x_seq"):
        model(x, ei, ea)
    with pytest.raises(ValueError, match="x_seq"):
        model(x, ei, ea, x_seq=seq[:, 1:])


def test_market_mean_against_a_loop() -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(10, 3, generator=g)
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    mask = torch.tensor([1, 0, 1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.bool)
    got = market_mean(h, batch, mask)
    for b in range(3):
        sel = (batch == b) & mask
        want = h[sel].mean(0) if sel.any() else torch.zeros(3)
        torch.testing.assert_close(got[b], want)
    torch.testing.assert_close(market_mean(h), h.mean(0, keepdim=True))


def test_context_adds_the_projected_mean_valid_state_to_every_node() -> None:
    """z_i = z_i(no context) + W_c mean_{valid j of i's hour} h0_j + b_c, by hand, on two batched hours."""
    model = temporal_model(context=True)
    (x1, _, _), (x2, _, _) = hour(1), hour(2)
    x = torch.cat([x1, x2])
    seq = torch.cat([windows(3), windows(4)])
    batch = torch.cat([torch.zeros(N), torch.ones(N)]).long()
    mask = torch.ones(2 * N, dtype=torch.bool)
    mask[[0, 5, N + 1]] = False
    empty = torch.empty(2, 0, dtype=torch.long)
    with torch.no_grad():
        _, z = model(x, empty, None, batch, x_seq=seq, node_mask=mask)
        bare = temporal_model(context=True)
        bare.context.weight.zero_()
        bare.context.bias.zero_()
        _, z0 = bare(x, empty, None, batch, x_seq=seq, node_mask=mask)
        h0 = gru_by_hand(model.temporal, seq)
        for b in range(2):
            rows = slice(b * N, (b + 1) * N)
            c = h0[rows][mask[rows]].mean(0)
            want = z0[rows] + model.context.weight @ c + model.context.bias
            torch.testing.assert_close(z[rows], want, atol=1e-5, rtol=1e-5)
        # an invalid node's state does not enter the context: change its window, others stay put
        seq2 = seq.clone()
        seq2[0] += 3.0
        _, z2 = model(x, empty, None, batch, x_seq=seq2, node_mask=mask)
        torch.testing.assert_close(z2[1:], z[1:], atol=1e-6, rtol=0)


def test_temporal_context_hours_batched_equal_each_hour_alone() -> None:
    model = temporal_model(context=True, edge_dim=2)
    (x1, ei1, ea1), (x2, ei2, ea2) = hour(1), hour(2)
    ea1, ea2 = torch.cat([ea1, -ea1], 1), torch.cat([ea2, ea2 * 0.5], 1)
    s1, s2 = windows(5), windows(6) * 3
    batch = torch.cat([torch.zeros(N), torch.ones(N)]).long()
    both, _ = model(torch.cat([x1, x2]), torch.cat([ei1, ei2 + N], 1), torch.cat([ea1, ea2]), batch,
                    x_seq=torch.cat([s1, s2]))
    torch.testing.assert_close(both[:N], model(x1, ei1, ea1, x_seq=s1)[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[N:], model(x2, ei2, ea2, x_seq=s2)[0], atol=1e-5, rtol=1e-5)


def test_lead_lag_edge_feature_is_read() -> None:
    model = make_model(edge_dim=2)
    x, ei, ea = hour(1)
    a, _ = model(x, ei, torch.cat([ea, ea], 1))
    b, _ = model(x, ei, torch.cat([ea, -ea], 1))
    assert not torch.allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError, match="edge_attr"):
        model(x, ei, ea)


def test_legacy_config_dicts_mean_the_original_architecture() -> None:
    """A stored model_config without the temporal-era fields is the original network, not the new defaults."""
    legacy = {"in_channels": F, "hidden": 16, "heads": 2, "layers": 2, "dropout": 0.1}
    config = ModelConfig.from_dict(legacy)
    assert config.lookback == 0 and config.context is False and config.edge_dim == 1
    assert config == ModelConfig.from_dict({**legacy, **LEGACY_FIELDS})
    model = GATv2Classifier(config)
    assert model.temporal is None and model.context is None
    assert all(k.split(".")[0] in ("convs", "norms", "head") for k in model.state_dict())
    full = ModelConfig(in_channels=F, hidden=16, heads=2, lookback=24, context=True, edge_dim=2, edge_gain=3.0)
    assert ModelConfig.from_dict(full.to_dict()) == full


def test_edge_gain_scales_the_initial_edge_projection() -> None:
    torch.manual_seed(0)
    one = GATv2Classifier(ModelConfig(in_channels=F, hidden=16, heads=2, edge_gain=1.0))
    torch.manual_seed(0)
    five = GATv2Classifier(ModelConfig(in_channels=F, hidden=16, heads=2, edge_gain=5.0))
    torch.testing.assert_close(five.convs[0].lin_edge.weight, 5.0 * one.convs[0].lin_edge.weight)


def test_temporal_reset_parameters_and_determinism() -> None:
    model = temporal_model(context=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(99)
    model.reset_parameters()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k.startswith("temporal"))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k.startswith("context"))
    x, ei, ea = hour(3)
    outs = [temporal_model(seed=4, context=True)(x, ei, ea, x_seq=windows(7))[0] for _ in range(2)]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_bad_temporal_config_is_refused() -> None:
    with pytest.raises(ValueError, match="lookback"):
        ModelConfig(in_channels=F, lookback=-1)
    with pytest.raises(ValueError, match="edge_dim"):
        ModelConfig(in_channels=F, edge_dim=3)
    with pytest.raises(ValueError, match="edge_gain"):
        ModelConfig(in_channels=F, edge_gain=0.0)


def test_current_skip_adds_the_projected_current_hour_to_the_gru_state() -> None:
    """h0 = GRU(window) + W_x x_t + b_x with the skip; without it x_t reaches a temporal model only via x_seq."""
    x, ei, ea = hour(1)
    seq = windows(2)
    skip = temporal_model(current_skip=True)
    with torch.no_grad():
        expected = gru_by_hand(skip.temporal, seq) + x @ skip.current.weight.T + skip.current.bias
        torch.testing.assert_close(skip.encode_nodes(x, seq), expected, atol=1e-5, rtol=1e-5)
        a, _ = skip(x, ei, ea, x_seq=seq)
        b, _ = skip(x + 1.0, ei, ea, x_seq=seq)
    assert not torch.allclose(a, b, atol=1e-4)
    plain = temporal_model()
    assert plain.current is None
    with torch.no_grad():
        torch.testing.assert_close(plain(x, ei, ea, x_seq=seq)[0], plain(x + 1.0, ei, ea, x_seq=seq)[0])
    # Snapshot models have no GRU to skip around: the flag changes nothing there.
    assert make_model(current_skip=True).current is None
    assert ModelConfig.from_dict({"in_channels": F}).current_skip is False


def test_current_skip_reset_parameters() -> None:
    model = temporal_model(current_skip=True)
    before = model.current.weight.clone()
    torch.manual_seed(99)
    model.reset_parameters()
    assert not torch.equal(before, model.current.weight)


def test_context_inputs_pools_the_current_hour_features_of_valid_nodes() -> None:
    """With context_inputs the market context is W_c mean_valid(x_t) + b_c: shifting every feature of the
    hour by 1 moves each embedding by exactly W_c 1 (the GRU state and message passing never see x_t)."""
    x, ei, ea = hour(1)
    seq = windows(2)
    model = temporal_model(context=True, context_inputs=True)
    assert model.context.in_features == F  # pools inputs, not the d-wide states
    mask = torch.ones(N, dtype=torch.bool)
    mask[0] = False
    with torch.no_grad():
        _, z = model(x, ei, ea, x_seq=seq, node_mask=mask)
        _, z_shift = model(x + 1.0, ei, ea, x_seq=seq, node_mask=mask)
        moved = x.clone()
        moved[0] += 100.0  # an invalid node's features do not enter the mean
        _, z_invalid = model(moved, ei, ea, x_seq=seq, node_mask=mask)
    torch.testing.assert_close(z_shift - z, model.context.weight.sum(1).expand(N, -1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(z_invalid, z)
    assert temporal_model(context=True).context.in_features == 16  # default: the GRU states
    assert ModelConfig.from_dict({"in_channels": F}).context_inputs is False  # older checkpoints
