"""Dynamics and minimisation in the compiled phases: gradient descent, Brownian dynamics (heating
and quench) and FIRE to the inherent structure, each a jit-compiled loop over chunks of steps
with the neighbour list rebuilt on the host between them.

  Engine               how the phases compute (force kernel, neighbour list, buffers, chunks)
  Fire                 FIRE's settings (time steps, tolerance, step budget, skin)
  untangle_and_descend gradient descent on soft spheres or on the Lennard-Jones energy
  brownian             overdamped Langevin at a constant or linearly ramped temperature
  inherent_structure   FIRE (Bitzek et al., PRL 97, 170201 (2006)) to max|F| < force_tol
  run_chunks           the host loop every phase (and the shear engine's FIRE) runs in
"""
from . import jax_config  # noqa: F401  (float64)

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax_md import minimize, quantity, simulate

from .forces import energy_and_forces, force_block_rows, list_format, pair_system
from .hessian import largest_hessian_eigenvalue
from .neighbours import KDTREE, NeighbourList, allocate_neighbors, capacity_for, describe_buffer
from .potentials import smoothed_lj, soft_sphere_pair


@dataclasses.dataclass(frozen=True)
class Engine:
    """How the compiled phases compute. None of these changes the physics; kernel and list may
    change the last bits of a trajectory (they are recorded with a glass), chunk_steps where FIRE
    may stop (it checks convergence between chunks)."""
    force_kernel: str                # "grad", "dense" or "dense_r2" (forces.list_format)
    neighbour_list: str              # "kdtree" (host, O(N log N)) or "jax" (jax-md, O(N^2))
    force_block_rows: int            # atoms; dense kernel rows summed at a time above ...
    force_one_block_max_atoms: int   # ... this many atoms
    capacity_margin: float           # head-room of a new neighbour buffer above the entries found
    chunk_steps: int                 # steps per compiled chunk
    show_progress: bool              # a tqdm bar per phase

    def __post_init__(self):
        list_format(self.force_kernel)                  # an unknown kernel stops here
        if self.neighbour_list not in (KDTREE, "jax"):
            raise ValueError(f"NEIGHBOUR_LIST={self.neighbour_list!r}: expected 'kdtree' or 'jax'")

    def statics(self, n_atoms):
        """The static arguments of the compiled phases that choose how a system of n_atoms sums
        its forces: the kernel and its block_rows (jit keys its programs on them)."""
        return dict(kernel=self.force_kernel, block_rows=force_block_rows(
            n_atoms, self.force_block_rows, self.force_one_block_max_atoms))

    def neighbour_list_fn(self, box, r_list, skin):
        """A neighbour list of the cubic box, radius r_list + skin, rebuilt when an atom has moved
        skin/2: half (OrderedSparse) for the "grad" kernel (jax.grad of the energy costs 2 ms at
        N = 1000 on it against 3.5-4 ms on a Dense list), Dense for "dense" and "dense_r2"."""
        return NeighbourList(box, r_list, skin, self.neighbour_list, list_format(self.force_kernel),
                             self.capacity_margin)


@dataclasses.dataclass(frozen=True)
class Fire:
    """FIRE's settings: velocity Verlet needs dt < 2/omega_max, so dt_max * omega_max is kept
    below max_dt_omega by a larger (fictitious) mass where a glass is stiff (fire_mass)."""
    dt_start: float          # tau; first time step
    dt_max: float            # tau; largest time step
    max_dt_omega: float      # dt_max omega_max kept below this
    force_tol: float         # epsilon/sigma; converged when max_i |F_i| < force_tol
    max_steps: int           # not converging within this many steps is an error
    skin: float              # sigma; neighbour-list skin


# ================================ the host loop ==================================================
def run_phase(chunk_fn, state, system, r_list, skin, n_steps, label, done=None, *, engine):
    """Run `chunk_fn(state, nbrs, step0, n) -> (state, nbrs, steps run, stale)` over n_steps
    (run_chunks) on a neighbour list allocated here, with a progress bar. Returns (state, steps
    run)."""
    from tqdm import tqdm
    neighbor_fn = engine.neighbour_list_fn(system["box"], r_list, skin)
    nbrs = allocate_neighbors(neighbor_fn, state.position)
    with tqdm(total=n_steps, desc=label, unit="step", leave=False, mininterval=1.0,
              disable=not engine.show_progress) as bar:
        state, _, step = run_chunks(chunk_fn, state, nbrs, neighbor_fn, n_steps, label, done,
                                    bar.update, chunk_steps=engine.chunk_steps)
    return state, step


