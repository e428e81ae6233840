"""The hybrid physics-transformer (seed README, "Architecture Details", "Hybrid Message Passing").

Each atom carries 5 features (species one-hot, the 3 local-Hessian eigenvalues); edges join every
pair closer than the cutoff. Each hybrid block adds to an atom, through a gate gamma, a physics
message (x_j times a filter w(r_ij) = MLP(Bessel basis) x cosine cutoff) and a 4-head attention
message (softmax over neighbours of q_i.k_j / sqrt(d) x fc(r_ij)); pre-LayerNorm residual
sub-blocks and a SiLU feed-forward complete it. On a CPU both edge sums run in the fused kernels of
message_kernels.py (the filter tabulated on a grid of distances), elsewhere in PyG.
"""
import math

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint
from torch_geometric.utils import scatter, softmax

from . import message_kernels


def bessel_rbf(r, num_rbf, cutoff):
    """phi_k(r) = sin(k pi r / rc) / (r / rc), k = 1..num_rbf (seed; DimeNet's radial basis)."""
    k = torch.arange(1, num_rbf + 1, device=r.device, dtype=r.dtype)
    x = (r / cutoff).unsqueeze(-1)
    return torch.sin(k * math.pi * x) / x


def cosine_cutoff(r, cutoff):
    """fc(r) = 0.5 [cos(pi r / rc) + 1] inside the cutoff, 0 beyond."""
    return 0.5 * (torch.cos(math.pi * r / cutoff) + 1.0) * (r < cutoff).to(r.dtype)


class HybridBlock(nn.Module):
    """h <- h + Linear(sum_j [x_j * w_ij + gamma * attn_ij]) ; h <- h + FFN(LN(h))."""

    def __init__(self, hidden, heads, num_rbf, ffn_mult):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.norm1 = nn.LayerNorm(hidden)
        self.filter = nn.Sequential(nn.Linear(num_rbf, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.attn_out = nn.Linear(hidden, hidden)           # multi-head output projection
        self.gamma = nn.Parameter(torch.tensor(0.1))       # learnable fusion gate
        self.out = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn_mult * hidden), nn.SiLU(),
                                 nn.Linear(ffn_mult * hidden, hidden))

    def forward(self, h, src, dst, rbf, fc):
        """Reference path (PyG): per-edge tensors, differentiated by autograd."""
        n = h.shape[0]
        x = self.norm1(h)
        # physics branch: m_ij = x_j * w_ij, w_ij = MLP(phi(r_ij)) fc(r_ij)
        w = self.filter(rbf) * fc.unsqueeze(-1)
        agg_phys = scatter(x[src] * w, dst, dim=0, dim_size=n, reduce="sum")
        # attention branch: alpha_ij = softmax_j(q_i . k_j / sqrt(d) * fc(r_ij)), m_ij = alpha_ij v_j
        q, k, v = self.qkv(x).view(n, 3, self.heads, self.head_dim).unbind(1)
        logits = (q[dst] * k[src]).sum(-1) / math.sqrt(self.head_dim) * fc.unsqueeze(-1)
        alpha = softmax(logits, dst, num_nodes=n)
        m_attn = (alpha.unsqueeze(-1) * v[src]).reshape(-1, self.heads * self.head_dim)
        agg_attn = scatter(m_attn, dst, dim=0, dim_size=n, reduce="sum")
        return self.fuse(h, agg_phys, agg_attn)

    def forward_fused(self, h, graph, rbf_grid, fc_grid):
        """The same block with both edge sums done by message_kernels (CPU): the filter is
        evaluated on the table's r grid (autograd flows into the MLP through the table) and
        looked up per edge by linear interpolation."""
        x = self.norm1(h)
        table = self.filter(rbf_grid) * fc_grid.unsqueeze(-1)
        agg_phys = message_kernels.PhysicsMessage.apply(x, table, graph)
        agg_attn = message_kernels.NeighbourAttention.apply(self.qkv(x), graph, self.heads)
        return self.fuse(h, agg_phys, agg_attn)

    def fuse(self, h, agg_phys, agg_attn):
        """h + Linear(sum_j m_phys + gamma sum_j m_attn), the usual multi-head output projection
        applied to the attention sum (linear, so it commutes with the sum over j); then the FFN."""
        h = h + self.out(agg_phys + self.gamma * self.attn_out(agg_attn))
        return h + self.ffn(self.norm2(h))


