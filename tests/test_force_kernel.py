"""FORCE_KERNEL = "dense" and "dense_r2" (the default: the pair term in closed form in r^2):
explicit pair forces summed along the rows of a Dense neighbour list (no scatter) are the forces of the default path (-jax.grad of the energy on a half list), the
Dense list is jax-md's, an overflowing one is reallocated as the half list is, the whole
protocol reaches a checked inherent structure with it, and it is recorded in the protocol."""
import numpy as np
import pytest

from softglass import dynamics, forces, neighbours, potentials

from conftest import TINY
from test_glass_physics import (   # the half list's check, renamed: not collected twice
    _system, test_overflowed_neighbor_list_is_reallocated_and_chunk_redone as overflow_check)


def _forces(ggd, monkeypatch, kernel, positions, system, pair, r_list, skin=0.3):
    """The forces the compiled phases see, on a list allocated as they allocate it (float64)."""
    import jax.numpy as jnp
    from jax_md import quantity
    monkeypatch.setattr(ggd, "FORCE_KERNEL", kernel)
    p = dynamics.params(system, jnp.float64, r_list=r_list)
    r = jnp.asarray(positions, jnp.float64)
    nbrs = neighbours.allocate_neighbors(ggd.engine().neighbour_list_fn(system["box"], r_list, skin), r)
    _, _, energy_or_forces = forces.pair_system(p["box"], p["r_list"], skin, pair,
                                         **ggd.engine().statics(len(positions)))
    force = quantity.canonicalize_force(energy_or_forces)
    out = force(r, neighbor=nbrs, species=p["species"], sigma=p["sigma"], epsilon=p["epsilon"])
    return np.asarray(out), nbrs


def _pair_force_scale(ggd, positions, system):
    """max_i sum_j |phi'(r_ij)|: the size of the terms each atom's force sums (at a minimum the
    sum itself is ~1e-11, so round-off is measured against this)."""
    i, j, _, _, _, d1, _ = forces.pairs_with_parameters(positions, system)
    return float(np.max(np.bincount(np.concatenate([i, j]), np.abs(np.concatenate([d1, d1])),
                                    minlength=len(positions))))


def _liquid(ggd, tiny_glass, system):
    """The tiny glass after 50 Brownian steps at T = 1 (float32): a hot, disordered state."""
    import jax
    return ggd.brownian(tiny_glass["positions"], system, jax.random.PRNGKey(7), 1.0, 1.0, 50,
                        "liquid")


@pytest.mark.parametrize("kernel", ["dense", "dense_r2"])
@pytest.mark.parametrize("state", ["glass", "liquid"])
def test_dense_forces_are_the_gradients_forces(ggd, tiny_glass, monkeypatch, state, kernel):
    system = _system(ggd, tiny_glass)
    r = tiny_glass["positions"] if state == "glass" else _liquid(ggd, tiny_glass, system)
    lj = potentials.smoothed_lj(system["r_onset"], system["r_cutoff"])
    f_grad, sparse = _forces(ggd, monkeypatch, "grad", r, system, lj, system["r_cutoff"])
    f_dense, dense = _forces(ggd, monkeypatch, kernel, r, system, lj, system["r_cutoff"])
    assert sparse.idx.shape[0] == 2 and dense.idx.shape[0] == len(r)
    _, f_pairs = ggd.energy_and_forces(r, system)
    scale = _pair_force_scale(ggd, r, system)
    assert np.max(np.abs(f_dense - f_grad)) < 1e-12 * scale
    assert np.max(np.abs(f_dense - f_pairs)) < 1e-12 * scale
    if state == "liquid":     # forces far from zero: relative to the largest, too
        assert np.max(np.abs(f_dense - f_grad)) < 1e-12 * np.max(np.abs(f_grad))


