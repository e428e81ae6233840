"""Physics of generate_glass_data.py on tiny systems: forces, Hessian, modes, softness, D_i."""
import numpy as np
import pytest

from softglass import dynamics, forces, neighbours, potentials, sparse_solver
from softglass import pairs
from softglass import hessian as hs

from conftest import TINY


def _system(ggd, glass):
    p = glass["parameters"]
    system = ggd.make_system(p["n_atoms"], p["density"], p["species_ratio"], p["sigma"],
                             p["epsilon"], p["seed"])
    assert np.array_equal(system["species"], glass["species"])
    return system


def test_inherent_structure_is_converged_and_overlap_free(ggd, tiny_glass):
    system = _system(ggd, tiny_glass)
    _, forces = ggd.energy_and_forces(tiny_glass["positions"], system)
    assert np.max(np.linalg.norm(forces, axis=1)) < ggd.FORCE_TOL
    assert tiny_glass["parameters"]["max_force"] < ggd.FORCE_TOL
    assert ggd.min_pair_distance(tiny_glass["positions"], system["box"]) > ggd.MIN_PAIR_DISTANCE


def test_forces_are_minus_energy_gradient(ggd, tiny_glass):
    """Central finite differences of the pair-list energy against its analytic forces, away from
    the minimum (a random displacement makes the forces O(1))."""
    system = _system(ggd, tiny_glass)
    rng = np.random.default_rng(0)
    r = tiny_glass["positions"] + rng.normal(0, 0.03, tiny_glass["positions"].shape)
    _, forces = ggd.energy_and_forces(r, system)
    h = 1e-6
    for atom, axis in [(0, 0), (17, 1), (150, 2), (199, 0)]:
        rp, rm = r.copy(), r.copy()
        rp[atom, axis] += h
        rm[atom, axis] -= h
        numeric = -(ggd.energy_and_forces(rp, system)[0] - ggd.energy_and_forces(rm, system)[0]) / (2 * h)
        assert numeric == pytest.approx(forces[atom, axis], rel=1e-5, abs=1e-6)


def test_pair_list_energy_equals_jax_md_neighbor_list_energy(ggd, tiny_glass, monkeypatch):
    """On a half list (FORCE_KERNEL "grad") the compiled phases' function is jax-md's energy."""
    import jax.numpy as jnp
    monkeypatch.setattr(ggd, "FORCE_KERNEL", "grad")
    system = _system(ggd, tiny_glass)
    r = jnp.asarray(tiny_glass["positions"])
    _, neighbor_fn, energy_fn = forces.pair_system(system["box"], system["r_cutoff"], 0.3,
                                            potentials.smoothed_lj(system["r_onset"], system["r_cutoff"]),
                                            **ggd.engine().statics(len(r)))
    nbrs = neighbours.allocate_neighbors(neighbor_fn, r)
    e_md = float(energy_fn(r, neighbor=nbrs, species=jnp.asarray(system["species"]),
                           sigma=jnp.asarray(system["sigma"]), epsilon=jnp.asarray(system["epsilon"])))
    assert e_md == pytest.approx(tiny_glass["energy"], rel=1e-12)


def test_hessian_equals_autodiff_hessian(ggd, tiny_glass):
    """The pair-block Hessian equals autodiff of jax-md's all-pairs smoothed-LJ energy, probed by
    Hessian-vector products (forward over reverse, jax.jvp of jax.grad) with 6 unit vectors (6
    whole columns) and 4 Gaussian ones: a nonzero difference D gives D v != 0 for a Gaussian v
    with probability 1. The full jax.hessian (600 products) took 36 s of the suite
    (runs/ci_test_times/durations_feac3fb.txt)."""
    import jax
    import jax.numpy as jnp
    from jax_md import smap, space
    system = _system(ggd, tiny_glass)
    displacement, _ = space.periodic(system["box"])
    energy_fn = smap.pair(potentials.smoothed_lj(system["r_onset"], system["r_cutoff"]),
                          space.canonicalize_displacement_or_metric(displacement),
                          species=jnp.asarray(system["species"]), sigma=jnp.asarray(system["sigma"]),
                          epsilon=jnp.asarray(system["epsilon"]))
    r = jnp.asarray(tiny_glass["positions"])
    assert float(energy_fn(r)) == pytest.approx(tiny_glass["energy"], rel=1e-12)
    n3 = 3 * len(r)
    rng = np.random.default_rng(0)
    probes = np.concatenate([np.eye(n3)[:, rng.choice(n3, 6, replace=False)],
                             rng.normal(size=(n3, 4))], axis=1)
    hvp = jax.vmap(lambda v: jax.jvp(jax.grad(energy_fn), (r,), (v.reshape(-1, 3),))[1].ravel(),
                   in_axes=1, out_axes=1)
    h_ad_probes = np.asarray(jax.jit(hvp)(jnp.asarray(probes)))
    h, local = ggd.hessian(tiny_glass["positions"], system)
    h = h.toarray()
    assert np.max(np.abs(h - h.T)) < 1e-10
    assert np.max(np.abs(h @ probes - h_ad_probes)) < 1e-8 * np.max(np.abs(h)) * np.sqrt(n3)
    assert np.max(np.abs(h @ probes[:, :6] - h_ad_probes[:, :6])) < 1e-8 * np.max(np.abs(h))


