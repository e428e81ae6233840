"""The Hessian of an inherent structure and what the softness labels are made of.

  hessian              sparse 3N x 3N H = d^2 E / dr dr and the local 3x3 blocks D_i (its diagonal)
  autodiff_hessian     the same for any potential (many-body ones), by automatic differentiation
  lowest_modes         its lowest eigenpairs: dense eigh for small N, shift-invert Lanczos on a
                       multifrontal Cholesky factor (sparse_solver) for large N
  softness_from_modes  S_i over the softest non-trivial modes (the seed's label)
  vibrality_from_modes V_i = sum_k |v_k(i)|^2 / lambda_k
  check_hessian, check_modes  the physics checks every glass passes

For a pair potential phi(r): K_ij = phi'' n n^T + (phi'/r)(I - n n^T), H_ij = -K_ij (i != j),
H_ii = D_i = sum_j K_ij.
"""
import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from .forces import pairs_with_parameters
from .sparse_solver import MultifrontalCholesky, atom_graph, nested_dissection_tree


def pair_hessian_blocks(rij, r, d1, d2):
    """K_ij = phi'' n n^T + (phi'/r)(I - n n^T) = (k_rad - k_trans) n n^T + k_trans I.
    The Hessian's off-diagonal block is -K_ij and its diagonal block sum_j K_ij."""
    n = rij / r[:, None]
    nn = n[:, :, None] * n[:, None, :]
    k_trans = d1 / r
    return (d2 - k_trans)[:, None, None] * nn + k_trans[:, None, None] * np.eye(3)


def hessian(positions, system):
    """Sparse 3N x 3N Hessian and the local 3x3 blocks D_i (its diagonal blocks)."""
    i, j, rij, r, _, d1, d2 = pairs_with_parameters(positions, system)
    return hessian_from_pairs(len(positions), i, j, pair_hessian_blocks(rij, r, d1, d2))


def hessian_from_pairs(n_atoms, i, j, k):
    """Assemble H from pair blocks K_ij (pairs i<j): H_ij = H_ji = -K_ij, H_ii = D_i = sum_j K_ij."""
    local = np.zeros((n_atoms, 3, 3))
    np.add.at(local, i, k)
    np.add.at(local, j, k)
    a = np.arange(3)
    row = lambda atoms: (3 * atoms[:, None, None] + a[None, :, None]).repeat(3, 2)  # noqa: E731
    col = lambda atoms: (3 * atoms[:, None, None] + a[None, None, :]).repeat(3, 1)  # noqa: E731
    diag = np.arange(n_atoms)
    rows = np.concatenate([row(i), row(j), row(diag)]).ravel()
    cols = np.concatenate([col(j), col(i), col(diag)]).ravel()
    vals = np.concatenate([-k, -k, local]).ravel()
    h = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(3 * n_atoms, 3 * n_atoms))
    return h, local



