"""A glass of a plugged-in many-body former (generate_glass_data.py --POTENTIAL=cuzr or sw), made
by molecular dynamics in the potential's units (metal: Angstrom, eV, ps, amu, K):

  1. start        random occupancy of a simple-cubic grid at the density (no overlaps)
  2. melt         Nose-Hoover NVT at t_melt for melt_time
  3. quench       T ramped linearly to 0 K at a constant quench rate (K/s)
  4. FIRE         to the inherent structure, max|F| < force_tol
  5. labels       the caller's step 6 (the Hessian by automatic differentiation, its lowest modes,
                  softness, the local-Hessian eigenvalues: generate_glass_data.former_labels)

The snapshot keeps the seed's schema, with the potential's parameters, the units, the pressure of
the inherent structure and, for a network glass, its coordination and bond angles. Every setting
comes in a MeltQuench (generate_glass_data.py's CUZR_, SW_ and MD_ constants).
"""
import dataclasses
import time

import numpy as np

from . import dynamics, molecular_dynamics as md, structure, system as systems


@dataclasses.dataclass(frozen=True)
class MeltQuench:
    """The protocol of one glass of a many-body former."""
    density: float            # atoms / A^3
    t_melt: float             # K
    quench_rate: float        # K/s
    fraction: float           # fraction of species 0 (1 for a one-element former)
    melt_time: float          # ps at t_melt
    md: md.MDSettings         # time step, thermostat period, skin, chunks, progress bars
    force_tol: float          # eV/A; the inherent structure has max_i |F_i| below this
    fire_dt_max_steps: float  # FIRE's largest step, in MD time steps (its first is one)
    max_fire_steps: int       # FIRE not converging within this many steps is an error
    n_soft_modes: int         # modes the stored softness sums (recorded)
    bond_cutoff: float = 0.0  # A; > 0: a network glass, its bonds (coordination, angles) recorded


def grid_start(n_atoms, box, rng):
    """Random occupancy of a simple-cubic grid of ceil(N^(1/3))^3 sites: no two atoms closer than
    the grid spacing (~ the mean spacing), so the melt starts without overlaps."""
    n = int(np.ceil(n_atoms ** (1 / 3) - 1e-9))
    sites = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return (sites[rng.choice(len(sites), n_atoms, replace=False)] + 0.5) * (box / n)


def melt_and_quench(potential, r, box, species, key, protocol, log=print):
    """Nose-Hoover NVT: melt_time at t_melt, then T ramped linearly towards 0 K at the quench
    rate (K/s; steps = t_melt / rate / dt; the thermostat stops at 1% of t_melt,
    softglass.molecular_dynamics.KT_FLOOR, and FIRE goes on from there). Returns the positions
    and the quench's steps."""
    settings, t_melt = protocol.md, protocol.t_melt
    melt_steps = int(round(protocol.melt_time / settings.dt))
    quench_steps = int(round(t_melt / protocol.quench_rate / (settings.dt * 1e-12)))
    state = md.nvt(potential, r, box, species, key, t_melt, t_melt, melt_steps, "melt",
                   settings=settings)
    log(f"  melt: T = {md.temperature(state, potential):.0f} K after {melt_steps} steps")
    state = md.nvt(potential, None, box, species, None, t_melt, 0.0, quench_steps, "quench",
                   settings=settings, state=state)
    return np.mod(np.asarray(state.position, np.float64), box), quench_steps


def check_box(potential, n_atoms, box, skin, where=""):
    """A box narrower than twice the cutoff plus the skin breaks the minimum image: refused
    (ValueError; `where` says which glass, e.g. the densest of a set)."""
    reach = 2 * (potential.cutoff + skin)
    if box <= reach:
        raise ValueError(f"N_ATOMS={n_atoms} gives a box of {box:.2f} A{where}, not wider than "
                         f"twice {potential.name}'s cutoff plus the skin ({reach:.2f} A): use "
                         f"more atoms")


def make_glass(potential, n_atoms, seed, protocol, labels, log=print):
    """Steps 1-5 for one glass; labels(potential, r, box, species) -> (lowest eigenvalues,
    softness, local-Hessian eigenvalues, closest pair). Returns the snapshot (lengths in A,
    energies in eV, eigenvalues in eV/A^2), its potential's parameters recorded."""
    import jax
    box = systems.box_length(n_atoms, protocol.density)
    settings = protocol.md
    check_box(potential, n_atoms, box, settings.skin)
    rng = np.random.default_rng(seed)
    species = systems.assign_species(n_atoms, protocol.fraction, rng)
    seconds = {}
    t0 = time.perf_counter()
    r, quench_steps = melt_and_quench(potential, grid_start(n_atoms, box, rng), box, species,
                                      jax.random.PRNGKey(seed), protocol, log)
    seconds["melt_quench"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    dt = settings.dt
    fire = dynamics.Fire(dt_start=dt, dt_max=protocol.fire_dt_max_steps * dt, max_dt_omega=np.inf,
                         force_tol=protocol.force_tol, max_steps=protocol.max_fire_steps,
                         skin=settings.skin)
    r, e_is, max_force, n_fire = md.inherent_structure(potential, r, box, species, fire=fire,
                                                      settings=settings)
    seconds["fire"] = round(time.perf_counter() - t0, 3)
    log(f"  inherent structure: E/N = {e_is / n_atoms:.6f} eV, max|F| = {max_force:.2e} eV/A "
        f"after {n_fire} FIRE steps")
    t0 = time.perf_counter()
    vals, softness, eigenvalues, d_min = labels(potential, r, box, species)
    seconds["hessian"] = round(time.perf_counter() - t0, 3)
    p = md.pressure(potential, r, box, species) * md.BAR[potential.units]
    log(f"  lowest Hessian eigenvalues: {np.array2string(vals[:6], precision=4)}; "
        f"closest pair {d_min:.3f} A; pressure {p:.0f} bar")
    parameters = dict(
        potential=potential.record(), units=potential.units, n_atoms=int(n_atoms),
        density=float(protocol.density), temperature=float(protocol.t_melt),
        quench_rate=float(protocol.quench_rate), quench_steps=int(quench_steps),
        melt_time=float(protocol.melt_time), dt=float(dt),
        species_ratio=float(protocol.fraction), seed=int(seed), max_force=max_force,
        n_fire_steps=int(n_fire), force_tol=float(protocol.force_tol),
        n_soft_modes=int(protocol.n_soft_modes), lowest_eigenvalues=np.asarray(vals, np.float64),
        min_pair_distance=d_min, pressure_bar=p, seconds=seconds,
        versions=dict(jax=jax.__version__, numpy=np.__version__))
    if protocol.bond_cutoff > 0:                # a network glass: four bonds, tetrahedral angles
        parameters["network"] = structure.network_summary(r, box, protocol.bond_cutoff)
        log("  network: {mean_coordination:.3f} bonds per atom, {fourfold_fraction:.1%} "
            "fourfold, angles {bond_angle_mean:.1f} +- {bond_angle_std:.1f} deg"
            .format(**parameters["network"]))
    return dict(positions=r, species=species.astype(np.int64), box_size=float(box),
                softness_score=softness.astype(np.float64),
                eigenvalues=eigenvalues.astype(np.float64), energy=float(e_is),
                parameters=parameters)