def test_local_blocks_are_hessian_diagonal_blocks(ggd, tiny_glass):
    system = _system(ggd, tiny_glass)
    h, local = ggd.hessian(tiny_glass["positions"], system)
    dense = h.toarray()
    for i in (0, 57, 199):
        assert np.allclose(dense[3 * i:3 * i + 3, 3 * i:3 * i + 3], local[i], atol=1e-12)
    ggd.check_hessian(h, local)              # the in-run check passes...
    broken = local.copy()
    broken[5, 0, 0] += 1e-3
    with pytest.raises(RuntimeError, match="diagonal blocks"):
        ggd.check_hessian(h, broken)         # ...and can fail
    assert np.allclose(ggd.local_hessian_eigenvalues(local), tiny_glass["eigenvalues"])


def test_local_eigenvalues_are_rotation_invariant(ggd, tiny_glass):
    """Rotating every pair vector (the glass with its cell) leaves each D_i's spectrum unchanged."""
    system = _system(ggd, tiny_glass)
    i, j, rij, r, _, d1, d2 = forces.pairs_with_parameters(tiny_glass["positions"], system)
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    ref = hs.pair_hessian_blocks(rij, r, d1, d2)
    rot = hs.pair_hessian_blocks(rij @ q.T, r, d1, d2)
    assert np.allclose(rot, q @ ref @ q.T, atol=1e-9)
    local_ref, local_rot = np.zeros((200, 3, 3)), np.zeros((200, 3, 3))
    for blocks, local in ((ref, local_ref), (rot, local_rot)):
        np.add.at(local, i, blocks)
        np.add.at(local, j, blocks)
    assert np.allclose(np.linalg.eigvalsh(local_rot), np.linalg.eigvalsh(local_ref), atol=1e-9)


def test_three_zero_modes_and_softness_sums_to_n_modes(ggd, tiny_glass):
    vals = tiny_glass["parameters"]["lowest_eigenvalues"]
    assert np.all(np.abs(vals[:3]) < ggd.ZERO_MODE_TOL)
    assert vals[3] > 1e-3
    assert np.all(np.diff(vals) >= -1e-12)
    s = tiny_glass["softness_score"]
    assert np.all(s >= 0)
    assert s.sum() == pytest.approx(ggd.N_SOFT_MODES, abs=1e-9)
    with pytest.raises(RuntimeError, match="zero modes"):
        ggd.check_modes(np.concatenate([[1e-3], vals[1:]]))


def test_sparse_shift_invert_equals_dense_softness(ggd, tiny_glass, monkeypatch):
    system = _system(ggd, tiny_glass)
    h, _ = ggd.hessian(tiny_glass["positions"], system)
    n = ggd.N_ZERO_MODES + ggd.N_SOFT_MODES
    monkeypatch.setattr(ggd, "DENSE_EIGH_MAX_ATOMS", 10_000)
    vals_dense, vecs_dense = ggd.lowest_modes(h, n)
    monkeypatch.setattr(ggd, "DENSE_EIGH_MAX_ATOMS", 0)
    vals_sparse, vecs_sparse = ggd.lowest_modes(h, n)
    assert np.allclose(vals_sparse[3:], vals_dense[3:], rtol=1e-8)
    assert np.allclose(ggd.softness_from_modes(vecs_sparse), ggd.softness_from_modes(vecs_dense),
                       atol=1e-8)


