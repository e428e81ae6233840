"""softglass.eam, the Finnis-Sinclair EAM of Cu-Zr: energy, forces and virial against LAMMPS's
pair_style eam/fs (absolute: |dE| <= 1e-10 eV, max |dF| <= 1e-10 eV/A, max |dW| <= 1e-10 eV), its
forces against finite differences of its energy, the invariances, and the file reader's errors.
250-atom perturbed B2 lattices of Cu64Zr36 at 0.058 atoms/A^3 (box 16.3 A > 2 r_c = 15.2 A)."""
import dataclasses
import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from softglass import eam
from softglass.neighbours import dense_neighbours

DENSITY = 0.058          # atoms / A^3


@pytest.fixture(scope="module")
def pot():
    return eam.cuzr_mendelev()


def b2_cuzr(seed, sigma=0.15, cells=5):
    """A B2 (two-atom bcc) lattice of cells^3 cells at DENSITY, 36 % of its sites Zr (species 1)
    at random, every atom displaced by a Gaussian of `sigma` A per axis: positions wrapped into
    the box, species, box length."""
    rng = np.random.default_rng(seed)
    a = (2 / DENSITY) ** (1 / 3)
    grid = np.stack(np.meshgrid(*[np.arange(cells)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pos = np.concatenate([grid, grid + 0.5]) * a
    species = np.zeros(len(pos), np.int32)
    species[rng.permutation(len(pos))[:round(0.36 * len(pos))]] = 1
    box = cells * a
    return (pos + rng.normal(0, sigma, pos.shape)) % box, species, box


def minimum_image(vector, box):
    return vector - box * np.round(vector / box)


def compressed_cuzr(pot):
    """b2_cuzr with a Zr atom's eight nearest neighbours pushed in to 1.0-1.7 A (the nearest six
    made Zr), so that its density passes the table's end rho_max = (nrho - 1) drho and F is
    extrapolated; and a Cu-Zr pair moved into the last interval below the cut-off, between the
    r tables' last knot (nr - 1) dr and r_c, where LAMMPS's force is the end slope."""
    pos, species, box = b2_cuzr(1)
    centre = int(np.nonzero(species == 1)[0][0])
    d = minimum_image(pos - pos[centre], box)
    r = np.linalg.norm(d, axis=1)
    r[centre] = np.inf
    near = np.argsort(r)[:8]
    for k, dist in zip(near, [1.0, 1.05, 1.1, 1.15, 1.2, 1.3, 1.5, 1.7]):
        pos[k] = pos[centre] + d[k] / r[k] * dist
    species[near[:6]] = 1
    cu = int(np.nonzero(species == 0)[0][-1])
    d = minimum_image(pos - pos[cu], box)
    r = np.linalg.norm(d, axis=1)
    zr = next(k for k in np.argsort(np.abs(r - pot.cutoff))
              if species[k] == 1 and k != centre and k not in near)
    last_knot = (pot.tables.nr - 1) * pot.tables.dr
    pos[zr] = pos[cu] + d[zr] / r[zr] * (0.5 * (last_knot + pot.cutoff))
    return pos % box, species, box


def cubic_displacement(box):
    return lambda a, b: (a - b) - box * jnp.round((a - b) / box)


def neighbours(pos, box, r_list, extra_columns=0):
    idx, longest = dense_neighbours(pos, box, r_list, capacity=None)
    return np.pad(idx, ((0, 0), (0, extra_columns)), constant_values=len(pos))


def ours(pot, pos, species, box, r_list=None):
    """Energy (eV), forces -dE/dR (eV/A) and virial W = -dE/d(epsilon) (eV), every pair vector
    mapped by (I + epsilon), at epsilon = 0."""
    nbrs = neighbours(pos, box, pot.cutoff + 0.5 if r_list is None else r_list)
    disp = cubic_displacement(box)

    def energy(positions, strain):
        return pot.energy(positions, nbrs, species,
                          lambda a, b: disp(a, b) @ (jnp.eye(3) + strain).T)

    e, (de_dr, de_deps) = jax.jit(jax.value_and_grad(energy, (0, 1)))(jnp.asarray(pos),
                                                                        jnp.zeros((3, 3)))
    return float(e), -np.asarray(de_dr), -np.asarray(de_deps)


def lammps(pot, pos, species, box, path=None):
    from softglass import reference_lammps
    try:
        reference_lammps.load_lammps()
    except ImportError as err:
        pytest.skip(str(err))
    path = pot.tables.path if path is None else path
    return reference_lammps.energy_forces_virial(
        pos, species + 1, box, pot.masses,
        ["pair_style eam/fs", f"pair_coeff * * {path} {' '.join(pot.elements)}"])


def assert_agree(mine, theirs, tol=1e-10):
    (e, f, w), (el, fl, wl) = mine, theirs
    assert abs(e - el) <= tol, (e, el)
    assert np.max(np.abs(f - fl)) <= tol, np.max(np.abs(f - fl))
    assert np.max(np.abs(w - wl)) <= tol, np.max(np.abs(w - wl))


@pytest.mark.parametrize("seed,sigma", [(0, 0.15), (2, 0.3)])
def test_matches_lammps(pot, seed, sigma):
    pos, species, box = b2_cuzr(seed, sigma)
    assert box > 2 * pot.cutoff
    assert_agree(ours(pot, pos, species, box), lammps(pot, pos, species, box))


def test_matches_lammps_compressed(pot):
    """Densities past rho_max (F extrapolated), forces up to ~1e3 eV/A, a pair within the last
    7.6e-4 A below the cut-off: still within 1e-10 eV, eV/A."""
    pos, species, box = compressed_cuzr(pot)
    nbrs = neighbours(pos, box, pot.cutoff)
    d = minimum_image(pos[:, None] - pos[np.minimum(nbrs, len(pos) - 1)], box)
    r = np.where(nbrs < len(pos), np.linalg.norm(d, axis=-1), np.inf)
    assert np.any((r > (pot.tables.nr - 1) * pot.tables.dr) & (r < pot.cutoff))
    rho_ij, _ = pot.pair_terms(jnp.asarray(np.where(r < pot.cutoff, r, 1.0)),
                               species[:, None], species[np.minimum(nbrs, len(pos) - 1)])
    rho = np.sum(np.where(r < pot.cutoff, rho_ij, 0.0), axis=1)
    assert rho.max() > (pot.tables.nrho - 1) * pot.tables.drho
    assert_agree(ours(pot, pos, species, box), lammps(pot, pos, species, box))


def write_fs(path, t, density):
    """An eam/fs file of the tables t with the densities `density`."""
    lines = t.header.splitlines() + [f"{len(t.elements)} {' '.join(t.elements)}",
                                     f"{t.nrho} {t.drho!r} {t.nr} {t.dr!r} {t.cutoff!r}"]

    def table(values):
        return [" ".join(f"{x:.17g}" for x in values[k:k + 5]) for k in range(0, len(values), 5)]

    for a in range(len(t.elements)):
        lines.append(f"{t.atomic_numbers[a]} {t.masses[a]!r}")
        lines += table(t.embedding[a])
        for b in range(len(t.elements)):
            lines += table(density[a, b])
    for a in range(len(t.elements)):
        for b in range(a + 1):
            lines += table(t.z2r[a, b])
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_density_order_matches_lammps(pot, tmp_path):
    """The file's two Cu-Zr densities are equal, so it cannot tell whether atom i's density is
    rho_{b a} (block of the neighbour's element b, LAMMPS's order) or rho_{a b}: a copy whose
    density of Cu at Zr is scaled by 1.5 does, and we still agree with LAMMPS (and the other
    order would differ by far more than the tolerance)."""
    pos, species, box = b2_cuzr(3)
    scaled = {}
    for block, function in [(0, 1), (1, 0)]:
        density = pot.tables.density.copy()
        density[block, function] *= 1.5
        path = write_fs(tmp_path / f"scaled{block}{function}.eam.fs", pot.tables, density)
        scaled[block, function] = (eam.FinnisSinclairEAM.from_file(path, "scaled"), path)
    mine = ours(scaled[0, 1][0], pos, species, box)
    assert_agree(mine, lammps(scaled[0, 1][0], pos, species, box, path=scaled[0, 1][1]))
    assert abs(mine[0] - ours(scaled[1, 0][0], pos, species, box)[0]) > 1.0


def test_forces_match_finite_differences(pot):
    pos, species, box = b2_cuzr(4, 0.25)
    nbrs = neighbours(pos, box, pot.cutoff + 0.5)
    energy = jax.jit(lambda r: pot.energy(r, nbrs, species, cubic_displacement(box)))
    forces = -np.asarray(jax.grad(energy)(jnp.asarray(pos)))
    h = 1e-5
    rng = np.random.default_rng(0)
    for i, k in zip(rng.choice(len(pos), 6, replace=False), rng.integers(0, 3, 6)):
        step = np.zeros_like(pos)
        step[i, k] = h
        fd = -(float(energy(jnp.asarray(pos + step))) - float(energy(jnp.asarray(pos - step)))) \
            / (2 * h)
        assert abs(fd - forces[i, k]) < 1e-6, (i, k, fd, forces[i, k])


def test_hessian_vector_product_matches_finite_differences(pot):
    """Forward over reverse (how the Hessian is built) against central differences of the
    forces, moving one atom: the cubics are only C1, their second derivative jumps at the knots
    (typically by 1e-5 of its size, by several per cent in places: the tables hold ten digits),
    and a step that moves every atom takes some of the 10^4 pair distances across a knot."""
    pos, species, box = b2_cuzr(5)
    nbrs = neighbours(pos, box, pot.cutoff + 0.5)
    grad = jax.jit(jax.grad(lambda r: pot.energy(r, nbrs, species, cubic_displacement(box))))
    v = np.zeros_like(pos)
    v[0] = np.random.default_rng(1).normal(size=3)
    v = jnp.asarray(v)
    hv = np.asarray(jax.jit(lambda r: jax.jvp(grad, (r,), (v,))[1])(jnp.asarray(pos)))
    h = 1e-5
    fd = (np.asarray(grad(jnp.asarray(pos) + h * v)) - np.asarray(grad(jnp.asarray(pos) - h * v))) \
        / (2 * h)
    assert np.all(np.isfinite(hv)) and np.count_nonzero(np.abs(hv).sum(axis=1)) > 50
    assert np.max(np.abs(hv - fd)) < 1e-6 * np.max(np.abs(hv))


def test_translation_invariance_and_extra_neighbours(pot):
    """Forces sum to zero; list entries beyond the cut-off and extra padding columns change
    nothing; a rigid translation changes nothing."""
    pos, species, box = b2_cuzr(6)
    disp = cubic_displacement(box)
    tight = neighbours(pos, box, pot.cutoff)
    loose = neighbours(pos, box, pot.cutoff + 2.0, extra_columns=7)
    assert loose.shape[1] > tight.shape[1] + 20
    value_grad = jax.jit(jax.value_and_grad(lambda r, nb: pot.energy(r, nb, species, disp)))
    e1, g1 = value_grad(jnp.asarray(pos), tight)
    e2, g2 = value_grad(jnp.asarray(pos), loose)
    e3, g3 = value_grad(jnp.asarray((pos + np.array([0.3, -1.1, 2.5])) % box), loose)
    assert np.max(np.abs(np.sum(np.asarray(g1), axis=0))) < 1e-10
    for e, g in [(e2, g2), (e3, g3)]:
        assert abs(float(e) - float(e1)) < 1e-10
        assert np.max(np.abs(np.asarray(g) - np.asarray(g1))) < 1e-10


def test_permutation_permutes_forces(pot):
    pos, species, box = b2_cuzr(7)
    order = np.random.default_rng(2).permutation(len(pos))
    e1, f1, w1 = ours(pot, pos, species, box)
    e2, f2, w2 = ours(pot, pos[order], species[order], box)
    assert abs(e1 - e2) < 1e-10
    assert np.max(np.abs(f2 - f1[order])) < 1e-10
    assert np.max(np.abs(w2 - w1)) < 1e-10


def test_vmap_over_configurations(pot):
    (p1, s1, box), (p2, s2, _) = b2_cuzr(8), b2_cuzr(9)
    n1, n2 = neighbours(p1, box, pot.cutoff), neighbours(p2, box, pot.cutoff)
    width = max(n1.shape[1], n2.shape[1])
    pad = lambda nb: np.pad(nb, ((0, 0), (0, width - nb.shape[1])), constant_values=len(p1))  # noqa
    energy = lambda r, nb, s: pot.energy(r, nb, s, cubic_displacement(box))  # noqa
    both = jax.jit(jax.vmap(energy))(jnp.asarray(np.stack([p1, p2])),
                                     jnp.asarray(np.stack([pad(n1), pad(n2)])),
                                     jnp.asarray(np.stack([s1, s2])))
    assert abs(float(both[0]) - float(energy(jnp.asarray(p1), n1, s1))) < 1e-10
    assert abs(float(both[1]) - float(energy(jnp.asarray(p2), n2, s2))) < 1e-10


def test_reader_matches_ase_and_record(pot):
    """Our reading of the file equals ASE's, number for number; record() is plain data."""
    from ase.calculators.eam import EAM
    t = pot.tables
    ref = EAM(potential=t.path)
    assert tuple(ref.elements) == t.elements == ("Cu", "Zr")
    assert (ref.nrho, ref.drho, ref.nr, ref.dr, ref.cutoff) == (t.nrho, t.drho, t.nr, t.dr,
                                                                t.cutoff)
    assert np.array_equal(ref.mass, t.masses)
    assert np.array_equal(ref.embedded_data, t.embedding)
    assert np.array_equal(ref.density_data, t.density)
    assert np.array_equal(ref.rphi_data[0, 1], t.z2r[0, 1])    # ASE fills a <= b only
    assert np.array_equal(ref.rphi_data[[0, 1], [0, 1]], t.z2r[[0, 1], [0, 1]])
    record = pot.record()
    json.dumps(record)
    with open(t.path, "rb") as fh:
        assert record["sha256"] == hashlib.sha256(fh.read()).hexdigest()
    assert record["name"] == "cuzr" and record["masses"] == [63.546, 91.224]
    assert record["cutoff"] == 7.6 and record["nr"] == 10000 and "Mendelev" in record["citation"]


def test_missing_and_malformed_files(pot, tmp_path):
    missing = tmp_path / "nowhere.eam.fs"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        eam.cuzr_mendelev(str(missing))
    with open(pot.tables.path) as fh:
        lines = fh.read().splitlines()
    cases = {"truncated": lines[:300],
             "bad_number": lines[:7] + [lines[7].replace(lines[7].split()[1], "1.0x")]
             + lines[8:],
             "bad_elements": lines[:3] + ["3 Cu Zr"] + lines[4:],
             "trailing": lines + ["1.0 2.0"]}
    for name, text in cases.items():
        path = tmp_path / f"{name}.eam.fs"
        path.write_text("\n".join(text) + "\n")
        with pytest.raises(ValueError, match=str(path)):
            eam.cuzr_mendelev(str(path))


# ================================ closed-form forces =============================================
def closed_form(pot, pos, species, box, nbrs):
    """pot.forces and -jax.grad(pot.energy) on the neighbour matrix nbrs (numpy, eV/A)."""
    disp = cubic_displacement(box)
    args = (jnp.asarray(pos), jnp.asarray(nbrs), jnp.asarray(species))
    f = jax.jit(lambda r, nb, s: pot.forces(r, nb, s, disp))(*args)
    g = jax.jit(jax.grad(lambda r, nb, s: pot.energy(r, nb, s, disp)))(*args)
    return np.asarray(f), -np.asarray(g)


def scaled_density_potential(pot, tmp_path):
    """A copy of the file whose density of Cu at Zr is 1.5 times that of Zr at Cu: rho_ab !=
    rho_ba, so forces() takes its general branch (two density slopes per slot)."""
    density = pot.tables.density.copy()
    density[0, 1] *= 1.5
    path = write_fs(tmp_path / "asymmetric.eam.fs", pot.tables, density)
    return eam.FinnisSinclairEAM.from_file(path, "asymmetric")


@pytest.mark.parametrize("config", ["b2", "b2_rough", "compressed", "asymmetric", "blocks"])
def test_closed_form_forces_are_minus_the_energy_gradient(pot, config, tmp_path, monkeypatch):
    """forces() against -jax.grad(energy) on a list with 0.5 A of entries beyond the cut-off,
    max |dF| <= 1e-12 eV/A (measured <= 2e-14) on the perturbed lattices and the file with
    unequal Cu-Zr densities (the general branch); on the compressed one (F past rho_max, a
    pair in the last 7.6e-4 A below r_c, forces up to 1.1e3 eV/A), also with its rows summed in
    blocks (64 rows: four blocks, the last padded), <= 2e-15 max |F| = 2.3e-12 eV/A, 10 ulp of
    the largest force (measured 9e-13: the two sum ~100 terms of up to 1e3 eV/A in different
    orders)."""
    pos, species, box = {"b2": lambda: b2_cuzr(0), "b2_rough": lambda: b2_cuzr(2, 0.3),
                         "compressed": lambda: compressed_cuzr(pot),
                         "asymmetric": lambda: b2_cuzr(3),
                         "blocks": lambda: compressed_cuzr(pot)}[config]()
    if config == "asymmetric":
        pot = scaled_density_potential(pot, tmp_path)
        assert not pot.symmetric_density
    else:
        assert pot.symmetric_density
    if config == "blocks":
        monkeypatch.setattr(eam, "ONE_BLOCK_MAX_ATOMS", 0)
        monkeypatch.setattr(eam, "FORCE_BLOCK_ROWS", 64)
    f, minus_grad = closed_form(pot, pos, species, box, neighbours(pos, box, pot.cutoff + 0.5))
    largest = np.abs(minus_grad).max()
    assert largest > (1000.0 if config in ("compressed", "blocks") else 1.0)
    assert np.abs(f - minus_grad).max() <= max(1e-12, 2e-15 * largest), \
        np.abs(f - minus_grad).max()


def test_closed_form_forces_translation_and_extra_entries(pot):
    """Closed-form forces sum to zero; a rigid translation, and a list with 2 A of entries
    beyond the cut-off plus padding columns, leave them as they were (to rounding)."""
    pos, species, box = b2_cuzr(6)
    tight = neighbours(pos, box, pot.cutoff)
    loose = neighbours(pos, box, pot.cutoff + 2.0, extra_columns=7)
    assert loose.shape[1] > tight.shape[1] + 20
    forces = jax.jit(lambda r, nb: pot.forces(r, nb, species, cubic_displacement(box)))
    f = np.asarray(forces(jnp.asarray(pos), tight))
    assert np.abs(f.sum(axis=0)).max() < 1e-12
    moved = (pos + np.array([0.3, -1.1, 2.5])) % box
    for other in (forces(jnp.asarray(pos), loose), forces(jnp.asarray(moved), loose)):
        assert np.abs(np.asarray(other) - f).max() < 1e-12


class EnergyOnly(eam.FinnisSinclairEAM):
    """The potential without its closed form: the MD differentiates its energy."""
    forces = None


def test_md_with_closed_form_forces_follows_the_energy_gradient(pot):
    """20 Nose-Hoover NVT steps at 1500 K through molecular_dynamics.nvt with forces() and with
    reverse mode: the same trajectory to 1e-10 A."""
    from softglass import molecular_dynamics as md
    hidden = EnergyOnly(**{f.name: getattr(pot, f.name)
                           for f in dataclasses.fields(pot) if f.init})
    assert md.energy_on_list(hidden, 1.0).__name__ == "energy"
    assert md.energy_on_list(pot, 1.0).__name__ == "forces"
    pos, species, box = b2_cuzr(10)
    settings = md.MDSettings(dt=0.002, tau=0.2, skin=0.5, chunk_steps=10, show_progress=False)
    final = [np.asarray(md.nvt(p, pos, box, species, jax.random.PRNGKey(0), 1500.0, 1500.0,
                               20, "nvt", settings=settings).position) for p in (pot, hidden)]
    moved = np.abs(minimum_image(final[0] - pos, box)).max()
    assert moved > 0.05                               # the atoms did move
    assert np.abs(final[0] - final[1]).max() < 1e-10, np.abs(final[0] - final[1]).max()
