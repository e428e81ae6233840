"""softglass/message_kernels.py: the fused CPU path computes the reference model (gradcheck, agreement)."""
import pytest
import torch

from softglass import message_kernels as mk
from softglass.model import cosine_cutoff
from conftest import SMALL

pytestmark = pytest.mark.skipif(not mk.available(),
                                reason=f"fused kernels not built: {mk.build_error()}")


def _csr(train, graph, points=256, head_dim=4):
    dist = graph.edge_dist.double()
    return mk.CSRGraph(graph.edge_index, dist, graph.num_nodes, train.FILTER_TABLE_RMIN,
                       train.CUTOFF, points, cosine_cutoff(dist, train.CUTOFF), head_dim)


def test_physics_message_gradcheck(train, graph):
    g = _csr(train, graph)
    torch.manual_seed(0)
    x = torch.randn(graph.num_nodes, 8, dtype=torch.float64, requires_grad=True)
    table = torch.randn(256, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, t: mk.PhysicsMessage.apply(x, t, g), (x, table),
                                    fast_mode=True)


def test_attention_gradcheck(train, graph):
    g = _csr(train, graph, head_dim=4)
    torch.manual_seed(0)
    qkv = torch.randn(graph.num_nodes, 3 * 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q: mk.NeighbourAttention.apply(q, g, 2), (qkv,),
                                    fast_mode=True)


def _prediction_and_grads(model, graph):
    model.zero_grad()
    dtype = next(model.parameters()).dtype
    pred = model(graph.x.to(dtype), graph.edge_index, graph.edge_dist.to(dtype))
    (pred * torch.linspace(-1, 1, len(pred), dtype=pred.dtype)).sum().backward()
    return pred.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("dtype, points, tol", [(torch.float64, 1 << 16, 1e-6),
                                                 (torch.float32, 4096, 2e-3)])
def test_fused_model_equals_reference_model(train, graph, dtype, points, tol):
    """Same weights, same graph: predictions and every parameter gradient agree. In float64 with
    a fine table the only difference left is the interpolation error (~h^2); in float32 at the
    default table size, float32 rounding and the interpolation (relative tolerance)."""
    torch.manual_seed(0)
    ref = train.build_model(**SMALL, fast_kernels=False).to(dtype)
    fused = train.build_model(**SMALL, fast_kernels=True,
                                           filter_table_points=points).to(dtype)
    fused.load_state_dict(ref.state_dict())
    assert fused.uses_fused_path(torch.device("cpu"))
    p_ref, g_ref = _prediction_and_grads(ref, graph)
    p_fused, g_fused = _prediction_and_grads(fused, graph)
    assert (p_fused - p_ref).abs().max() <= tol * p_ref.abs().max()
    for k in g_ref:
        assert (g_fused[k] - g_ref[k]).norm() <= tol * g_ref[k].norm() + 1e-12, k


def test_unsorted_edges_are_sorted_and_one_way_edges_refused(train, graph):
    g_sorted = _csr(train, graph)
    perm = torch.randperm(graph.edge_index.shape[1], generator=torch.Generator().manual_seed(1))
    shuffled = graph.clone()
    shuffled.edge_index, shuffled.edge_dist = graph.edge_index[:, perm], graph.edge_dist[perm]
    g = _csr(train, shuffled)
    assert torch.equal(g.rowptr, g_sorted.rowptr)
    x = torch.randn(graph.num_nodes, 8, dtype=torch.float64)
    table = torch.randn(256, 8, dtype=torch.float64)
    assert torch.allclose(mk.PhysicsMessage.apply(x, table, g),
                          mk.PhysicsMessage.apply(x, table, g_sorted))
    one_way = graph.clone()
    keep = graph.edge_index[0] < graph.edge_index[1]
    one_way.edge_index, one_way.edge_dist = graph.edge_index[:, keep], graph.edge_dist[keep]
    with pytest.raises(ValueError, match="symmetric"):
        _csr(train, one_way)


def test_distances_outside_the_table_are_refused(train, graph):
    dist = graph.edge_dist.double()
    with pytest.raises(ValueError, match="outside the filter table"):
        mk.CSRGraph(graph.edge_index, dist, graph.num_nodes, 1.5, train.CUTOFF, 64,
                    cosine_cutoff(dist, train.CUTOFF), 4)


def test_without_a_compiler_the_reference_path_is_used(train, graph, monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "/bin/false")
    monkeypatch.setattr(mk, "KERNEL_CACHE_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="failed"):
        mk._build()
    monkeypatch.setattr(mk, "available", lambda: False)
    model = train.build_model(**SMALL)
    assert not model.uses_fused_path(torch.device("cpu"))
    with torch.no_grad():
        assert torch.isfinite(model(graph.x, graph.edge_index, graph.edge_dist)).all()


def test_fused_path_runs_under_cpu_bfloat16_autocast(train, graph):
    """CPU_BF16=true: the kernels take float32 copies and autograd casts the gradients back."""
    torch.manual_seed(0)
    model = train.build_model(**SMALL, fast_kernels=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred = model(graph.x, graph.edge_index, graph.edge_dist)
    pred.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_kernels_give_the_same_bits_for_any_thread_count(train, graph):
    """Every output and gradient of both kernels is summed in an order fixed by the graph: 1, 2,
    3 or 4 threads (oversubscribed here on purpose: the OpenMP schedule then varies from call to
    call) give the same bits, call after call. (The table gradient once summed thread-private
    tables in whichever order the threads finished: two runs of train.py differed.)"""
    g = _csr(train, graph, points=512, head_dim=8)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(graph.num_nodes, 32, generator=gen)
    table = torch.randn(512, 32, generator=gen)
    qkv = torch.randn(graph.num_nodes, 3 * 32, generator=gen)
    grad = torch.randn(graph.num_nodes, 32, generator=gen)

    def outputs():
        xs, ts, qs = (t.clone().requires_grad_() for t in (x, table, qkv))
        phys = mk.PhysicsMessage.apply(xs, ts, g)
        attn = mk.NeighbourAttention.apply(qs, g, 4)
        (phys * grad).sum().backward()
        (attn * grad).sum().backward()
        return [phys.detach(), attn.detach(), xs.grad, ts.grad, qs.grad]

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = outputs()
        for n in (1, 2, 3, 4, 4, 3):
            torch.set_num_threads(n)
            for name, a, b in zip(("phys", "attn", "d x", "d table", "d qkv"), serial, outputs()):
                assert torch.equal(a, b), f"{name} with {n} threads"
    finally:
        torch.set_num_threads(threads)