def test_closed_form_force_over_r_is_the_derivative_of_the_smoothed_lj(ggd):
    """"dense_r2"'s (dE/dr)/r as a function of r^2 equals the forward-mode derivative of
    smoothed_lj divided by r for every species pair, below the onset, across the switch and at
    the cut-off, and is zero beyond it; the closed form needs no r."""
    import jax
    import jax.numpy as jnp
    system = ggd.make_system(n_atoms=1000)
    lj = potentials.smoothed_lj(system["r_onset"], system["r_cutoff"])
    r = jnp.linspace(0.75, 2.7, 4001, dtype=jnp.float64)
    for sigma, epsilon in zip(np.ravel(system["sigma"]), np.ravel(system["epsilon"])):
        s, e = jnp.float64(sigma), jnp.float64(epsilon)
        _, dphi = jax.jvp(lambda d: lj(d, sigma=s, epsilon=e), (r,), (jnp.ones_like(r),))
        closed = np.asarray(lj.force_over_r(r * r, sigma=s, epsilon=e))
        expected = np.asarray(dphi / r)
        scale = np.abs(expected)[np.asarray(r) > 0.95 * sigma].max()
        assert np.max(np.abs(closed - expected)) < 1e-13 * max(scale, np.max(np.abs(expected)))
        beyond = np.asarray(r) >= system["r_cutoff"]
        assert beyond.any() and (closed[beyond] == 0).all()
        inside = (np.asarray(r) > system["r_onset"]) & ~beyond
        assert np.abs(closed[inside]).max() > 0                 # the switch region is computed


@pytest.mark.parametrize("kernel", ["dense", "dense_r2"])
def test_dense_soft_sphere_forces_are_the_gradients_forces(ggd, monkeypatch, kernel):
    """The untangling phase's soft spheres, from random (overlapping) positions ("dense_r2"
    differentiates them as "dense" does: they have no closed form)."""
    system = ggd.make_system(**{k: TINY[k] for k in ("n_atoms", "density", "seed")})
    r = np.random.default_rng(0).uniform(0, system["box"], (TINY["n_atoms"], 3))
    r_list = float(np.max(system["sigma"]))
    f_grad, _ = _forces(ggd, monkeypatch, "grad", r, system, potentials.soft_sphere_pair, r_list)
    f_dense, _ = _forces(ggd, monkeypatch, kernel, r, system, potentials.soft_sphere_pair, r_list)
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
        lists[kind] = ggd.engine().neighbour_list_fn(box, system["r_cutoff"], 0.3).allocate(
            jnp.asarray(pos))
    ref = np.asarray(lists["jax"].idx)
    assert np.array_equal(np.asarray(lists["kdtree"].idx), ref)
    padded, longest = neighbours.dense_neighbours(pos, box, system["r_cutoff"] + 0.3,
                                           capacity=ref.shape[1] + 5)
    assert longest == ref.shape[1] and np.array_equal(padded[:, :longest], ref)
    assert (padded[:, longest:] == 250).all()
    short, longest = neighbours.dense_neighbours(pos, box, system["r_cutoff"] + 0.3, capacity=10)
    assert longest == ref.shape[1] and np.array_equal(short, ref[:, :10])   # overflow: counted


@pytest.mark.parametrize("kind", ["kdtree", "jax"])
def test_overflowed_dense_list_is_reallocated_and_chunk_redone(ggd, tiny_glass, monkeypatch,
                                                                kind):
    """Rows too short for an atom's neighbours must not drop them: the phase reallocates and
    gives the same trajectory as a run that never overflowed (test_glass_physics.py's check of
    the half list, on half-length rows)."""
    monkeypatch.setattr(ggd, "FORCE_KERNEL", "dense")
    overflow_check(ggd, tiny_glass, monkeypatch, kind)


