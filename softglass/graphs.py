"""A glass as a graph for the model: atoms with their features and label, edges between atoms
closer than the cutoff under the periodic boundaries of the (rotated) cell."""
import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from .pairs import fractional_minimum_image, wrapped_fractional


def periodic_edges(positions, cell, cutoff):
    """All ordered pairs (j -> i) closer than cutoff under periodic boundaries of `cell` (rows are
    box vectors, possibly rotated): a periodic k-d tree in fractional coordinates scaled to the box
    length, distances by the minimum image in the cell's own frame."""
    from scipy.spatial import cKDTree
    box = float(np.linalg.norm(cell[0]))
    if not np.allclose(cell @ cell.T, box ** 2 * np.eye(3), atol=1e-8 * box ** 2):
        raise ValueError("only cubic (possibly rotated) cells are supported")
    if box <= 2 * cutoff:
        raise ValueError(f"box {box:.3f} is not wider than twice the cutoff {cutoff}")
    frac = wrapped_fractional(positions, cell)
    pairs = cKDTree(frac * box, boxsize=box).query_pairs(cutoff, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    dist = np.linalg.norm(fractional_minimum_image(positions[j] - positions[i], cell), axis=1)
    edge_index = np.concatenate([np.stack([j, i]), np.stack([i, j])], axis=1)
    dist = np.concatenate([dist, dist])             # j->i and i->j: the same number, bit for bit
    order = np.lexsort((edge_index[0], edge_index[1]))     # CSR: by destination, then source
    return edge_index[:, order], dist[order]


def glass_graph(snap, cutoff):
    """A PyG graph of one (rotated) glass: raw features, edges (closer than `cutoff`), target, and
    its base index."""
    species = snap["species"].astype(np.int64)
    x = np.concatenate([np.eye(2)[species], snap["eigenvalues"]], axis=1)
    cell = snap.get("cell", snap["box_size"] * np.eye(3))
    edge_index, dist = periodic_edges(snap["positions"], cell, cutoff)
    return Data(x=torch.tensor(x, dtype=torch.float32),
                edge_index=torch.tensor(edge_index, dtype=torch.long),
                edge_dist=torch.tensor(dist, dtype=torch.float32),
                y=torch.tensor(snap["softness_score"], dtype=torch.float32),
                base=int(snap.get("base_index", -1)))


def neighbour_features(g):
    """Per atom: its 5 features and their average over its neighbours within CUTOFF."""
    src, dst = g.edge_index
    mean = scatter(g.x[src], dst, dim=0, dim_size=g.num_nodes, reduce="mean")
    return torch.cat([g.x, mean], dim=1).numpy()
