"""A sparse direct solver: the multifrontal Cholesky factor of a sparse symmetric positive
definite matrix, such as the shifted Hessian H - sigma I (sigma < 0) of an inherent structure, in a
nested-dissection order of the atoms found geometrically in the periodic box.

What it is for: the shift-invert solves of `softglass.hessian.lowest_modes` (the lowest modes
of the Hessian, hence the softness labels; train.py, validate_rearrangements.py and the
benchmarks reach it through lowest_modes). Without the positions, lowest_modes falls back to
eigsh's own SuperLU factor.

  atom_graph              which atoms interact (the Hessian's 3x3-block pattern)
  nested_dissection_tree  recursive coordinate bisection into separators and halves
  nested_dissection_order the 3N-dof permutation of that tree
  MultifrontalCholesky    P A P^T = L L^T front by front; .solve(b) = A^-1 b

Callers pass the scripts' ND_LEAF_ATOMS as leaf_atoms; this module reads no constants and imports
no script.
"""
import numpy as np
import scipy.sparse

# H - sigma I (sigma < 0) is symmetric positive definite, so it is factorised L L^T without
# pivoting, in an order chosen from the geometry. Nested dissection (George, SIAM J. Numer. Anal.
# 10, 345 (1973)) eliminates the two halves of the system before the separator between them, so
# fill stays inside each half: O(n^(4/3)) entries in 3D, asymptotically. Here the separators are
# slabs r_cut thick and the box is only 8 r_cut wide at N = 10^4: the first separator (two slabs:
# the box is periodic) holds 22% of the atoms, and L has 1.23e8 entries, against 1.72e8 with
# CHOLMOD's AMD and 1.5-1.7e8 (half of L + U) with SuperLU's COLAMD/MMD. At N = 1000 (4 r_cut)
# it has 9% more than AMD. The larger gain is the multifrontal method (Duff & Reid, ACM TOMS 9,
# 302 (1983); Liu, SIAM Rev. 34, 82 (1992)), whose assembly tree the dissection gives: each
# separator is a dense front factorised by LAPACK/BLAS-3 (potrf, trsm, syrk: 7e11 flops at
# ~50 Gflop/s on one core), where SuperLU works column by column (its factor: 330 s).
def atom_graph(h):
    """Which atoms interact: the atom-level pattern of the Hessian's 3x3 blocks (CSR)."""
    n_atoms = h.shape[0] // 3
    c = h.tocoo()
    return scipy.sparse.csr_matrix((np.ones(c.nnz, np.int8), (c.row // 3, c.col // 3)),
                                   shape=(n_atoms, n_atoms))


def vertex_separator(graph, atoms, left):
    """Mask of a vertex separator of `atoms` split into `left` and the rest: the atoms of one side
    (the fewer) with a neighbour on the other, a slab r_cut thick along each cut plane. Edges
    through a periodic face count too, so a still periodic direction gets two slabs."""
    sub = graph[atoms][:, atoms].tocoo()
    across = left[sub.row] & ~left[sub.col]
    a, b = np.unique(sub.row[across]), np.unique(sub.col[across])
    mask = np.zeros(len(atoms), bool)
    mask[a if len(a) <= len(b) else b] = True
    return mask


def nested_dissection_tree(positions, box, graph, leaf_atoms):
    """Recursive coordinate bisection: each piece is cut at the median of its widest extent
    (in the periodic box: x, then y, then z, each still periodic when first cut) and the
    separator is eliminated after both halves. Returns the nodes in elimination (post)order,
    each (atoms, indices of its child nodes). Pieces of at most leaf_atoms atoms are not cut
    (the scripts pass their ND_LEAF_ATOMS)."""
    x = np.mod(np.asarray(positions, np.float64), box)
    nodes = []

    def dissect(atoms):
        children = ()
        if len(atoms) > max(leaf_atoms, 1):
            xa = x[atoms]
            axis = int(np.argmax(np.ptp(xa, axis=0)))
            left = np.zeros(len(atoms), bool)     # the lower half by rank: never empty, even
            left[np.argsort(xa[:, axis], kind="stable")[:len(atoms) // 2]] = True  # on a lattice
            sep = vertex_separator(graph, atoms, left)
            halves = (atoms[left & ~sep], atoms[~left & ~sep])
            children = tuple(dissect(half) for half in halves if len(half))
            atoms = atoms[sep]
        nodes.append((atoms, children))
        return len(nodes) - 1

    dissect(np.arange(len(x)))
    return nodes


def nested_dissection_order(nodes):
    """The permutation of the 3N degrees of freedom: atoms in the tree's elimination order, each
    atom's x, y, z kept together (the Hessian's 3x3 blocks stay blocks)."""
    atoms = np.concatenate([a for a, _ in nodes])
    return (3 * atoms[:, None] + np.arange(3)).ravel()


def extend_add(target, rows, cols, upper):
    """target[rows[p], cols[q]] += upper[p, q] for p <= q: a child's Schur complement (its upper
    triangle, or a band of rows of it) added into its parent's front. Column by column: numpy's
    2-D fancy indexing is ten times slower here (measured)."""
    for q, col in enumerate(cols):
        target[:, col][rows[:q + 1]] += upper[:q + 1, q]


class MultifrontalCholesky:
    """P A P^T = L L^T for a symmetric positive definite sparse A, node by node of the nested-
    dissection tree; solve(b) returns A^-1 b for a vector or the columns of a matrix. Each node
    keeps its rows of L^T in one Fortran array [L11^T | L21^T] (own dofs x own and boundary
    dofs): LAPACK factorises it in place, and a child's boundary is a subset of its parent's
    rows (a separator cuts the halves apart), so children's updates are extended-added there."""

    def __init__(self, a, nodes):
        from scipy.linalg import blas, lapack
        self.perm = nested_dissection_order(nodes)
        upper = scipy.sparse.triu(a.tocsr()[self.perm][:, self.perm]).tocsr()
        ends = np.cumsum([3 * len(atoms) for atoms, _ in nodes])
        self.fronts = []                  # (start, end, boundary dofs, [L11^T | L21^T])
        boundary, update = {}, {}         # of the children not yet assembled
        for k, (atoms, children) in enumerate(nodes):
            s, e = ends[k] - 3 * len(atoms), ends[k]
            own = slice(upper.indptr[s], upper.indptr[e])
            b = np.unique(np.concatenate([upper.indices[own]] + [boundary[c] for c in children]))
            b = b[b >= e]                 # rows of L below the node's own block
            m, cols = e - s, np.concatenate([np.arange(s, e), b])
            front = np.zeros((m, len(cols)), order="F")             # upper triangle used
            front[np.repeat(np.arange(m), np.diff(upper.indptr[s:e + 1])),
                  np.searchsorted(cols, upper.indices[own])] = upper.data[own]
            schur = np.zeros((len(b), len(b)), order="F")           # upper triangle used
            for c in children:            # extend-add the children's Schur complements
                pos, u = np.searchsorted(cols, boundary.pop(c)), update.pop(c)
                i = np.searchsorted(pos, m)
                extend_add(front, pos[:i], pos, u[:i])
                extend_add(schur, pos[i:] - m, pos[i:] - m, u[i:, i:])
            u = None
            if m:                         # in place (F-contiguous blocks; the assignments only
                front[:, :m], info = lapack.dpotrf(front[:, :m], lower=0, clean=0,  # guard
                                                   overwrite_a=1)                   # a copy)
                if info:
                    raise np.linalg.LinAlgError(f"matrix not positive definite (node {k})")
                front[:, m:] = blas.dtrsm(1.0, front[:, :m], front[:, m:], trans_a=1,
                                          overwrite_b=1)                    # L21^T
                self.fronts.append((s, e, b, front))
            if len(b):                    # Schur complement A_bb - L21 L21^T, to the parent
                boundary[k] = b
                update[k] = blas.dsyrk(-1.0, front[:, m:], beta=1.0, c=schur, trans=1,
                                       overwrite_c=1) if m else schur
        self.nnz = sum((e - s) * (e - s + 1) // 2 + (e - s) * len(b)
                       for s, e, b, _ in self.fronts)    # entries of L, fill included

    def solve(self, rhs):
        """A^-1 rhs: forward then backward substitution over the fronts, rhs (3N,) or (3N, k)."""
        from scipy.linalg import blas
        rhs = np.asarray(rhs, np.float64)
        y = rhs.reshape(len(rhs), -1)[self.perm]
        for s, e, b, f in self.fronts:    # L y = P rhs
            m = e - s
            y[s:e] = blas.dtrsm(1.0, f[:, :m], y[s:e], trans_a=1)
            y[b] -= f[:, m:].T @ y[s:e]
        for s, e, b, f in reversed(self.fronts):   # L^T x = y
            m = e - s
            y[s:e] = blas.dtrsm(1.0, f[:, :m], y[s:e] - f[:, m:] @ y[b])
        x = np.empty_like(y)
        x[self.perm] = y
        return x.reshape(rhs.shape)