def test_softness_of_any_configuration_skips_translations_not_unstable_modes(ggd, tiny_glass):
    # at the inherent structure it is the seed's label
    h, _ = ggd.hessian(tiny_glass["positions"], _system(ggd, tiny_glass))
    vals, vecs = np.linalg.eigh(h.toarray())
    assert np.allclose(ggd.softness_of_any_configuration(vals, vecs),
                       tiny_glass["softness_score"], atol=1e-9)
    # a saddle: two unstable modes below the three translations, which sit mid-spectrum
    n = 20
    rng = np.random.default_rng(0)
    translations = np.kron(np.ones((n, 1)), np.eye(3)) / np.sqrt(n)
    q, _ = np.linalg.qr(np.hstack([translations, rng.normal(size=(3 * n, 3 * n - 3))]))
    vals = np.concatenate([[0.0, 0.0, 0.0], -1.0 - np.arange(2.0), 1.0 + np.arange(3 * n - 5)])
    content = hs.translation_content(q)
    assert np.allclose(content[:3], 1) and np.allclose(content[3:], 0)
    expected = np.sum(q[:, 3:3 + ggd.N_SOFT_MODES].reshape(n, 3, -1) ** 2, axis=(1, 2))
    s = ggd.softness_of_any_configuration(vals, q)
    assert np.allclose(s, expected) and s.sum() == pytest.approx(ggd.N_SOFT_MODES)


def test_protocol_replays_to_the_stored_inherent_structure(ggd, tiny_glass, tmp_path,
                                                           monkeypatch):
    """experiments/do_unconverged_glasses_change_r.py replays a stored glass from its parameters and sub-seed:
    FIRE skipped, stopped early, converged. Converged must be the stored glass again."""
    import os
    import sys
    from softglass.files import atomic_write_pickle
    from conftest import load_benchmark
    unconverged = load_benchmark("do_unconverged_glasses_change_r")
    monkeypatch.setattr(ggd, "SHOW_PROGRESS", ggd.SHOW_PROGRESS)      # replay turns it off
    path, cache = str(tmp_path / "glass.pkl"), str(tmp_path / "glass.npz")
    atomic_write_pickle(path, tiny_glass)
    error, stages = unconverged.load_stages(unconverged.replay((0, path, cache, (0.1,))))
    assert list(stages) == ["skipped", "max|F|<0.1", "converged"]
    assert error < 1e-8
    forces = [float(s["max_force"]) for s in stages.values()]
    assert forces[0] > 0.1 > forces[1] > 1e-3 > ggd.FORCE_TOL > forces[2]
    assert stages["skipped"]["energy_per_atom"] > stages["converged"]["energy_per_atom"]
    assert np.allclose(stages["converged"]["softness"], tiny_glass["softness_score"], atol=1e-8)
    assert np.allclose(stages["converged"]["features"], tiny_glass["eigenvalues"], atol=1e-6)
    assert int(stages["converged"]["n_unstable"]) == 0


def test_box_narrower_than_twice_cutoff_is_refused(ggd):
    with pytest.raises(ValueError, match="minimum-image"):
        ggd.make_system(n_atoms=150, density=1.2)
    ggd.make_system(n_atoms=TINY["n_atoms"], density=1.2)   # the tiny tests sit just above it