def run_chunks(chunk_fn, state, nbrs, neighbor_fn, n_steps, label="", done=None, progress=None,
               *, chunk_steps):
    """The host loop of every compiled phase (and of the shear engine's FIRE): chunk_fn over
    n_steps in chunks of at most chunk_steps, from `state` on the list `nbrs` of `neighbor_fn`.

    A chunk stops early where its k-d tree list went stale (an atom moved skin/2); the list is
    rebuilt here, on the host, and the next chunk goes on from that step (the Brownian key and
    FIRE's velocities live in the state, so this is the trajectory of one long loop). After each
    chunk the overflow bit of a jax-md list is checked: an overflowed list has lost pairs, so the
    chunk is redone from its start with a larger buffer (the same trajectory, for the same
    reason). `done(state)` may stop early (FIRE); `progress(steps)` is told the steps of each
    chunk; a label names the phase in buffer messages ("": silent). Returns (state, nbrs, steps
    run)."""
    from tqdm import tqdm
    step = 0
    while step < n_steps:
        n = min(chunk_steps, n_steps - step)
        new_state, new_nbrs, ran, stale = chunk_fn(state, nbrs, step, n)
        if bool(new_nbrs.did_buffer_overflow):
            bigger = capacity_for(nbrs, int(nbrs.idx.shape[1] * 1.5))
            nbrs = allocate_neighbors(neighbor_fn, state.position, bigger)
            if label:
                tqdm.write(f"  {label}: neighbour buffer overflowed, reallocated to "
                           f"{describe_buffer(nbrs)}")
            continue
        state, nbrs = new_state, new_nbrs
        step += int(ran)
        if progress is not None:
            progress(int(ran))
        if bool(stale):
            capacity = nbrs.idx.shape[1]
            nbrs = neighbor_fn.rebuild(state.position, nbrs)
            if nbrs.idx.shape[1] != capacity and label:
                tqdm.write(f"  {label}: neighbour buffer outgrown, reallocated to "
                           f"{describe_buffer(nbrs)}")
        if done is not None and done(state):
            break
    return state, nbrs, step


def steps_until_stale(step, neighbor_fn, state, nbrs, n_steps, go_on=None):
    """The compiled loop of every phase: state <- step(state, nbrs, i) for i = 0, 1, ... while
    i < n_steps, go_on(state) (if given) holds and the neighbour list is not stale (an atom of a
    k-d tree list moved skin/2: run_phase rebuilds it on the host and calls again; a jax-md list
    is rebuilt inside, never stale). Returns (state, nbrs, steps run, stale)."""

    def going(c):
        st, nb, i, stale = c
        more = (i < n_steps) & ~stale
        return more if go_on is None else more & go_on(st)

    def body(c):
        st, nb, i, _ = c
        st = step(st, nb, i)
        nb, stale = neighbor_fn.update_or_stale(st.position, nb)
        return st, nb, i + 1, stale


    return lax.while_loop(going, body, (state, nbrs, jnp.int32(0), jnp.bool_(False)))


# ================================ compiled phases ================================================
# Every physical parameter is a traced argument (box, sigma, epsilon, cut-offs, temperatures,
# step counters), so one compiled program serves every glass of the same size. The skins and
# the FIRE step sizes are compile-time constants: jax-md branches in Python on whether the skin
# is zero and casts the FIRE parameters with numpy. They are static arguments, not module
# constants read inside the traced code: jit would keep the first value it traced and ignore a
# later override in the same process.
@partial(jax.jit, static_argnames=("soft", "skin", "kernel", "block_rows"))
def _descent_chunk(state, nbrs, step0, n_steps, params, soft, skin, kernel, block_rows):
    """Gradient descent R <- R + step * F on soft spheres (soft=True, untangling) or on the
    smoothed LJ energy. Two programs, not one mixed energy: LJ at the overlaps of random
    positions is infinite, and 0 * inf poisons the gradient."""
    del step0
    pair = soft_sphere_pair if soft else smoothed_lj(params["r_onset"], params["r_cutoff"])
    shift, neighbor_fn, energy_fn = pair_system(params["box"], params["r_list"], skin, pair,
                                            kernel, block_rows)
    kwargs = dict(species=params["species"], sigma=params["sigma"], epsilon=params["epsilon"])
    force = quantity.canonicalize_force(energy_fn)      # -jax.grad, or the Dense list's forces

    def step(st, nb, i):
        dr = params["step_size"] * force(st.position, neighbor=nb, **kwargs)
        norm = jnp.linalg.norm(dr, axis=1, keepdims=True)
        dr = dr * jnp.minimum(1.0, params["max_move"] / jnp.maximum(norm, 1e-30))
        return dataclasses.replace(st, position=shift(st.position, dr))

    return steps_until_stale(step, neighbor_fn, state, nbrs, n_steps)