def autodiff_hessian(energy_fn, positions, batch=96):
    """H = d^2 E / dr dr of any potential (many-body ones: Stillinger-Weber, EAM) by automatic
    differentiation: forward over reverse mode, H e_k = d/dt grad E(r + t e_k), for the 3N unit
    vectors e_k in vmapped batches (the last one padded, so that one program is compiled).
    Dense: 3N Hessian-vector products, each the cost of about two force evaluations; it is
    neither symmetrised nor sparsified beyond dropping exact zeros, so that check_hessian sees
    what autodiff gave. Returns (sparse H, the local 3x3 blocks D_i)."""
    import jax
    import jax.numpy as jnp
    r = jnp.asarray(positions, jnp.float64)
    n3 = r.size
    gradient = jax.grad(energy_fn)
    columns = jax.jit(jax.vmap(lambda v: jax.jvp(gradient, (r,), (v,))[1].ravel()))
    h = np.empty((n3, n3))
    for start in range(0, n3, batch):
        k = np.arange(start, min(start + batch, n3))
        basis = np.zeros((batch, n3))
        basis[np.arange(len(k)), k] = 1.0
        h[:, k] = np.asarray(columns(jnp.asarray(basis.reshape((batch,) + r.shape))))[:len(k)].T
    idx = 3 * np.arange(n3 // 3)[:, None] + np.arange(3)
    local = h[idx[:, :, None], idx[:, None, :]]
    return scipy.sparse.csr_matrix(h), local


def largest_hessian_eigenvalue(positions, system):
    """lambda_max of the Hessian (Lanczos): the stiffest mode sets the stable step of every
    integrator (Brownian: dt lambda_max / gamma < 2; Verlet: dt sqrt(lambda_max / m) < 2)."""
    h, _ = hessian(positions, system)
    return float(scipy.sparse.linalg.eigsh(h, k=1, which="LA", return_eigenvectors=False,
                                           v0=np.ones(h.shape[0]))[0])


def lowest_modes(h, n_modes, positions=None, box=None, *, dense_max_atoms, shift, leaf_atoms):
    """The n_modes lowest eigenpairs of the Hessian, ascending. Dense eigh for small systems,
    shift-invert Lanczos (eigsh, sigma below the spectrum) for large ones. With the positions
    and the box, the shift-invert solves use a multifrontal Cholesky factor of H - sigma I in a
    nested-dissection order (sparse_solver.py); without them, eigsh's own SuperLU factor
    (same modes to ~1e-13).
    Measured at N = 10^4, 13 modes, one BLAS thread: factor 22 s + Lanczos 11 s, peak 2.8 GB,
    against SuperLU's 330 s + 18 s, 4.0 GB."""
    n_atoms = h.shape[0] // 3
    if n_atoms <= dense_max_atoms:
        vals, vecs = np.linalg.eigh(h.toarray())
        return vals[:n_modes], vecs[:, :n_modes]
    v0 = np.random.default_rng(0).standard_normal(h.shape[0])   # deterministic Lanczos start
    op_inv = None
    if positions is not None and box is not None:
        shifted = (h - shift * scipy.sparse.identity(h.shape[0], format="csr")).tocsr()
        try:
            factor = MultifrontalCholesky(shifted, nested_dissection_tree(
                positions, box, atom_graph(h), leaf_atoms))
            op_inv = scipy.sparse.linalg.LinearOperator(h.shape, matvec=factor.solve,
                                                        matmat=factor.solve, dtype=np.float64)
        except np.linalg.LinAlgError:
            # H has a mode below the shift (a saddle, not a minimum): eigsh's own LU, which
            # pivots, still finds the modes, and check_modes rejects them by name
            op_inv = None
    vals, vecs = scipy.sparse.linalg.eigsh(h.tocsc(), k=n_modes, sigma=shift, which="LM",
                                           v0=v0, OPinv=op_inv)
    order = np.argsort(vals)
    return vals[order], vecs[:, order]


def softness_from_modes(vecs, n_zero, n_soft):
    """S_i = sum_{k=4}^{13} sum_alpha |v_k(i, alpha)|^2 (seed): participation of atom i in the
    n_soft softest modes after the n_zero translations. Eigenvectors are unit vectors, so
    sum_i S_i = n_soft."""
    soft = vecs[:, n_zero:n_zero + n_soft]
    return np.sum(soft.reshape(-1, 3, n_soft) ** 2, axis=(1, 2))


def vibrality_from_modes(vals, vecs, n_zero, n_modes):
    """Vibrality V_i = sum_k sum_alpha |v_k(i, alpha)|^2 / lambda_k over the n_modes lowest
    non-trivial modes (lambda_k = omega_k^2 at unit mass): how far atom i moves in the glass's
    harmonic response, dominated by the softest modes (Tanguy, Mantisi and Tsamados, EPL 90,
    16004 (2010); an indicator of where a glass yields, Richard et al., Phys. Rev. Mater. 4,
    113609 (2020))."""
    weight = vecs[:, n_zero:n_zero + n_modes].reshape(-1, 3, n_modes) ** 2
    return np.sum(weight.sum(axis=1) / np.asarray(vals)[n_zero:n_zero + n_modes], axis=1)


def translation_content(vecs):
    """Share of each eigenvector (columns of vecs, 3N x k) that is a rigid translation,
    |sum_i v_k(i)|^2 / N: 1 for a translation, 0 for a mode orthogonal to all three."""
    n = vecs.shape[0] // 3
    return np.sum(vecs.reshape(n, 3, -1).sum(axis=0) ** 2, axis=0) / n


def vibrational_modes(vals, vecs, n_zero):
    """Indices of the modes other than the n_zero translations, lowest eigenvalue first. The
    translations are found by their content, not by their place in the spectrum: away from a
    minimum, unstable modes (lambda < 0) lie below them."""
    translations = np.argsort(-translation_content(vecs))[:n_zero]
    order = np.argsort(vals, kind="stable")
    return order[~np.isin(order, translations)]


def softness_of_any_configuration(vals, vecs, n_zero, n_soft):
    """The seed's softness where the configuration need not be a minimum (FIRE stopped early or
    skipped): S sums the n_soft lowest vibrational modes, unstable ones first. At an inherent
    structure this is softness_from_modes."""
    soft = vibrational_modes(vals, vecs, n_zero)[:n_soft]
    return np.sum(vecs[:, soft].reshape(-1, 3, n_soft) ** 2, axis=(1, 2))


def local_hessian_eigenvalues(local):
    """Eigenvalues of each atom's 3x3 cage-stiffness block D_i, ascending (rotation invariant)."""
    return np.linalg.eigvalsh(local)


# ================================ physics checks =================================================
def check_modes(vals, n_zero, zero_tol):
    """Exactly n_zero zero modes (|lambda| < zero_tol: the translations), then a positive
    spectrum."""
    zero = np.abs(vals[:n_zero])
    if not np.all(zero < zero_tol):
        raise RuntimeError(f"expected {n_zero} zero modes, lowest eigenvalues {vals[:5]}")
    if not vals[n_zero] > zero_tol:
        raise RuntimeError(f"mode {n_zero + 1} is not positive ({vals[n_zero]:.3e}): "
                           "the structure is not a minimum or has another zero mode")


def check_hessian(h, local):
    """Symmetric, translation-invariant (rows sum to zero), diagonal blocks equal to D_i."""
    asym = abs(h - h.T).max()
    scale = abs(h).max()
    if asym > 1e-12 * scale:
        raise RuntimeError(f"Hessian not symmetric: max|H - H^T| = {asym:.3e}")
    n_atoms = len(local)
    for axis in range(3):
        t = np.zeros(3 * n_atoms)
        t[axis::3] = 1.0
        if np.max(np.abs(h @ t)) > 1e-10 * scale:
            raise RuntimeError("Hessian rows do not sum to zero (translation invariance broken)")
    idx = 3 * np.arange(n_atoms)[:, None] + np.arange(3)
    blocks = np.asarray(h[idx.repeat(3, 1).ravel(), np.tile(idx, 3).ravel()]).reshape(-1, 3, 3)
    if not np.allclose(blocks, local, rtol=1e-12, atol=1e-12 * scale):
        raise RuntimeError("local blocks D_i differ from the Hessian's diagonal blocks")