@pytest.mark.parametrize("kind", ["kdtree", "jax"])
def test_overflowed_neighbor_list_is_reallocated_and_chunk_redone(ggd, tiny_glass, monkeypatch,
                                                                  kind):
    """A buffer too small for the pairs must not drop them: the phase reallocates and gives the
    same trajectory as a run that never overflowed. jax-md's list ("jax") overflows inside the
    compiled loop, which reports it, and the chunk is redone; the k-d tree list is rebuilt on the
    host between chunks, where a buffer the pairs outgrew is enlarged before any step uses it."""
    import dataclasses
    import jax
    monkeypatch.setattr(ggd, "NEIGHBOUR_LIST", kind)
    system = _system(ggd, tiny_glass)
    r = tiny_glass["positions"]
    ref = ggd.brownian(r, system, jax.random.PRNGKey(5), 0.3, 0.3, 50, "ref")
    real_allocate = neighbours.allocate_neighbors
    calls, built = [], []

    def tiny_first(neighbor_fn, positions, capacity=None):
        calls.append(capacity)
        if len(calls) == 1:       # a stale reference: the first step's update rebuilds the list
            nbrs = real_allocate(neighbor_fn, positions)
            half = nbrs.idx.shape[1] // 2
            if kind == "jax":     # with half the pairs' room: jax-md reports the overflow
                nbrs = dataclasses.replace(nbrs, idx=nbrs.idx[:, :half], max_occupancy=half)
            return dataclasses.replace(nbrs, reference_position=nbrs.reference_position + 1.0)
        return real_allocate(neighbor_fn, positions, capacity)

    real_rebuild = neighbours.NeighbourList.rebuild

    def half_room(self, position, nbrs):          # the first host rebuild gets half the room
        if not built:
            half = nbrs.idx.shape[1] // 2
            built.append((half, real_rebuild(self, position, dataclasses.replace(
                nbrs, idx=nbrs.idx[:, :half], max_occupancy=half))))
            return built[-1][1]
        return real_rebuild(self, position, nbrs)

    monkeypatch.setattr(dynamics, "allocate_neighbors", tiny_first)     # run_phase, run_chunks
    monkeypatch.setattr(neighbours, "allocate_neighbors", tiny_first)   # NeighbourList.rebuild
    monkeypatch.setattr(neighbours.NeighbourList, "rebuild", half_room)
    out = ggd.brownian(r, system, jax.random.PRNGKey(5), 0.3, 0.3, 50, "overflow")
    assert len(calls) >= 2
    if kind == "kdtree":          # the outgrown buffer was enlarged, not truncated
        capacity, nbrs = built[0]
        assert nbrs.idx.shape[1] > capacity and not bool(nbrs.did_buffer_overflow)
    assert np.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("kernel", ["grad", "dense", "dense_r2"])
def test_scaled_sigma_forces_agree_between_jit_and_pair_list(ggd, kernel, monkeypatch):
    """With sigma scaled by an inexact factor, the traced-parameter forces inside the compiled
    phases (-jax.grad of the energy, or the Dense list's explicit pair forces) and the pair-list
    forces used for the final check are the same potential (a weakly typed cut-off once rounded
    r_c^2 to float32 and split them by ~1e-7)."""
    import jax
    import jax.numpy as jnp
    monkeypatch.setattr(ggd, "FORCE_KERNEL", kernel)
    system = ggd.make_system(n_atoms=250, density=1.227, species_ratio=0.75,
                             sigma=np.asarray(ggd.SIGMA) * 1.0627,
                             epsilon=np.asarray(ggd.EPSILON) * 1.08, seed=1)
    r = dynamics.untangle_and_descend(np.random.default_rng(0).uniform(0, system["box"], (250, 3)),
                                      system, "untangle", True, 200, 0.1, max_move=ggd.MAX_MOVE,
                                      skin=ggd.SKIN_MINIMIZE, engine=ggd.engine())
    p = dynamics.params(system, jnp.float64, r_list=system["r_cutoff"])

    @jax.jit
    def jit_forces(pos, nbrs, params):
        _, _, energy_fn = forces.pair_system(params["box"], params["r_list"], 0.3,
                                      potentials.smoothed_lj(params["r_onset"], params["r_cutoff"]),
                                      **ggd.engine().statics(len(pos)))
        kw = dict(neighbor=nbrs, species=params["species"], sigma=params["sigma"],
                  epsilon=params["epsilon"])
        if kernel != "grad":                      # the Dense list's function gives the forces
            return energy_fn(pos, **kw)
        return -jax.grad(energy_fn)(pos, **kw)
    nbrs = neighbours.allocate_neighbors(ggd.engine().neighbour_list_fn(system["box"], system["r_cutoff"], 0.3),
                                  jnp.asarray(r))
    f_jit = np.asarray(jit_forces(jnp.asarray(r), nbrs, p))
    _, f_pairs = ggd.energy_and_forces(r, system)
    assert np.max(np.abs(f_jit - f_pairs)) < 1e-11 * max(1.0, np.max(np.abs(f_pairs)))


STIFF = dict(n_atoms=250, density=1.254, temperature=0.434, quench_steps=600, seed=5)


def _stiff_sigma_epsilon(ggd):
    """Glass 89 of the default diverse set: rho sigma_AA^3 = 1.66, lambda_max ~ 1e4."""
    return np.asarray(ggd.SIGMA) * 1.098, np.asarray(ggd.EPSILON) * 1.073