@pytest.mark.parametrize("kernel", ["dense", "dense_r2"])
@pytest.mark.parametrize("cell", [False, True])
def test_forces_summed_in_blocks_are_the_one_block_forces(ggd, tiny_glass, cell, kernel):
    """The blocked sum (FORCE_BLOCK_ROWS rows at a time, the last block padded with empty rows)
    gives each atom the forces of the one-block sum, to round-off, in the cubic box and in a
    sheared cell (fractional coordinates, softglass.shear's FIRE); with blocks larger than the system it
    is the one-block program itself."""
    import jax
    import jax.numpy as jnp
    system = _system(ggd, tiny_glass)
    box = system["box"]
    p = dynamics.params(system, jnp.float64, r_list=system["r_cutoff"])
    r = jnp.asarray(_liquid(ggd, tiny_glass, system), jnp.float64)
    nbrs = neighbours.allocate_neighbors(ggd.engine().neighbour_list_fn(box, system["r_cutoff"], 0.3), r)
    shear = np.eye(3)
    shear[0, 2] = 0.05
    tilted = jnp.asarray(box * shear)
    x = jnp.mod(r / box, 1.0) if cell else r         # the list is only a superset of pairs there
    lj = potentials.smoothed_lj(p["r_onset"], p["r_cutoff"])
    kw = dict(species=p["species"], sigma=p["sigma"], epsilon=p["epsilon"])

    def summed(block_rows, kernel=kernel):
        fn = forces.pair_forces(lj, None if cell else box, tilted if cell else None, kernel,
                             block_rows)
        return np.asarray(jax.jit(lambda x, nb: fn(x, nb, **kw))(x, nbrs))

    one = summed(0)
    assert np.max(np.abs(one)) > 1.0                       # a hot state: forces far from zero
    if kernel != "dense":                                  # the same forces as the jvp's
        np.testing.assert_allclose(one, summed(0, "dense"), rtol=0,
                                   atol=1e-12 * np.max(np.abs(one)))
    for rows in (64, 128, 199):                            # 4, 2, 2 blocks; N = 200
        np.testing.assert_allclose(summed(rows), one, rtol=0, atol=1e-12 * np.max(np.abs(one)))
    assert np.array_equal(summed(200), one) and np.array_equal(summed(4096), one)


def test_blocked_force_sum_is_recorded_only_where_it_applies(ggd, monkeypatch):
    """FORCE_BLOCK_ROWS and FORCE_ONE_BLOCK_MAX_ATOMS shape a dense-kernel glass of more than
    FORCE_ONE_BLOCK_MAX_ATOMS atoms only: recorded for it (a 10^4-atom set made with blocks is not
    taken for one made without), left out below, so every 1000-atom set keeps its hash."""
    import generate_diverse_data as gdd
    assert forces.force_block_rows(1000, ggd.FORCE_BLOCK_ROWS, ggd.FORCE_ONE_BLOCK_MAX_ATOMS) == 0 and forces.force_block_rows(10000, ggd.FORCE_BLOCK_ROWS, ggd.FORCE_ONE_BLOCK_MAX_ATOMS) == ggd.FORCE_BLOCK_ROWS
    small = ggd.protocol_constants(1000)
    assert "FORCE_BLOCK_ROWS" not in small and "FORCE_ONE_BLOCK_MAX_ATOMS" not in small
    large = ggd.protocol_constants(10000)
    assert large["FORCE_BLOCK_ROWS"] == 128 and large["FORCE_ONE_BLOCK_MAX_ATOMS"] == 2000
    monkeypatch.setattr(gdd, "N_ATOMS", 10000)
    _, blocked_hash = gdd.glass_protocol(ggd)
    monkeypatch.setattr(ggd, "FORCE_BLOCK_ROWS", 256)
    assert gdd.glass_protocol(ggd)[1] != blocked_hash
    monkeypatch.setattr(ggd, "FORCE_KERNEL", "grad")        # no blocks: nothing to record
    assert "FORCE_BLOCK_ROWS" not in ggd.protocol_constants(10000)


@pytest.mark.parametrize("kernel,blocks", [("dense", "one block"), ("dense", "blocks of 64 rows"),
                                           ("dense_r2", "one block")])