@partial(jax.jit, static_argnames=("skin", "kernel", "block_rows"))
def _brownian_chunk(state, nbrs, step0, n_steps, params, skin, kernel, block_rows):
    """Overdamped Langevin (jax-md simulate.brownian): dR = F dt/gamma + sqrt(2 T dt/gamma) xi.

    T ramps linearly from params['kT_start'] to params['kT_end'] over params['total'] steps
    (constant when they are equal); step0 is the chunk's offset in that ramp.
    """
    shift, neighbor_fn, energy_fn = pair_system(params["box"], params["r_list"], skin,
                                            smoothed_lj(params["r_onset"], params["r_cutoff"]),
                                            kernel, block_rows)
    _, apply_fn = simulate.brownian(energy_fn, shift, dt=params["dt"], kT=params["kT_start"],
                                    gamma=params["gamma"])
    kwargs = dict(species=params["species"], sigma=params["sigma"], epsilon=params["epsilon"])

    def step(st, nb, i):
        frac = (step0 + i + 1).astype(params["kT_start"].dtype) / params["total"]
        kT = params["kT_start"] + (params["kT_end"] - params["kT_start"]) * frac
        return apply_fn(st, kT=kT, neighbor=nb, **kwargs)

    return steps_until_stale(step, neighbor_fn, state, nbrs, n_steps)


def cubic_system(params, skin, kernel, block_rows):
    """Shift, neighbour list and smoothed-LJ pair energy of the (traced) cubic box: what FIRE
    runs on here (shear.py passes its sheared cell's instead)."""
    return pair_system(params["box"], params["r_list"], skin,
                   smoothed_lj(params["r_onset"], params["r_cutoff"]), kernel, block_rows)


def _fire(params, skin, dt_start, dt_max, system_fn, kernel, block_rows):
    shift, neighbor_fn, energy_fn = system_fn(params, skin, kernel, block_rows)
    init_fn, apply_fn = minimize.fire_descent(energy_fn, shift, dt_start=dt_start, dt_max=dt_max)
    kwargs = dict(species=params["species"], sigma=params["sigma"], epsilon=params["epsilon"])
    return init_fn, apply_fn, neighbor_fn, kwargs


# the system builder is static too: one compiled program per geometry (cubic, sheared)
_FIRE_STATIC = ("skin", "dt_start", "dt_max", "system_fn", "kernel", "block_rows")


@partial(jax.jit, static_argnames=_FIRE_STATIC)
def _fire_init(positions, nbrs, params, skin, dt_start, dt_max, kernel, block_rows,
               system_fn=cubic_system):
    init_fn, _, _, kwargs = _fire(params, skin, dt_start, dt_max, system_fn, kernel, block_rows)
    return init_fn(positions, mass=params["mass"], neighbor=nbrs, **kwargs)


@partial(jax.jit, static_argnames=_FIRE_STATIC)
def _fire_chunk(state, nbrs, step0, n_steps, params, skin, dt_start, dt_max, kernel, block_rows,
                system_fn=cubic_system):
    """FIRE (Bitzek et al., PRL 97, 170201 (2006)) until max|F| < tol or n_steps."""
    del step0
    _, apply_fn, neighbor_fn, kwargs = _fire(params, skin, dt_start, dt_max, system_fn,
                                             kernel, block_rows)

    def unconverged(st):
        return jnp.max(jnp.linalg.norm(st.force, axis=1)) >= params["tol"]

    return steps_until_stale(lambda st, nb, i: apply_fn(st, neighbor=nb, **kwargs), neighbor_fn,
                             state, nbrs, n_steps, go_on=unconverged)



# ================================ the phases of a glass ==========================================
def params(system, dtype, **extra):
    """Traced parameters of one glass in the working precision of a phase."""
    p = {k: jnp.asarray(v, dtype) for k, v in system.items() if k != "species"}
    p["species"] = jnp.asarray(system["species"], jnp.int32)
    p.update({k: jnp.asarray(v, dtype) for k, v in extra.items()})
    return p