def test_a_stiff_compressed_glass_gets_smaller_steps_and_converges(ggd):
    sigma, epsilon = _stiff_sigma_epsilon(ggd)
    snap = ggd.make_glass(sigma=sigma, epsilon=epsilon, log=lambda *a: None, **STIFF)
    p = snap["parameters"]
    assert p["brownian_substeps"] >= 2 and p["fire_mass"] > 1
    assert ggd.DT * p["lambda_max_descent"] / p["brownian_substeps"] / ggd.GAMMA <= \
        ggd.BROWNIAN_MAX_DT_LAMBDA
    assert p["max_force"] < ggd.FORCE_TOL
    assert ggd.min_pair_distance(snap["positions"], snap["box_size"]) > ggd.MIN_PAIR_DISTANCE


def test_default_glass_keeps_the_plain_steps(ggd, tiny_glass):
    p = tiny_glass["parameters"]
    assert p["brownian_substeps"] == 1 and p["fire_mass"] == 1.0


def test_kdtree_list_holds_jax_mds_brute_force_pairs_in_its_order(ggd, monkeypatch):
    """ordered_pairs (scipy's periodic k-d tree) gives the very buffer jax-md's brute-force
    OrderedSparse list gives: same pairs, same order, same padding, atoms inside and outside the
    box. (The Dense list's rows: test_force_kernel.py.)"""
    import jax.numpy as jnp
    monkeypatch.setattr(ggd, "FORCE_KERNEL", "grad")
    system = ggd.make_system(n_atoms=250, density=1.2)
    box = system["box"]
    pos = np.random.default_rng(1).uniform(-0.5 * box, 1.5 * box, (250, 3))
    for kind in ("jax", "kdtree"):
        ggd.NEIGHBOUR_LIST = kind
        try:
            nbrs = ggd.engine().neighbour_list_fn(box, system["r_cutoff"], 0.3).allocate(jnp.asarray(pos))
        finally:
            ggd.NEIGHBOUR_LIST = "kdtree"
        if kind == "jax":
            ref = np.asarray(nbrs.idx)
    assert np.array_equal(np.asarray(nbrs.idx), ref)
    padded, n = neighbours.ordered_pairs(pos, box, system["r_cutoff"] + 0.3, capacity=ref.shape[1] + 7)
    assert n == ref.shape[1] and np.array_equal(padded[:, :n], ref) and (padded[:, n:] == 250).all()


def test_both_neighbour_lists_make_the_same_glass_bit_for_bit(ggd, tiny_glass, monkeypatch):
    """The whole protocol (descents, Brownian heat and quench in float32, FIRE in float64) with
    jax-md's brute-force list gives the glass the k-d tree list gave, to the last bit."""
    monkeypatch.setattr(ggd, "NEIGHBOUR_LIST", "jax")
    glass = ggd.make_glass(log=lambda *a: None, **TINY)
    for key in ("positions", "softness_score", "eigenvalues"):
        assert np.array_equal(glass[key], tiny_glass[key]), key


def test_output_file_follows_the_atom_count(ggd, monkeypatch):
    assert [ggd.output_file(n) for n in (1000, 10000, 256)] == [
        "glass_data_1k.pkl", "glass_data_10k.pkl", "glass_data_256.pkl"]
    monkeypatch.setattr(ggd, "OUTPUT_FILE", "mine.pkl")
    assert ggd.output_file(10000) == "mine.pkl"
    monkeypatch.setattr(ggd, "OUTPUT_FILE", "glass_{n}.pkl")
    with pytest.raises(SystemExit, match="only {size}"):
        ggd.output_file(1000)


def _subtree_atoms(tree, k):
    atoms, children = tree[k]
    return np.concatenate([atoms] + [_subtree_atoms(tree, c) for c in children])


