"""Glasses of a plugged-in potential (softglass.formers): Nose-Hoover NVT molecular dynamics to
melt and quench, FIRE to the inherent structure, and the float64 energy and forces checked there.

A potential is an object with `name`, `elements`, `masses` (amu), `cutoff` (length), `units`,
`record()` and `energy(positions, neighbours, species, displacement)`: the total energy given a
Dense neighbour matrix (row i: the atoms within at least `cutoff` of i, padded with N) and a
minimum-image displacement. Every phase here differentiates that one energy (forces by
reverse mode), so a pair potential, Stillinger-Weber and EAM run through the same code; a
potential may add `forces(...)` (same arguments) in closed form, which the MD and FIRE then use
(faster than reverse mode; tests check it equals -grad E). The float64 check at the end and the
Hessian always differentiate the energy.
Units are the potential's own: for "metal", Angstrom, eV, ps and amu, with k_B in eV/K.

  nvt                Nose-Hoover chain NVT (Martyna, Klein, Tuckerman, JCP 97, 2635 (1992);
                     jax-md's simulate.nvt_nose_hoover), T held or ramped linearly
  inherent_structure FIRE (Bitzek et al., PRL 97, 170201 (2006)) to max|F| < force_tol
  energy_and_forces  float64, from an exact neighbour list built afresh (no skin)
  pressure           -dE/dV of an inherent structure
"""
from . import jax_config  # noqa: F401  (float64)

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax_md import minimize, partition, simulate, space

from .dynamics import run_chunks, steps_until_stale
from .neighbours import KDTREE, NeighbourList, _row_bucket, allocate_neighbors, dense_neighbours

KB = {"metal": 8.617333262e-5, "lj": 1.0}          # k_B: eV/K (CODATA 2018); reduced units
# F = m a with F in eV/Angstrom, a in Angstrom/ps^2 and m in amu: m [eV ps^2/A^2] = m [amu] * this
MASS_UNIT = {"metal": 1.0364269656262175e-4, "lj": 1.0}
BAR = {"metal": 1.602176634e6}    # bar per eV/A^3 (pressure in metal units)
KT_FLOOR = 1e-2            # the lowest thermostat temperature, as a fraction of the highest


def minimum_image(box):
    """Ra - Rb under the minimum image of the cubic box (broadcasts over leading axes)."""
    def displacement(ra, rb):
        d = ra - rb
        return d - box * jnp.round(d / box)
    return displacement


def energy_on_list(potential, box):
    """What jax-md's integrators call, fn(R, neighbor=, species=): the potential's forces where
    it has a closed form (a `forces` method: jax-md tells forces from an energy by the output's
    shape), else its energy, which they differentiate."""
    displacement = minimum_image(box)
    closed_form = getattr(potential, "forces", None)

    def energy(position, neighbor, species, **unused):
        return potential.energy(position, neighbor.idx, species, displacement)

    def forces(position, neighbor, species, **unused):
        return closed_form(position, neighbor.idx, species, displacement)

    return energy if closed_form is None else forces


def masses(potential, species):
    """Per-atom masses in the integrator's units (column vector, as jax-md's states hold)."""
    m = np.asarray(potential.masses, np.float64)[np.asarray(species)]
    return jnp.asarray(m * MASS_UNIT[potential.units])[:, None]


def neighbour_list(potential, box, skin, capacity_margin=1.2):
    """The Dense k-d tree list of radius cutoff + skin (softglass.neighbours)."""
    return NeighbourList(box, potential.cutoff, skin, KDTREE, partition.Dense, capacity_margin)


@dataclasses.dataclass(frozen=True)
class MDSettings:
    """Time step, thermostat and neighbour-list settings of the melt and quench."""
    dt: float                 # time step (ps in metal units)
    tau: float                # Nose-Hoover chain period (ps): ~100 time steps
    skin: float               # neighbour-list skin (length)
    chunk_steps: int          # steps per compiled chunk
    show_progress: bool       # a tqdm bar per phase


# ================================ NVT melt and quench =============================================
@partial(jax.jit, static_argnames=("potential", "dt", "tau", "skin"))
def _nvt_init(key, positions, nbrs, p, potential, dt, tau, skin):
    init_fn, _ = simulate.nvt_nose_hoover(energy_on_list(potential, p["box"]),
                                          space.periodic(p["box"])[1], dt, p["kT_start"],
                                          tau=tau)
    return init_fn(key, positions, mass=p["mass"], neighbor=nbrs, species=p["species"])