def test_dense_kernel_makes_a_checked_inherent_structure(ggd, tiny_glass, monkeypatch, kernel,
                                                         blocks):
    """The whole protocol with FORCE_KERNEL = "dense" (soft-sphere untangling, LJ descent,
    Brownian heat and quench in float32, FIRE in float64), its forces in one block or, as above
    FORCE_ONE_BLOCK_MAX_ATOMS atoms, in blocks: make_glass's own checks pass (max|F| < FORCE_TOL
    recomputed from the pair list, the Hessian's blocks and modes, no overlap), and the glass is
    a Kob-Andersen glass like the default path's (round-off may change the basin); the same with
    "dense_r2"'s closed-form pair term."""
    monkeypatch.setattr(ggd, "FORCE_KERNEL", kernel)
    if blocks != "one block":
        monkeypatch.setattr(ggd, "FORCE_ONE_BLOCK_MAX_ATOMS", 100)
        monkeypatch.setattr(ggd, "FORCE_BLOCK_ROWS", 64)
    glass = ggd.make_glass(log=lambda *a: None, **TINY)
    p = glass["parameters"]
    assert p["max_force"] < ggd.FORCE_TOL
    assert p["min_pair_distance"] > ggd.MIN_PAIR_DISTANCE
    assert np.isclose(glass["softness_score"].sum(), ggd.N_SOFT_MODES)
    n = TINY["n_atoms"]
    assert abs(glass["energy"] / n - tiny_glass["energy"] / n) < 0.05


def test_force_kernel_is_recorded_in_the_protocol_unless_grad(ggd, monkeypatch):
    """"grad" (the kernel of the glasses made before the default became "dense") is left out, so
    those glasses keep their protocol hash; "dense" and "dense_r2" are in, so a diverse set made
    with one is not taken for one made with another."""
    import generate_diverse_data as gdd
    assert ggd.FORCE_KERNEL == "dense_r2"
    monkeypatch.setattr(ggd, "FORCE_KERNEL", "dense")
    assert ggd.protocol_constants()["FORCE_KERNEL"] == "dense"
    _, dense_hash = gdd.glass_protocol(ggd)
    monkeypatch.setattr(ggd, "FORCE_KERNEL", "grad")
    assert "FORCE_KERNEL" not in ggd.protocol_constants()
    _, grad_hash = gdd.glass_protocol(ggd)
    assert dense_hash != grad_hash
    monkeypatch.setattr(ggd, "FORCE_KERNEL", "dense_r2")     # other round-off: another glass
    assert ggd.protocol_constants()["FORCE_KERNEL"] == "dense_r2"
    assert gdd.glass_protocol(ggd)[1] not in (dense_hash, grad_hash)
    assert "FORCE_BLOCK_ROWS" in ggd.protocol_constants(10000)    # summed in blocks too
    monkeypatch.setattr(ggd, "FORCE_KERNEL", "scatter")
    with pytest.raises(ValueError, match="FORCE_KERNEL"):
        forces.list_format(ggd.FORCE_KERNEL)


def test_bench_neighbours_times_both_lists_and_finds_them_equal(tmp_path):
    """benchmarks/bench_neighbours.py (report 13.1) runs on the current neighbour-list API:
    at N = 200 its host k-d tree rebuild gives jax-md's brute-force list for both formats."""
    import json
    import os
    import subprocess
    import sys
    out = tmp_path / "bench.json"
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                          "bench_neighbours.py")
    proc = subprocess.run([sys.executable, script, "--SIZES=200", "--REPEATS=1",
                           "--DTYPES=float64", f"--OUT_FILE={out}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["kernel"] for r in rows] == ["dense", "grad"]
    for r in rows:
        assert r["same_list"] is True
        assert r["kdtree_rebuild_ms"] > 0 and r["force_ms"] > 0 and r["jax_md_rebuild_ms"] > 0


def test_bench_pair_finders_runs_and_finds_the_kdtree_pairs(tmp_path):
    """benchmarks/bench_pair_finders.py runs on the current API at N = 400 (random positions,
    cubic and sheared cells), and every finder installed returns the k-d tree's pair set (vesin
    and matscipy are not requirements: the k-d tree is then timed alone)."""
    import json
    import os
    import subprocess
    import sys
    out = tmp_path / "bench.json"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "bench_pair_finders.py"),
                           "--SIZES=400", "--GLASS_ATOMS=0", "--REPEATS=1", "--BUILDERS=False",
                           f"--OUT={out}"], capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [r for r in json.loads(out.read_text())["rows"] if "same_set" in r]
    assert {(r["cell"], r["r_cut"]) for r in rows} >= {("cubic", 2.8), ("sheared", 2.5)}
    assert all(all(r["same_set"].values()) for r in rows)
