"""Stillinger-Weber silicon (softglass.stillinger_weber) against LAMMPS's pair_style sw, finite
differences and the diamond crystal, on 64- and 216-atom diamond lattices.

LAMMPS criterion, both parameter sets, a perturbed and a compressed lattice:
|E - E_lmp| <= 1e-10 |E_lmp|, max |F - F_lmp| <= 1e-10 eV/A, max |W - W_lmp| <= 1e-10 max |W_lmp|.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from softglass import reference_lammps
from softglass import stillinger_weber as sw
from softglass.neighbours import dense_neighbours

A_SI = 5.431                    # diamond-lattice constant of Si, A
BASIS = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                  [.25, .25, .25], [.25, .75, .75], [.75, .25, .75], [.75, .75, .25]])
POTENTIALS = {"sw1985": sw.silicon_stillinger_weber_1985(),
              "vink2001": sw.amorphous_silicon_vink_2001()}
CAPACITY = 48                   # one neighbour-matrix shape: one compiled program per potential


def diamond(cells, a, noise=0.0, seed=0):
    """cells^3 diamond unit cells of lattice constant a, each atom moved by Gaussian noise (A),
    wrapped into the box; and the box length."""
    grid = np.array([[i, j, k] for i in range(cells) for j in range(cells) for k in range(cells)])
    pos = ((grid[:, None, :] + BASIS[None]) * a).reshape(-1, 3)
    pos += np.random.default_rng(seed).normal(0.0, noise, pos.shape)
    box = cells * a
    return np.mod(pos, box), box


# 216 atoms, box 16.3 A (15.3 A) > 2 cutoffs: the perturbed crystal has 4 bonds an atom and a few
# second neighbours within the cut-off; compressed, all 12 second neighbours (a/sqrt 2 = 3.61 A).
CONFIGS = {"perturbed": (A_SI, 0.1), "compressed": (5.1, 0.15)}


def minimum_image(box):
    return lambda ra, rb: (ra - rb) - box * jnp.round((ra - rb) / box)


def neighbours(pos, box, r_list, capacity=CAPACITY):
    idx, longest = dense_neighbours(pos, box, r_list, capacity)
    assert longest <= idx.shape[1]
    return jnp.asarray(idx)


_COMPILED = {}


def energy_forces(pot):
    """jit(E, F) of positions, neighbour matrix and box (cached per potential)."""
    if pot not in _COMPILED:
        def value(pos, idx, box):
            return pot.energy(pos, idx, jnp.zeros(len(pos), jnp.int32), minimum_image(box))
        vg = jax.jit(jax.value_and_grad(value))
        _COMPILED[pot] = lambda pos, idx, box: (lambda e, g: (float(e), -np.asarray(g)))(
            *vg(jnp.asarray(pos), idx, box))
    return _COMPILED[pot]


def sw_file(pot, path):
    """pot's parameters in LAMMPS's sw format (tol last, unused by pair sw)."""
    values = (pot.epsilon, pot.sigma, pot.a, pot.lam, pot.gamma, pot.costheta0, pot.A, pot.B,
              pot.p, pot.q, 0.0)
    with open(path, "w") as fh:
        fh.write("Si Si Si " + " ".join(repr(float(v)) for v in values) + "\n")
    return path


def lammps(pos, box, parameter_file):
    try:
        reference_lammps.load_lammps()
    except ImportError as err:
        pytest.skip(f"LAMMPS cannot load: {err}")
    return reference_lammps.energy_forces_virial(
        pos, np.ones(len(pos), int), box, [28.0855],
        ["pair_style sw", f"pair_coeff * * {parameter_file} Si"])


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("which", POTENTIALS)
def test_energy_forces_and_virial_agree_with_lammps(which, config, tmp_path):
    pot = POTENTIALS[which]
    pos, box = diamond(3, *CONFIGS[config])
    e_ref, f_ref, w_ref = lammps(pos, box, sw_file(pot, tmp_path / "Si.sw"))
    idx = neighbours(pos, box, pot.cutoff + 1.0)      # a skin of entries beyond the cut-off
    e, f = energy_forces(pot)(pos, idx, box)
    w = np.asarray(jax.jit(sw.virial, static_argnums=(0, 4))(
        pot, jnp.asarray(pos), idx, None, minimum_image(box)))
    assert abs(e - e_ref) <= 1e-10 * abs(e_ref)
    assert np.abs(f - f_ref).max() <= 1e-10
    assert np.abs(w - w_ref).max() <= 1e-10 * np.abs(w_ref).max()
    assert np.abs(f_ref).max() > 1.0 and np.abs(w_ref).max() > 10.0     # not trivially zero


def test_1985_parameters_are_lammps_own_si_sw():
    """LAMMPS's shipped Si.sw holds our 1985 numbers (cos theta0 written -0.333333333333) and
    gives the same energy and forces."""
    pot = POTENTIALS["sw1985"]
    path = reference_lammps.potential_file("Si.sw")
    words = " ".join(line.split("#")[0] for line in open(path)).split()
    assert words[:3] == ["Si"] * 3
    values = [float(w) for w in words[3:14]]
    mine = [pot.epsilon, pot.sigma, pot.a, pot.lam, pot.gamma, pot.costheta0, pot.A, pot.B,
            pot.p, pot.q]
    assert np.allclose(values[:10], mine, rtol=1e-12, atol=0)
    pos, box = diamond(3, *CONFIGS["compressed"])
    e_ref, f_ref, _ = lammps(pos, box, path)
    e, f = energy_forces(pot)(pos, neighbours(pos, box, pot.cutoff + 1.0), box)
    assert abs(e - e_ref) <= 1e-10 * abs(e_ref) and np.abs(f - f_ref).max() <= 1e-10


def test_perfect_diamond_has_the_sw_cohesive_energy_and_no_forces(tmp_path):
    """SW's A and B put the minimum of the diamond lattice at -2 eps = -4.3366 eV/atom (Stillinger
    and Weber 1985), the bond length 2^(1/6) sigma = 2.3517 A being sqrt(3)/4 of 5.431 A; the three-
    body term vanishes at the tetrahedral angle, and symmetry leaves no force."""
    pot = POTENTIALS["sw1985"]
    pos, box = diamond(3, A_SI)
    e, f = energy_forces(pot)(pos, neighbours(pos, box, pot.cutoff + 1.0), box)
    assert abs(e / len(pos) - (-4.3366)) < 1e-6        # -2 eps: measured -4.33660000
    assert np.abs(f).max() < 1e-12
    e_ref, _, _ = lammps(pos, box, sw_file(pot, tmp_path / "Si.sw"))
    assert abs(e - e_ref) <= 1e-10 * abs(e_ref)


@pytest.mark.parametrize("which", POTENTIALS)
def test_forces_are_minus_the_central_difference_of_the_energy(which):
    """F = -dE/dx against (E(x + h) - E(x - h)) / 2h, h = 1e-5 A: truncation h^2 E'''/6 ~ 1e-10,
    rounding 1e-16 |E| / h ~ 1e-8 eV/A."""
    pot = POTENTIALS[which]
    pos, box = diamond(3, *CONFIGS["compressed"], seed=1)
    idx = neighbours(pos, box, pot.cutoff + 1.0)
    _, f = energy_forces(pot)(pos, idx, box)
    h = 1e-5
    for atom in (0, 17, 100, 215):
        for x in range(3):
            plus, minus = pos.copy(), pos.copy()
            plus[atom, x] += h
            minus[atom, x] -= h
            fd = -(energy_forces(pot)(plus, idx, box)[0]
                   - energy_forces(pot)(minus, idx, box)[0]) / (2 * h)
            assert abs(fd - f[atom, x]) < 1e-7 * max(1.0, abs(f[atom, x]))


def test_translation_changes_nothing_and_forces_sum_to_zero():
    pot = POTENTIALS["vink2001"]
    pos, box = diamond(3, *CONFIGS["perturbed"], seed=2)
    e, f = energy_forces(pot)(pos, neighbours(pos, box, pot.cutoff + 1.0), box)
    moved = np.mod(pos + np.array([0.37, -1.21, 7.5]), box)
    e2, f2 = energy_forces(pot)(moved, neighbours(moved, box, pot.cutoff + 1.0), box)
    assert abs(e2 - e) <= 1e-12 * abs(e) and np.abs(f2 - f).max() < 1e-11
    assert np.abs(f.sum(axis=0)).max() < 1e-11


def test_entries_beyond_the_cutoff_padding_and_jax_md_displacements_change_nothing():
    """The matrix at exactly the cut-off (longest row) against one with 2 A of extra neighbours
    and padded slots (index N, also in row N - 1), and a broadcasting displacement against
    jax-md's space.periodic one (a single (3,) vector, vmapped)."""
    from jax_md import space
    pot = POTENTIALS["vink2001"]
    pos, box = diamond(3, *CONFIGS["compressed"], seed=3)
    tight, _ = dense_neighbours(pos, box, pot.cutoff)
    loose = neighbours(pos, box, pot.cutoff + 2.0, capacity=80)
    assert (np.asarray(loose)[-1] == len(pos)).any() and tight.shape[1] < 30
    species = jnp.zeros(len(pos), jnp.int32)
    vg = jax.jit(jax.value_and_grad(pot.energy), static_argnums=3)
    results = [vg(jnp.asarray(pos), jnp.asarray(tight), species, minimum_image(box)),
               vg(jnp.asarray(pos), loose, species, minimum_image(box)),
               vg(jnp.asarray(pos), loose, species, space.periodic(box)[0])]
    e0, g0 = results[0]
    for e, g in results[1:]:
        assert np.all(np.isfinite(np.asarray(g)))
        assert abs(float(e - e0)) <= 1e-12 * abs(float(e0))
        assert np.abs(np.asarray(g - g0)).max() < 1e-12


def flat_energy(x, idx, box):
    return POTENTIALS["vink2001"].energy(x.reshape(-1, 3), idx, None, minimum_image(box))


GRADIENT, HESSIAN = jax.jit(jax.grad(flat_energy)), jax.jit(jax.hessian(flat_energy))


@pytest.mark.parametrize("gap", [1e-2, 1e-7])
def test_hessian_is_finite_and_symmetric_with_pairs_at_the_cutoff(gap):
    """64 atoms whose 12 second neighbours a/sqrt 2 sit `gap` A inside the cut-off, moved by
    Gaussian noise of `gap`, so pairs sit just inside and just outside it: jax.hessian (forward
    over reverse) is finite and symmetric, and H v matches the central difference of the forces."""
    pot = POTENTIALS["vink2001"]                       # flat_energy's
    pos, box = diamond(2, np.sqrt(2) * (pot.cutoff - gap), noise=gap, seed=4)
    idx = neighbours(pos, box, pot.cutoff + 1.0)
    x = jnp.asarray(pos).ravel()
    hess = np.asarray(HESSIAN(x, idx, box))
    assert np.all(np.isfinite(hess))
    assert np.abs(hess - hess.T).max() <= 1e-10 * np.abs(hess).max()
    v = np.random.default_rng(5).normal(size=x.shape)
    h = 1e-6
    fd = (np.asarray(GRADIENT(x + h * v, idx, box))
          - np.asarray(GRADIENT(x - h * v, idx, box))) / (2 * h)
    assert np.abs(hess @ v - fd).max() < 1e-6 * np.abs(hess @ v).max()


def test_same_energy_as_jax_md_up_to_its_angular_regulariser():
    """jax-md's stillinger_weber_neighbor_list with lam = 21 and three_body_strength = 1.5 is
    Vink's lambda = 31.5; it differs from ours only by the 1e-7 A its cosine adds to each bond
    length (a few 1e-9 of the energy)."""
    from types import SimpleNamespace
    from jax_md import energy as jmd_energy, partition
    pot = POTENTIALS["vink2001"]
    pos, box = diamond(3, *CONFIGS["perturbed"])
    idx = neighbours(pos, box, pot.cutoff + 1.0)
    _, theirs = jmd_energy.stillinger_weber_neighbor_list(
        minimum_image(box), box, sigma=pot.sigma, A=pot.A, B=pot.B, lam=21.0, gamma=pot.gamma,
        epsilon=pot.epsilon, three_body_strength=1.5, cutoff=pot.cutoff,
        neighbor_list_fn=lambda *args, **kwargs: None)
    listed = SimpleNamespace(idx=idx, format=partition.Dense)
    e_theirs = float(jax.jit(lambda x: theirs(x, listed))(jnp.asarray(pos)))
    e, _ = energy_forces(pot)(pos, idx, box)
    assert abs(e - e_theirs) < 1e-7 * abs(e)


def test_record_holds_every_parameter():
    import json
    for pot, lam, eps in ((POTENTIALS["sw1985"], 21.0, 2.1683),
                          (POTENTIALS["vink2001"], 31.5, 1.64833)):
        rec = json.loads(json.dumps(pot.record()))
        assert rec["name"] == "sw" and rec["elements"] == ["Si"] and rec["masses"] == [28.0855]
        assert rec["units"] == "metal" and rec["cutoff"] == pytest.approx(3.77118, abs=1e-12)
        assert rec["lambda"] == lam and rec["epsilon"] == eps
        expected = dict(sigma=2.0951, a=1.8, gamma=1.2, A=7.049556277, B=0.6022245584, p=4.0,
                        q=0.0, costheta0=-1 / 3)
        assert {k: rec[k] for k in expected} == expected
        assert "Stillinger" in rec["citation"]
    assert "Vink" in POTENTIALS["vink2001"].record()["citation"]
    assert hash(POTENTIALS["sw1985"]) != hash(sw.silicon_stillinger_weber_1985())  # identity


# ================================ closed-form forces =============================================
def closed_form(pot, pos, idx, box, displacement=None):
    """pot.forces and -jax.grad(pot.energy) on the neighbour matrix idx (numpy, eV/A)."""
    disp = minimum_image(box) if displacement is None else displacement
    species = jnp.zeros(len(pos), jnp.int32)
    f = jax.jit(lambda r, nb: pot.forces(r, nb, species, disp))(jnp.asarray(pos), idx)
    g = jax.jit(jax.grad(lambda r, nb: pot.energy(r, nb, species, disp)))(jnp.asarray(pos), idx)
    return np.asarray(f), -np.asarray(g)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("which", POTENTIALS)
def test_closed_form_forces_are_minus_the_energy_gradient(which, config):
    """forces() (the three-body term through each atom's moments) against -jax.grad(energy)
    (the sum over every angle), max |dF| <= 1e-12 eV/A (measured <= 3e-14), on a list with 1 A
    of entries beyond the cut-off."""
    pot = POTENTIALS[which]
    pos, box = diamond(3, *CONFIGS[config])
    f, minus_grad = closed_form(pot, pos, neighbours(pos, box, pot.cutoff + 1.0), box)
    assert np.abs(minus_grad).max() > 5.0
    assert np.abs(f - minus_grad).max() <= 1e-12, np.abs(f - minus_grad).max()


@pytest.mark.parametrize("gap", [1e-2, 1e-7])
def test_closed_form_forces_with_pairs_at_the_cutoff(gap):
    """The 64-atom lattice whose second neighbours sit within `gap` of the cut-off, on both
    sides of it: forces() is finite and -jax.grad(energy) there too."""
    pot = POTENTIALS["vink2001"]
    pos, box = diamond(2, np.sqrt(2) * (pot.cutoff - gap), noise=gap, seed=4)
    f, minus_grad = closed_form(pot, pos, neighbours(pos, box, pot.cutoff + 1.0), box)
    assert np.all(np.isfinite(f))
    assert np.abs(f - minus_grad).max() <= 1e-12, np.abs(f - minus_grad).max()


def test_closed_form_forces_translation_extra_entries_and_jax_md_displacement():
    """Closed-form forces sum to zero; a rigid translation, a list with 2 A of extra entries
    and padded slots, and jax-md's periodic displacement leave them as they were."""
    from jax_md import space
    pot = POTENTIALS["vink2001"]
    pos, box = diamond(3, *CONFIGS["compressed"], seed=3)
    tight, _ = dense_neighbours(pos, box, pot.cutoff)
    loose = neighbours(pos, box, pot.cutoff + 2.0, capacity=80)
    assert (np.asarray(loose)[-1] == len(pos)).any() and tight.shape[1] < 30
    f, _ = closed_form(pot, pos, jnp.asarray(tight), box)
    assert np.abs(f.sum(axis=0)).max() < 1e-12 and np.abs(f).max() > 5.0
    moved = np.mod(pos + np.array([0.37, -1.21, 7.5]), box)
    others = [closed_form(pot, pos, loose, box)[0],
              closed_form(pot, moved, neighbours(moved, box, pot.cutoff + 2.0, 80), box)[0],
              closed_form(pot, pos, loose, box, space.periodic(box)[0])[0]]
    for other in others:
        assert np.abs(other - f).max() < 1e-12


def test_md_with_closed_form_forces_follows_the_energy_gradient():
    """20 Nose-Hoover NVT steps at 3000 K through molecular_dynamics.nvt with forces() and with
    reverse mode (a copy whose `forces` is hidden): the same trajectory to 1e-10 A."""
    import dataclasses
    from softglass import molecular_dynamics as md

    class EnergyOnly(sw.StillingerWeber):
        forces = None

    pot = POTENTIALS["vink2001"]
    hidden = EnergyOnly(**{f.name: getattr(pot, f.name)
                           for f in dataclasses.fields(pot) if f.init})
    assert md.energy_on_list(hidden, 1.0).__name__ == "energy"
    pos, box = diamond(2, A_SI, 0.1, seed=6)
    species = np.zeros(len(pos), np.int32)
    settings = md.MDSettings(dt=0.001, tau=0.1, skin=0.5, chunk_steps=10, show_progress=False)
    final = [np.asarray(md.nvt(p, pos, box, species, jax.random.PRNGKey(0), 3000.0, 3000.0, 20,
                               "nvt", settings=settings).position) for p in (pot, hidden)]
    moved = final[0] - pos
    moved = np.abs(moved - box * np.round(moved / box)).max()
    assert moved > 0.02                               # the atoms did move
    assert np.abs(final[0] - final[1]).max() < 1e-10, np.abs(final[0] - final[1]).max()
