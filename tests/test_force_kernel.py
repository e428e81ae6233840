"""FORCE_KERNEL = "dense": explicit pair forces summed along the rows of a Dense neighbour list
(no scatter) are the forces of the default path (-jax.grad of the energy on a half list), the
Dense list is jax-md's, an overflowing one is reallocated as the half list is, the whole
protocol reaches a checked inherent structure with it, and it is recorded in the protocol."""
import numpy as np
import pytest

from conftest import TINY
from test_glass_physics import (   # the half list's check, renamed: not collected twice
    _system, test_overflowed_neighbor_list_is_reallocated_and_chunk_redone as overflow_check)


def _forces(ggd, monkeypatch, kernel, positions, system, pair, r_list, skin=0.3):
    """The forces the compiled phases see, on a list allocated as they allocate it (float64)."""
    import jax.numpy as jnp
    from jax_md import quantity
    monkeypatch.setattr(ggd, "FORCE_KERNEL", kernel)
    p = ggd._params(system, jnp.float64, r_list=r_list)
    r = jnp.asarray(positions, jnp.float64)
    nbrs = ggd.allocate_neighbors(ggd.neighbor_list_fn(system["box"], r_list, skin), r)
    _, _, energy_or_forces = ggd._system(p["box"], p["r_list"], skin, pair)
    force = quantity.canonicalize_force(energy_or_forces)
    out = force(r, neighbor=nbrs, species=p["species"], sigma=p["sigma"], epsilon=p["epsilon"])
    return np.asarray(out), nbrs


def _pair_force_scale(ggd, positions, system):
    """max_i sum_j |phi'(r_ij)|: the size of the terms each atom's force sums (at a minimum the
    sum itself is ~1e-11, so round-off is measured against this)."""
    i, j, _, _, _, d1, _ = ggd._pairs_with_parameters(positions, system)
    return float(np.max(np.bincount(np.concatenate([i, j]), np.abs(np.concatenate([d1, d1])),
                                    minlength=len(positions))))


def _liquid(ggd, tiny_glass, system):
    """The tiny glass after 50 Brownian steps at T = 1 (float32): a hot, disordered state."""
    import jax
    return ggd.brownian(tiny_glass["positions"], system, jax.random.PRNGKey(7), 1.0, 1.0, 50,
                        "liquid")


@pytest.mark.parametrize("state", ["glass", "liquid"])
def test_dense_forces_are_the_gradients_forces(ggd, tiny_glass, monkeypatch, state):
    system = _system(ggd, tiny_glass)
    r = tiny_glass["positions"] if state == "glass" else _liquid(ggd, tiny_glass, system)
    lj = ggd.smoothed_lj(system["r_onset"], system["r_cutoff"])
    f_grad, sparse = _forces(ggd, monkeypatch, "grad", r, system, lj, system["r_cutoff"])
    f_dense, dense = _forces(ggd, monkeypatch, "dense", r, system, lj, system["r_cutoff"])
    assert sparse.idx.shape[0] == 2 and dense.idx.shape[0] == len(r)
    _, f_pairs = ggd.energy_and_forces(r, system)
    scale = _pair_force_scale(ggd, r, system)
    assert np.max(np.abs(f_dense - f_grad)) < 1e-12 * scale
    assert np.max(np.abs(f_dense - f_pairs)) < 1e-12 * scale
    if state == "liquid":     # forces far from zero: relative to the largest, too
        assert np.max(np.abs(f_dense - f_grad)) < 1e-12 * np.max(np.abs(f_grad))


def test_dense_soft_sphere_forces_are_the_gradients_forces(ggd, monkeypatch):
    """The untangling phase's soft spheres, from random (overlapping) positions."""
    system = ggd.make_system(**{k: TINY[k] for k in ("n_atoms", "density", "seed")})
    r = np.random.default_rng(0).uniform(0, system["box"], (TINY["n_atoms"], 3))
    r_list = float(np.max(system["sigma"]))
    f_grad, _ = _forces(ggd, monkeypatch, "grad", r, system, ggd.soft_sphere_pair, r_list)
    f_dense, _ = _forces(ggd, monkeypatch, "dense", r, system, ggd.soft_sphere_pair, r_list)
    assert np.max(np.abs(f_grad)) > 0.1
    assert np.max(np.abs(f_dense - f_grad)) < 1e-12 * np.max(np.abs(f_grad))