@partial(jax.jit, static_argnames=("potential", "dt", "tau", "skin"))
def _nvt_chunk(state, nbrs, step0, n_steps, p, potential, dt, tau, skin):
    """Nose-Hoover NVT with kT ramped linearly from kT_start to kT_end over p['total'] steps."""
    _, apply_fn = simulate.nvt_nose_hoover(energy_on_list(potential, p["box"]),
                                           space.periodic(p["box"])[1], dt, p["kT_start"],
                                           tau=tau)

    def step(st, nb, i):
        frac = (step0 + i + 1).astype(jnp.float64) / p["total"]
        kT = p["kT_start"] + (p["kT_end"] - p["kT_start"]) * frac
        # the chain's masses Q = kT tau^2 vanish at T = 0: a quench to 0 K ends at this floor
        # (20 K from a 2000 K melt, far below the glass transition), and FIRE takes the last
        # step down. Below it the thermostat, whose masses shrink with kT while the kinetic
        # energy lags, blew up (measured: NaN at a floor of 1e-4)
        kT = jnp.maximum(kT, KT_FLOOR * jnp.maximum(p["kT_start"], p["kT_end"]))
        return apply_fn(st, neighbor=nb, kT=kT, species=p["species"])

    return steps_until_stale(step, neighbour_list(potential, p["box"], skin), state, nbrs,
                             n_steps)


def host_loop(chunk, state, neighbor_fn, nbrs, n_steps, label, settings, done=None):
    """run_chunks with a progress bar; returns (state, steps run)."""
    from tqdm import tqdm
    with tqdm(total=n_steps, desc=label, unit="step", leave=False, mininterval=1.0,
              disable=not settings.show_progress) as bar:
        state, _, step = run_chunks(chunk, state, nbrs, neighbor_fn, n_steps, label, done,
                                    bar.update, chunk_steps=settings.chunk_steps)
    return state, step


def nvt(potential, positions, box, species, key, t_start, t_end, steps, label, *, settings,
        state=None):
    """NVT from `positions` (fresh Maxwell-Boltzmann velocities at t_start) or from `state`
    (an earlier phase's, velocities and thermostat kept), T ramped from t_start to t_end
    (kelvin in metal units) over `steps`. Returns the final state."""
    kb = KB[potential.units]
    p = dict(box=jnp.float64(box), species=jnp.asarray(species, jnp.int32),
             mass=masses(potential, species), kT_start=jnp.float64(kb * t_start),
             kT_end=jnp.float64(kb * t_end), total=jnp.float64(max(steps, 1)))
    static = dict(potential=potential, dt=settings.dt, tau=settings.tau, skin=settings.skin)
    neighbor_fn = neighbour_list(potential, box, settings.skin)
    r = jnp.asarray(positions if state is None else state.position, jnp.float64)
    nbrs = allocate_neighbors(neighbor_fn, r)
    if state is None:
        state = _nvt_init(key, r, nbrs, p, **static)
    chunk = partial(_nvt_chunk, p=p, **static)
    state, _ = host_loop(chunk, state, neighbor_fn, nbrs, steps, label, settings)
    return state


def temperature(state, potential):
    """Kinetic temperature 2 KE / (3 N k_B) (kelvin in metal units)."""
    ke = 0.5 * jnp.sum(state.momentum ** 2 / state.mass)
    return float(2 * ke / (3 * state.position.shape[0] * KB[potential.units]))


# ================================ FIRE ===========================================================
@partial(jax.jit, static_argnames=("potential", "dt_start", "dt_max", "skin"))
def _fire_init(positions, nbrs, p, potential, dt_start, dt_max, skin):
    init_fn, _ = minimize.fire_descent(energy_on_list(potential, p["box"]),
                                       space.periodic(p["box"])[1], dt_start=dt_start,
                                       dt_max=dt_max)
    return init_fn(positions, mass=p["mass"], neighbor=nbrs, species=p["species"])