def untangle_and_descend(positions, system, label, soft, steps, step_size, *, max_move, skin,
                         engine):
    """Gradient descent on soft spheres (soft=True) or on the LJ energy (float32), each atom's
    step capped at max_move."""
    r_list = float(np.max(system["sigma"])) if soft else system["r_cutoff"]
    p = params(system, jnp.float32, r_list=r_list, step_size=step_size, max_move=max_move)
    state = simulate.BrownianState(jnp.asarray(positions, jnp.float32), jnp.float32(1),
                                   jax.random.PRNGKey(0))
    chunk = partial(_descent_chunk, params=p, soft=soft, skin=skin,
                    **engine.statics(len(positions)))
    state, _ = run_phase(chunk, state, system, r_list, skin, steps, label, engine=engine)
    return np.asarray(state.position, np.float64)


def brownian(positions, system, key, kT_start, kT_end, steps, label, substeps=1, *, dt, gamma,
             skin, engine):
    """Brownian heating (kT_start = kT_end) or linear quench, in float32; each of the `steps`
    steps of dt done as `substeps` steps of dt / substeps (stiff glasses)."""
    steps = steps * substeps
    p = params(system, jnp.float32, r_list=system["r_cutoff"], dt=dt / substeps, gamma=gamma,
               kT_start=kT_start, kT_end=kT_end, total=max(steps, 1))
    state = simulate.BrownianState(jnp.asarray(positions, jnp.float32), jnp.float32(1), key)
    chunk = partial(_brownian_chunk, params=p, skin=skin, **engine.statics(len(positions)))
    state, _ = run_phase(chunk, state, system, system["r_cutoff"], skin, steps, label,
                         engine=engine)
    return np.asarray(state.position, np.float64)


def brownian_substeps(lam_max, dt, gamma, max_dt_lambda):
    """m >= 1 such that (dt / m) lambda_max / gamma <= max_dt_lambda (Euler-Maruyama's drift
    is stable for dt lambda / gamma < 2)."""
    return max(1, int(np.ceil(dt * lam_max / gamma / max_dt_lambda)))


def fire_mass(positions, system, fire):
    """FIRE's (fictitious) mass: 1, or larger where the glass is so stiff that fire.dt_max would
    come within fire.max_dt_omega of velocity Verlet's stability limit. The condition FIRE stops
    on (max|F| < force_tol) does not depend on the mass, but the path does, so in a rugged
    landscape the basin can: of 36 default glasses given only m > 1 (plain Brownian steps), 8 end
    in another minimum than at m = 1 (experiments/are_glass_sets_alike.py, docs/report.md)."""
    lam_max = largest_hessian_eigenvalue(positions, system)
    return max(1.0, (fire.dt_max * np.sqrt(max(lam_max, 0.0)) / fire.max_dt_omega) ** 2)


def inherent_structure(positions, system, *, fire, engine):
    """FIRE in float64 to max|F| < fire.force_tol; not converging is an error.
    Returns positions, energy, max|F|, FIRE steps and the FIRE mass."""
    force_tol = fire.force_tol
    # FIRE aims at half the tolerance, so that the independent recomputation below, which sums
    # the same pairs in another order, cannot land a rounding error above force_tol.
    mass = fire_mass(positions, system, fire)
    p = params(system, jnp.float64, r_list=system["r_cutoff"], tol=0.5 * force_tol, mass=mass)
    r = jnp.asarray(positions, jnp.float64)
    static = dict(skin=fire.skin, dt_start=fire.dt_start, dt_max=fire.dt_max,
                  **engine.statics(len(positions)))
    neighbor_fn = engine.neighbour_list_fn(system["box"], system["r_cutoff"], fire.skin)
    state = _fire_init(r, allocate_neighbors(neighbor_fn, r), p, **static)
    converged = lambda st: float(jnp.max(jnp.linalg.norm(st.force, axis=1))) < p["tol"]  # noqa
    state, n_steps = run_phase(partial(_fire_chunk, params=p, **static), state, system,
                               system["r_cutoff"], fire.skin, fire.max_steps, "FIRE",
                               done=converged, engine=engine)
    positions = np.mod(np.asarray(state.position, np.float64), system["box"])
    e, forces = energy_and_forces(positions, system)
    max_force = float(np.max(np.linalg.norm(forces, axis=1)))
    if not max_force < force_tol:
        raise RuntimeError(f"FIRE did not reach an inherent structure: max|F| = {max_force:.3e} "
                           f">= FORCE_TOL = {force_tol:.0e} after {n_steps} steps "
                           f"(FIRE mass {mass:.2f}; raise MAX_FIRE_STEPS or check the protocol)")
    return positions, e, max_force, n_steps, mass