@pytest.mark.parametrize("layout", ["random", "lattice"])
def test_nested_dissection_keeps_each_atoms_dofs_together_and_cuts_the_halves_apart(ggd, layout):
    """On 512 atoms in the periodic box, at random or on a cubic lattice (ties in every
    coordinate): the dof order is a permutation moving each atom's x, y, z together; every node
    comes after its children, and no pair of interacting atoms (periodic images included) joins
    the two halves that a separator splits. sigma / 2: the box is 6 cut-offs wide (8 at
    N = 10^4), so the tree has several levels."""
    system = ggd.make_system(n_atoms=512, density=1.2, sigma=np.asarray(ggd.SIGMA) / 2)
    box = system["box"]
    if layout == "random":
        pos = np.random.default_rng(2).uniform(0, box, (512, 3))
    else:
        pos = np.stack(np.meshgrid(*[np.arange(8) * box / 8] * 3), -1).reshape(-1, 3)
    h, _ = ggd.hessian(pos, system)
    graph = sparse_solver.atom_graph(h)
    i, j, rij = pairs.pair_list(pos, box, system["r_cutoff"])
    assert np.any(np.abs(pos[i] - pos[j]) > box / 2)         # some pairs wrap around the box
    linked = set(zip(*graph.nonzero()))
    assert all((a, b) in linked and (b, a) in linked for a, b in zip(i, j))
    tree = sparse_solver.nested_dissection_tree(pos, box, graph, leaf_atoms=16)
    perm = sparse_solver.nested_dissection_order(tree)
    assert np.array_equal(np.sort(perm), np.arange(3 * 512))
    blocks = perm.reshape(-1, 3)
    assert np.array_equal(blocks, 3 * (blocks[:, :1] // 3) + np.arange(3))
    assert len(tree) > 15 and len(tree[-1][0]) < 200      # a real tree, not one dense block
    for k, (atoms, children) in enumerate(tree):
        assert all(c < k for c in children)
        if len(children) == 2:
            left, right = (_subtree_atoms(tree, c) for c in children)
            assert graph[left][:, right].nnz == 0


def test_multifrontal_cholesky_solves_the_shifted_hessian(ggd, tiny_glass):
    """H - sigma I factorised in nested-dissection order solves vectors and matrices to
    round-off; an indefinite matrix is refused, not factorised."""
    from scipy.sparse import csr_matrix
    pos, box = tiny_glass["positions"], tiny_glass["box_size"]
    h, _ = ggd.hessian(pos, _system(ggd, tiny_glass))
    tree = sparse_solver.nested_dissection_tree(pos, box, sparse_solver.atom_graph(h), leaf_atoms=16)
    a = (h - ggd.EIGSH_SHIFT * np.eye(h.shape[0])).astype(np.float64)
    factor = sparse_solver.MultifrontalCholesky(csr_matrix(a), tree)
    rhs = np.random.default_rng(0).standard_normal((h.shape[0], 4))
    x = np.linalg.solve(a, rhs)
    assert np.allclose(factor.solve(rhs), x, rtol=0, atol=1e-10 * np.abs(x).max())
    assert np.allclose(factor.solve(rhs[:, 0]), x[:, 0], rtol=0, atol=1e-10 * np.abs(x).max())
    n = h.shape[0]
    assert 0 < factor.nnz <= n * (n + 1) // 2
    lam_max = np.linalg.eigvalsh(h.toarray())[-1]
    with pytest.raises(np.linalg.LinAlgError, match="positive definite"):
        sparse_solver.MultifrontalCholesky(csr_matrix(h - 0.5 * lam_max * np.eye(n)), tree)


def test_factorised_shift_invert_equals_dense_eigh_and_superlu(ggd, tiny_glass, monkeypatch):
    """lowest_modes with the positions (nested dissection + multifrontal Cholesky for the
    shift-invert) gives the dense eigh's eigenvalues and softness, and eigsh's own SuperLU's."""
    system = _system(ggd, tiny_glass)
    pos, box = tiny_glass["positions"], tiny_glass["box_size"]
    h, _ = ggd.hessian(pos, system)
    n = ggd.N_ZERO_MODES + ggd.N_SOFT_MODES
    monkeypatch.setattr(ggd, "DENSE_EIGH_MAX_ATOMS", 10_000)
    vals_dense, vecs_dense = ggd.lowest_modes(h, n, pos, box)
    monkeypatch.setattr(ggd, "DENSE_EIGH_MAX_ATOMS", 0)
    monkeypatch.setattr(ggd, "ND_LEAF_ATOMS", 16)             # a deeper tree than the default
    vals, vecs = ggd.lowest_modes(h, n, pos, box)
    vals_superlu, vecs_superlu = ggd.lowest_modes(h, n)
    assert np.all(np.abs(vals[:3]) < ggd.ZERO_MODE_TOL)
    assert np.allclose(vals[3:], vals_dense[3:], rtol=1e-10, atol=0)
    assert np.allclose(vals[3:], vals_superlu[3:], rtol=1e-10, atol=0)
    s = ggd.softness_from_modes(vecs)
    assert np.allclose(s, ggd.softness_from_modes(vecs_dense), rtol=0, atol=1e-8)
    assert np.allclose(s, ggd.softness_from_modes(vecs_superlu), rtol=0, atol=1e-8)
    assert np.allclose(s, tiny_glass["softness_score"], rtol=0, atol=1e-8)


def test_a_saddle_still_gives_its_modes_for_check_modes_to_refuse(ggd, tiny_glass, monkeypatch):
    """A Hessian with a mode below EIGSH_SHIFT cannot be Cholesky-factorised after the shift:
    the sparse path falls back to eigsh's pivoting LU, returns the negative mode, and
    check_modes refuses the glass with its own message (not a LinAlgError from the factor)."""
    import scipy.sparse
    monkeypatch.setattr(ggd, "DENSE_EIGH_MAX_ATOMS", 0)
    system = _system(ggd, tiny_glass)
    h, _ = ggd.hessian(tiny_glass["positions"], system)
    saddle = (h - 0.5 * scipy.sparse.identity(h.shape[0], format="csr")).tocsr()
    vals, _ = ggd.lowest_modes(saddle, 13, tiny_glass["positions"], system["box"])
    assert vals[0] < -ggd.ZERO_MODE_TOL             # the unstable modes are there
    with pytest.raises(RuntimeError):
        ggd.check_modes(vals)


def test_no_host_callback_runs_inside_a_compiled_phase(ggd, tiny_glass):
    """The k-d tree list is rebuilt on the host between compiled chunks, never from inside one:
    a jax.pure_callback in the loop deadlocked on one pinned core at 10^4 atoms (report 13.4).
    Every phase's program (descent, Brownian, FIRE) on a k-d tree list holds no callback, and a
    chunk stops where its list went stale."""
    import dataclasses
    from functools import partial
    import jax
    import jax.numpy as jnp
    from jax_md import simulate
    assert ggd.NEIGHBOUR_LIST == "kdtree"
    system = _system(ggd, tiny_glass)
    skin = ggd.SKIN_DYNAMICS
    nbrs = neighbours.allocate_neighbors(ggd.engine().neighbour_list_fn(system["box"], system["r_cutoff"], skin),
                                  jnp.asarray(tiny_glass["positions"], jnp.float32))
    state = simulate.BrownianState(jnp.asarray(tiny_glass["positions"], jnp.float32),
                                   jnp.float32(1), jax.random.PRNGKey(0))
    p = dynamics.params(system, jnp.float32, r_list=system["r_cutoff"], dt=ggd.DT, gamma=ggd.GAMMA,
                    kT_start=2.0, kT_end=2.0, total=1000, step_size=1e-3, max_move=0.02)
    p64 = dynamics.params(system, jnp.float64, r_list=system["r_cutoff"], tol=1e-10, mass=1.0)
    fire = dict(skin=skin, dt_start=ggd.FIRE_DT_START, dt_max=ggd.FIRE_DT_MAX, kernel="dense",
                block_rows=64)
    r64 = jnp.asarray(tiny_glass["positions"], jnp.float64)
    nbrs64 = dataclasses.replace(nbrs, reference_position=r64)
    programs = {
        "descent": (partial(dynamics._descent_chunk, params=p, soft=False, skin=skin, kernel="dense",
                            block_rows=64),
                    state, nbrs),
        "brownian": (partial(dynamics._brownian_chunk, params=p, skin=skin, kernel="dense", block_rows=0), state,
                     nbrs),
        "fire": (partial(dynamics._fire_chunk, params=p64, **fire),
                 dynamics._fire_init(r64, nbrs64, p64, **fire), nbrs64)}
    for name, (chunk, st, nb) in programs.items():
        text = jax.jit(chunk).lower(st, nb, 0, 1000).as_text()
        assert "callback" not in text, name
    # hot Brownian steps move an atom skin/2 well before 1000 steps: the chunk stops there
    _, nb, ran, stale = dynamics._brownian_chunk(state, nbrs, 0, 1000, params=p, skin=skin,
                                            kernel="dense", block_rows=0)
    assert bool(stale) and 0 < int(ran) < 1000