def test_kdtree_dense_list_holds_jax_mds_brute_force_rows(ggd, monkeypatch):
    """dense_neighbours (the k-d tree) gives the very buffer jax-md's brute-force Dense list
    gives: each atom's neighbours in increasing order, padded with N, atoms inside and outside
    the box."""
    import jax.numpy as jnp
    monkeypatch.setattr(ggd, "FORCE_KERNEL", "dense")
    system = ggd.make_system(n_atoms=250, density=1.2)
    box = system["box"]
    pos = np.random.default_rng(1).uniform(-0.5 * box, 1.5 * box, (250, 3))
    lists = {}
    for kind in ("jax", "kdtree"):
        monkeypatch.setattr(ggd, "NEIGHBOUR_LIST", kind)
        lists[kind] = ggd.neighbor_list_fn(box, system["r_cutoff"], 0.3).allocate(
            jnp.asarray(pos))
    ref = np.asarray(lists["jax"].idx)
    assert np.array_equal(np.asarray(lists["kdtree"].idx), ref)
    padded, longest = ggd.dense_neighbours(pos, box, system["r_cutoff"] + 0.3,
                                           capacity=ref.shape[1] + 5)
    assert longest == ref.shape[1] and np.array_equal(padded[:, :longest], ref)
    assert (padded[:, longest:] == 250).all()
    short, longest = ggd.dense_neighbours(pos, box, system["r_cutoff"] + 0.3, capacity=10)
    assert longest == ref.shape[1] and np.array_equal(short, ref[:, :10])   # overflow: counted


@pytest.mark.parametrize("kind", ["kdtree", "jax"])
def test_overflowed_dense_list_is_reallocated_and_chunk_redone(ggd, tiny_glass, monkeypatch,
                                                                kind):
    """Rows too short for an atom's neighbours must not drop them: the phase reallocates and
    gives the same trajectory as a run that never overflowed (test_glass_physics.py's check of
    the half list, on half-length rows)."""
    monkeypatch.setattr(ggd, "FORCE_KERNEL", "dense")
    overflow_check(ggd, tiny_glass, monkeypatch, kind)


def test_dense_kernel_makes_a_checked_inherent_structure(ggd, tiny_glass, monkeypatch):
    """The whole protocol with FORCE_KERNEL = "dense" (soft-sphere untangling, LJ descent,
    Brownian heat and quench in float32, FIRE in float64): make_glass's own checks pass (max|F| <
    FORCE_TOL recomputed from the pair list, the Hessian's blocks and modes, no overlap), and the
    glass is a Kob-Andersen glass like the default path's (round-off may change the basin)."""
    monkeypatch.setattr(ggd, "FORCE_KERNEL", "dense")
    glass = ggd.make_glass(log=lambda *a: None, **TINY)
    p = glass["parameters"]
    assert p["max_force"] < ggd.FORCE_TOL
    assert p["min_pair_distance"] > ggd.MIN_PAIR_DISTANCE
    assert np.isclose(glass["softness_score"].sum(), ggd.N_SOFT_MODES)
    n = TINY["n_atoms"]
    assert abs(glass["energy"] / n - tiny_glass["energy"] / n) < 0.05


def test_force_kernel_is_recorded_in_the_protocol_unless_grad(ggd, monkeypatch):
    """"grad" (the kernel of the glasses made before the default became "dense") is left out, so
    those glasses keep their protocol hash; "dense" is in, so a diverse set made with one is not
    taken for one made with the other."""
    import generate_diverse_data as gdd
    assert ggd.FORCE_KERNEL == "dense"
    assert ggd.protocol_constants()["FORCE_KERNEL"] == "dense"
    _, dense_hash = gdd.glass_protocol(ggd)
    monkeypatch.setattr(ggd, "FORCE_KERNEL", "grad")
    assert "FORCE_KERNEL" not in ggd.protocol_constants()
    _, grad_hash = gdd.glass_protocol(ggd)
    assert dense_hash != grad_hash
    monkeypatch.setattr(ggd, "FORCE_KERNEL", "scatter")
    with pytest.raises(ValueError, match="FORCE_KERNEL"):
        ggd.list_format()