@partial(jax.jit, static_argnames=("potential", "dt_start", "dt_max", "skin"))
def _fire_chunk(state, nbrs, step0, n_steps, p, potential, dt_start, dt_max, skin):
    del step0
    _, apply_fn = minimize.fire_descent(energy_on_list(potential, p["box"]),
                                        space.periodic(p["box"])[1], dt_start=dt_start,
                                        dt_max=dt_max)

    def unconverged(st):
        return jnp.max(jnp.linalg.norm(st.force, axis=1)) >= p["tol"]

    return steps_until_stale(lambda st, nb, i: apply_fn(st, neighbor=nb, species=p["species"]),
                             neighbour_list(potential, p["box"], skin), state, nbrs, n_steps,
                             go_on=unconverged)


def inherent_structure(potential, positions, box, species, *, fire, settings):
    """FIRE in float64 to max|F| < fire.force_tol (FIRE aims at half of it, so that the
    independent recomputation, summing in another order, cannot land above). The atoms' own
    masses, so that FIRE's time steps mean what they mean in the MD. Not converging is an error.
    Returns positions, energy, max|F| and FIRE steps."""
    p = dict(box=jnp.float64(box), species=jnp.asarray(species, jnp.int32),
             mass=masses(potential, species), tol=jnp.float64(0.5 * fire.force_tol))
    static = dict(potential=potential, dt_start=fire.dt_start, dt_max=fire.dt_max,
                  skin=fire.skin)
    neighbor_fn = neighbour_list(potential, box, fire.skin)
    r = jnp.asarray(positions, jnp.float64)
    nbrs = allocate_neighbors(neighbor_fn, r)
    state = _fire_init(r, nbrs, p, **static)
    converged = lambda st: float(jnp.max(jnp.linalg.norm(st.force, axis=1))) < p["tol"]  # noqa
    state, n_steps = host_loop(partial(_fire_chunk, p=p, **static), state, neighbor_fn, nbrs,
                               fire.max_steps, "FIRE", settings, done=converged)
    positions = np.mod(np.asarray(state.position, np.float64), box)
    e, forces = energy_and_forces(potential, positions, box, species)
    max_force = float(np.max(np.linalg.norm(forces, axis=1)))
    if not max_force < fire.force_tol:
        raise RuntimeError(f"FIRE did not reach an inherent structure: max|F| = {max_force:.3e} "
                           f">= FORCE_TOL = {fire.force_tol:.0e} after {n_steps} steps "
                           f"(raise MAX_FIRE_STEPS or check the protocol)")
    return positions, e, max_force, n_steps


# ================================ float64 energy and forces ======================================
@partial(jax.jit, static_argnames=("potential",))
def _energy_and_gradient(positions, idx, species, box, potential):
    return jax.value_and_grad(potential.energy)(positions, idx, species, minimum_image(box))


def exact_neighbours(potential, positions, box):
    """The Dense neighbour matrix of radius `cutoff` (no skin), rows padded to a bucketed width
    (one compiled program per size class)."""
    idx, longest = dense_neighbours(positions, box, potential.cutoff)
    width = _row_bucket(int(longest), len(positions))
    return np.pad(idx, ((0, 0), (0, width - idx.shape[1])), constant_values=len(positions))


def energy_and_forces(potential, positions, box, species):
    """Total energy and forces (float64) from an exact neighbour list built here, independent
    of the lists the compiled phases kept."""
    r = np.asarray(positions, np.float64)
    e, g = _energy_and_gradient(jnp.asarray(r), jnp.asarray(exact_neighbours(potential, r, box)),
                                jnp.asarray(species, jnp.int32), jnp.float64(box), potential)
    return float(e), -np.asarray(g)


def energy_function(potential, box, species, positions):
    """E(R) on the exact neighbour structure of `positions` (for the Hessian by automatic
    differentiation: the list holds every pair within the cutoff, so E is exact near R)."""
    idx = jnp.asarray(exact_neighbours(potential, positions, box))
    s = jnp.asarray(species, jnp.int32)
    displacement = minimum_image(jnp.float64(box))
    return lambda r: potential.energy(r, idx, s, displacement)


def pressure(potential, positions, box, species):
    """P = -dE/dV at fixed fractional coordinates (energy / length^3; T = 0, so no kinetic
    term), by differentiating the energy of the uniformly scaled box."""
    idx = jnp.asarray(exact_neighbours(potential, positions, box))
    s = jnp.asarray(species, jnp.int32)
    frac = jnp.asarray(positions / box)

    def energy_of_volume(volume):
        length = volume ** (1 / 3)
        return potential.energy(frac * length, idx, s, minimum_image(length))

    return float(-jax.grad(energy_of_volume)(jnp.float64(box ** 3)))