class HybridPhysicsTransformer(nn.Module):
    """Species and local-Hessian eigenvalues in, one softness per atom out (seed, "Architecture
    Details")."""

    def __init__(self, in_dim=5, hidden=128, layers=5, heads=4, num_rbf=32, cutoff=2.5,
                 ffn_mult=2, use_checkpoint=False, fast_kernels=True, filter_table_points=4096,
                 filter_table_rmin=0.5):
        """Embedding, `layers` hybrid blocks, prediction head; the defaults are the seed's
        hyperparameters (train.py passes its constants). `fast_kernels` (the fused CPU kernels,
        the filter tabulated on filter_table_points distances from filter_table_rmin) and
        `use_checkpoint` (activation checkpointing) change how, not what, it computes: the
        state_dict is the same on every path."""
        super().__init__()
        self.num_rbf, self.cutoff, self.use_checkpoint = num_rbf, cutoff, use_checkpoint
        # what rebuilds this model (train.model_file stores it; predict.py reads it back)
        self.architecture = dict(in_dim=in_dim, hidden=hidden, layers=layers, heads=heads,
                                 num_rbf=num_rbf, cutoff=cutoff, ffn_mult=ffn_mult,
                                 filter_table_points=filter_table_points,
                                 filter_table_rmin=filter_table_rmin)
        self.heads, self.head_dim = heads, hidden // heads
        self.fast_kernels, self.table_points, self.table_rmin = (
            fast_kernels, filter_table_points, filter_table_rmin)
        self.embed = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.SiLU(),
                                   nn.Linear(hidden, hidden))
        self.blocks = nn.ModuleList(HybridBlock(hidden, heads, num_rbf, ffn_mult)
                                    for _ in range(layers))
        self.head = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.SiLU(),
                                  nn.Linear(hidden, 1))

    def uses_fused_path(self, device):
        return self.fast_kernels and device.type == "cpu" and message_kernels.available()

    def csr_graph(self, edge_index, edge_dist, n):
        """What the fused kernels need from a graph whose edges are sorted by destination."""
        return message_kernels.CSRGraph(edge_index, edge_dist, n, self.table_rmin, self.cutoff,
                                        self.table_points,
                                        cosine_cutoff(edge_dist.double(), self.cutoff),
                                        self.head_dim)

    def forward(self, x, edge_index, edge_dist):
        if self.uses_fused_path(x.device):
            return self.forward_fused(x, self.csr_graph(edge_index, edge_dist, x.shape[0]))
        src, dst = edge_index                       # message flows src (j) -> dst (i)
        rbf = bessel_rbf(edge_dist, self.num_rbf, self.cutoff)
        fc = cosine_cutoff(edge_dist, self.cutoff)
        h = self.embed(x)
        for block in self.blocks:
            if self.use_checkpoint and self.training and torch.is_grad_enabled():
                h = checkpoint(block, h, src, dst, rbf, fc, use_reentrant=False)
            else:
                h = block(h, src, dst, rbf, fc)
        return self.head(h).squeeze(-1)

    def forward_fused(self, x, graph):
        grid = torch.linspace(self.table_rmin, self.cutoff, self.table_points, dtype=x.dtype)
        rbf_grid = bessel_rbf(grid, self.num_rbf, self.cutoff)
        fc_grid = cosine_cutoff(grid, self.cutoff)
        h = self.embed(x)
        for block in self.blocks:
            h = block.forward_fused(h, graph, rbf_grid, fc_grid)
        return self.head(h).squeeze(-1)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
