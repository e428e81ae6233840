"""Athermal quasistatic (AQS) simple shear of a periodic glass to its first plastic event.

The shear engine of validate_rearrangements.py (issue 13), which holds the constants, scores the
indicators and runs the pipeline. In Lennard-Jones reduced units (lengths sigma_AA, energies
epsilon_AA, stress epsilon_AA / sigma_AA^3), for one glass and one of six simple-shear directions
(+-xy, +-xz, +-yz; "xy" displaces x in proportion to y):

  1. shear     the cubic box becomes the triclinic cell T(gamma) = L (I + s gamma e_a e_b^T)
               (fractional coordinates, jax-md's periodic_general convention; see sheared_space
               for why its own displacement is not used): an affine step moves the cell and,
               with the fractional coordinates fixed, every atom with it
  2. relax     after each strain step, from the linear-response prediction: FIRE in float64
               (generate_glass_data's smoothed LJ and FIRE parameters, the glass's own
               sigma/epsilon/cut-offs; explicit pair forces on a Dense list) until
               max|F| < NEWTON_FORCE, then Newton steps with the Hessian's sparse Cholesky factor
               (softglass/sparse_solver.py) to max|F| < FORCE_TOL
  3. detect    the first plastic event: the energy dissipated in a step, the work of the stress
               (cubic Hermite quadrature) minus the energy change, exceeds DISSIPATION_TOL
  4. bisect    between the last stable strain and the first post-event strain, restarting from the
               last pre-event minimum each time, until the bracket is <= STRAIN_RESOLUTION
  5. record    event strain, stress-strain curve, energy and stress drops, the non-affine
               displacement between the minima just before and after (minimum image of the
               sheared cell), D2min, the hit (most-moved atom) and the top-1% movers; and the
               critical mode: the Hessian's lowest vibrational mode at the last stable minimum,
               whose eigenvalue vanishes at the event strain (a saddle-node bifurcation: Maloney
               and Lemaitre, PRE 74, 016118 (2006)), its participation per atom and its
               most-participating atom, the trigger. The hit depends on the minimiser that
               follows the instability (where the avalanche ends); the trigger does not

Every setting comes in a ShearProtocol, whose fields are validate_rearrangements.py's constants
of the same names in lower case (the docstrings below use the constants' names), and a
Relaxation, generate_glass_data.py's constants that FIRE and the factors share with glass making;
this module keeps none of its own, so an override of a script reaches the engine in every worker.

    from softglass import shear
    import validate_rearrangements as vr
    event = shear.shear_to_first_event(snap, "+xy", vr.shear_protocol(),
                                       relaxation=vr.relaxation())
"""
import dataclasses
from functools import partial
import re
import time

import numpy as np

from . import jax_config  # noqa: F401  (float64)

import jax
import jax.numpy as jnp
from jax_md import partition, smap, space
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from softglass.files import system_of

N_TRANSLATIONS = 3              # zero modes of a periodic cell, sheared or not
CRITICAL_MODE_SHIFT = -0.1      # epsilon/sigma^2; shift-invert target below a minimum's spectrum
from .dynamics import _fire_chunk, _fire_init, run_chunks
from .forces import energy_or_forces, force_block_rows, list_format, pair_forces
from .hessian import hessian_from_pairs, pair_hessian_blocks
from .neighbours import allocate_neighbors
from .pairs import pair_list
from .potentials import pair_derivatives, smoothed_lj
from .sparse_solver import MultifrontalCholesky, atom_graph, nested_dissection_tree

_AXES = {"xy": (0, 1), "xz": (0, 2), "yz": (1, 2)}     # (displaced axis a, gradient axis b)
NEWTON_FACTORS = ("multifrontal", "dense")            # the Cholesky factors Newton may use


@dataclasses.dataclass(frozen=True)
class ShearProtocol:
    """The settings of one AQS run: validate_rearrangements.py's constants of the same names in
    upper case, with their units and reasons (shear_protocol() there builds this)."""
    strain_step: float           # strain increment of the coarse scan
    max_strain: float            # no event by this strain: "no_yield"
    strain_resolution: float     # bisection stops at this bracket
    force_tol: float             # epsilon/sigma; a minimum has max_i |F_i| below this
    max_fire_steps: int          # FIRE steps per relaxation; more: "fire_failed"
    dissipation_tol: float       # epsilon; a step dissipating more is plastic
    skin: float                  # sigma; neighbour-list skin (less in a small box)
    force_kernel: str            # generate_glass_data's FORCE_KERNEL for FIRE's forces
    predictor_max_move: float    # sigma; largest linear-response move used to start FIRE
    newton_force: float          # epsilon/sigma; FIRE hands over to Newton below this (0: never)
    newton_retry_force: float    # epsilon/sigma; FIRE's second hand-over when Newton failed
    newton_max_steps: int        # Newton/chord steps per relaxation
    newton_factor: str           # "multifrontal" or "dense" Cholesky factor
    newton_max_move: float       # sigma; a larger Newton step means a nearly singular Hessian
    top_movers_fraction: float   # the top movers: this share of the atoms by |non-affine u|
    d2min_radius: float          # sigma_AA; D2min's neighbours

    def __post_init__(self):
        """Refuse a setting the engine would only trip over minutes into a run."""
        if self.newton_factor not in NEWTON_FACTORS:
            raise ValueError(f"NEWTON_FACTOR={self.newton_factor!r}: expected one of "
                             f"{NEWTON_FACTORS}")
        list_format(self.force_kernel)            # raises for an unknown FORCE_KERNEL
        for name in ("strain_step", "max_strain", "strain_resolution", "force_tol",
                     "max_fire_steps", "skin", "newton_max_steps", "top_movers_fraction"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name.upper()}={getattr(self, name)!r}: must be positive")


@dataclasses.dataclass(frozen=True)
class Relaxation:
    """How the shear's FIRE and Cholesky factors compute, shared with glass making:
    generate_glass_data.py's constants of the same names in upper case
    (validate_rearrangements.relaxation() builds this)."""
    fire_dt_start: float             # tau; FIRE's first time step
    fire_dt_max: float               # tau; FIRE's largest time step
    chunk_steps: int                 # FIRE steps per compiled chunk (convergence checked between)
    capacity_margin: float           # head-room of a new neighbour buffer
    force_block_rows: int            # atoms; dense kernel rows summed at a time above ...
    force_one_block_max_atoms: int   # ... this many atoms
    nd_leaf_atoms: int               # atoms; nested dissection stops cutting pieces this small


# ================================ the sheared cell ===============================================
def parse_direction(direction):
    """'+xy' -> (a=0, b=1, sign=+1): x displaced in proportion to y, positive tilt."""
    match = re.fullmatch(r"([+-])(xy|xz|yz)", direction.strip())
    if match is None:
        raise ValueError(f"shear direction {direction!r}: expected one of +xy, -xy, +xz, -xz, "
                         "+yz, -yz")
    a, b = _AXES[match[2]]
    return a, b, (1.0 if match[1] == "+" else -1.0)


def sheared_cell(box, direction, strain):
    """T = L (I + s gamma e_a e_b^T): columns are the cell vectors, real r = T s for fractional s.
    Upper triangular (a < b), jax-md's convention for a general periodic cell."""
    a, b, sign = parse_direction(direction)
    cell = box * np.eye(3)
    cell[a, b] = sign * strain * box
    return cell


def perpendicular_widths(cell):
    """Distances between opposite faces of the cell: 1 / |row k of T^-1|."""
    return 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=1)


def check_sheared_minimum_image(box, r_cut, max_strain, where="glass"):
    """Fractional wrapping (jax-md's periodic_general) picks the nearest image of every pair
    closer than r_cut only while r_cut < half the narrowest width; simple shear narrows the cell
    (width L / sqrt(1 + gamma^2) across the displaced axis). Refuse a box too small for MAX_STRAIN.
    Returns the narrowest width at max_strain."""
    width = float(np.min(perpendicular_widths(sheared_cell(box, "+xy", max_strain))))
    if not width > 2.0 * r_cut:
        limit = np.sqrt(max((box / (2.0 * r_cut)) ** 2 - 1.0, 0.0))
        raise ValueError(f"{where}: a box of {box:.3f} sigma sheared to strain {max_strain:g} is "
                         f"{width:.3f} sigma wide across its displaced axis, not wider than twice "
                         f"the cutoff ({2 * r_cut:.3f}): the minimum image would fail. Lower "
                         f"MAX_STRAIN below {limit:.3f} or use a larger glass.")
    return width


def skin_for(box, r_cut, max_strain, skin, where="glass"):
    """`skin`, or less for a small box, so listed pairs (r < r_cut + skin) keep unique images."""
    width = check_sheared_minimum_image(box, r_cut, max_strain, where)
    return float(min(skin, 0.9 * (width / 2.0 - r_cut)))


# ================================ the sheared cell in JAX ========================================
@jax.custom_jvp
def _to_real(cell, ds):
    """r = T ds, written as an elementwise product and sum. jax-md's space.transform is an
    einsum (a batched dot under vmap), and jaxlib 0.10.2's CPU backend miscompiles the jitted
    vmap of that 3x3 product followed by a squared norm: for the 200-atom test glass 3516 of
    19900 pair distances came out wrong under jit (right eagerly and in numpy), so
    space.periodic_general's displacement cannot be used here. Same JVP as jax-md's transform:
    the tangent of ds passes through unchanged, so jax.grad with respect to fractional positions
    is the real-space gradient (what FIRE's forces must be)."""
    return jnp.sum(cell * ds[..., None, :], axis=-1)


@_to_real.defjvp
def _to_real_jvp(primals, tangents):
    cell, ds = primals
    dcell, dds = tangents
    return _to_real(cell, ds), dds + jnp.sum(dcell * ds[..., None, :], axis=-1)


def sheared_space(cell):
    """(displacement, shift) of the periodic cell T in fractional coordinates, as jax-md's
    periodic_general(T, fractional_coordinates=True): d(a, b) = T wrap(s_a - s_b) (nearest image
    while r_cut is below half the narrowest width, see check_sheared_minimum_image) and
    shift(s, dR) = s + T^-1 dR, wrapped into [0, 1)."""
    inv_cell = jnp.linalg.inv(cell)

    def displacement(ra, rb, **unused):
        ds = ra - rb
        return _to_real(cell, ds - jnp.round(ds))

    def shift(r, dr, **unused):
        return jnp.mod(r + jnp.sum(inv_cell * dr[..., None, :], axis=-1), 1.0)

    return displacement, shift


class _ShearedNeighbours:
    """jax-md's brute-force neighbour list in fractional coordinates, distances in the sheared
    cell; allocated in FORCE_KERNEL's format (Dense: the forces of dense_pair_forces; half
    OrderedSparse: jax.grad of the energy), updated in the format of the list it is given (the
    format is static under jit). O(N^2) per rebuild, which FIRE's skin makes rare."""

    def __init__(self, cell, r_list, skin, force_kernel=None, capacity_margin=None):
        self.cell, self.r_list, self.skin = cell, r_list, skin
        self.force_kernel = force_kernel        # allocate's format; update keeps the list's own
        self.capacity_margin = capacity_margin  # allocate_neighbors' head-room

    def jax_md(self, fmt):
        displacement, _ = sheared_space(self.cell)
        return partition.neighbor_list(displacement, self.cell, self.r_list, self.skin,
                                       format=fmt, disable_cell_list=True,
                                       capacity_multiplier=1.0, fractional_coordinates=True)

    def allocate(self, frac):
        return self.jax_md(list_format(self.force_kernel)).allocate(frac)

    def update(self, frac, nbrs):
        return self.jax_md(nbrs.format).update(frac, nbrs)

    def update_or_stale(self, frac, nbrs):
        """The compiled loops of softglass.dynamics ask this: rebuilt inside, never stale."""
        return self.update(frac, nbrs), jnp.bool_(False)


def _sheared_system(params, skin, kernel, block_rows):
    """Shift, neighbour list and pair energy (forces, on a Dense list) of the (traced) sheared
    cell. jax.grad of the energy with respect to fractional positions is the real-space gradient
    (see _to_real), so FIRE's velocities and forces live in real space and shift maps them back
    to fractions."""
    cell = params["cell"]
    displacement, shift = sheared_space(cell)
    metric = space.canonicalize_displacement_or_metric(displacement)
    pair = smoothed_lj(params["r_onset"], params["r_cutoff"])
    return shift, _ShearedNeighbours(cell, params["r_list"], skin), energy_or_forces(
        smap.pair_neighbor_list(pair, metric),
        pair_forces(pair, None, cell, kernel, block_rows))


class FireFailed(RuntimeError):
    """FIRE did not reach max|F| < FORCE_TOL within MAX_FIRE_STEPS."""


# ================================ one glass under shear ==========================================
class ShearedGlass:
    """One glass sheared in one direction: relaxations at any strain, energy, stress, Hessian."""

    def __init__(self, snap, direction, protocol, where="glass", *, relaxation):
        self.protocol, self.relaxation = protocol, relaxation
        self.system = system_of(snap)
        self.direction = direction
        self.a, self.b, self.sign = parse_direction(direction)
        self.box = self.system["box"]
        self.volume = self.box ** 3
        self.skin = skin_for(self.box, self.system["r_cutoff"], protocol.max_strain,
                             protocol.skin, where)
        self.frac0 = np.mod(np.asarray(snap["positions"], np.float64) / self.box, 1.0)
        self.mass = float(snap["parameters"].get("fire_mass", 1.0))
        self.capacity = None
        self.fire_steps = 0           # total FIRE steps of this object (benchmarks)
        self.relaxations = 0
        self.newton_steps = 0         # Newton/chord solves of this object (benchmarks)
        self.newton_fallbacks = 0     # relaxations Newton left to FIRE
        self.factors = 0              # Cholesky factors of the pinned Hessian (benchmarks)
        self.seconds = dict(fire=0.0, factor=0.0)     # where the time goes (benchmarks)

    def cell(self, strain):
        return sheared_cell(self.box, self.direction, strain)

    # ---- relaxation -------------------------------------------------------------------------
    def relax(self, frac, strain, factor=None):
        """Relax from fractional positions `frac` in the cell at `strain` (the affine step: the
        cell changes, the fractions do not) to max|F| < FORCE_TOL. Newton (newton_polish) takes
        over once max|F| < NEWTON_FORCE: at once when the start is that close (the linear-response
        start usually is), else after FIRE got there. When Newton does not behave, FIRE goes on
        from where it handed over, in its own state (the plain FIRE path exactly), to
        NEWTON_RETRY_FORCE, Newton tries again, and failing that FIRE ends the relaxation.
        Returns the minimum as a dict; FireFailed if max|F| (recomputed from the pair list) does
        not fall below FORCE_TOL. A Newton-polished state is a checked minimum (its Hessian, atom 0
        pinned, has a Cholesky factor: minimum_checked True, 'factor' kept for the next start);
        a FIRE one is not checked (False, factor None). `factor`: the Hessian factor of the
        minimum `frac` was predicted from, Newton's first (chord) operator."""
        p = self.protocol
        steps, fire, polished = 0, None, None
        handovers = (p.newton_force, p.newton_retry_force) if p.newton_force > 0 else ()
        for handover in handovers:
            _, forces, _ = self.energy_forces_stress(frac, strain)
            if not np.max(np.linalg.norm(forces, axis=1)) < handover:
                fire = fire or self._fire_start(frac, strain)
                fire, steps = self._fire_to(fire, handover, steps)
                frac = np.mod(np.asarray(fire[0].position, np.float64), 1.0)
            polished = self.newton_polish(frac, strain, factor)
            if polished is not None:
                break
            factor = None                       # the start's factor did not fit
        if handovers and polished is None:
            self.newton_fallbacks += 1
        if polished is None:
            fire = fire or self._fire_start(frac, strain)
            fire, steps = self._fire_to(fire, 0.5 * p.force_tol, steps)
            frac, factor = np.mod(np.asarray(fire[0].position, np.float64), 1.0), None
        else:
            frac, factor = polished
        self.fire_steps += steps
        self.relaxations += 1
        energy, forces, stress = self.energy_forces_stress(frac, strain)
        max_force = float(np.max(np.linalg.norm(forces, axis=1)))
        if not max_force < p.force_tol:
            raise FireFailed(f"FIRE did not converge at strain {strain:.6f} ({self.direction}): "
                             f"max|F| = {max_force:.3e} >= FORCE_TOL = {p.force_tol:.0e} after "
                             f"{steps} steps")
        resp = self.response(frac, strain, factor=factor)
        return dict(strain=float(strain), frac=frac, energy=energy, stress=stress,
                    max_force=max_force, fire_steps=int(steps), modulus=resp["modulus"],
                    velocity=resp["velocity"], minimum_checked=factor is not None, factor=factor)

    def _fire_start(self, frac, strain):
        """FIRE's compiled state at `frac` in the cell at `strain`: (state, nbrs, params, static,
        neighbor_fn)."""
        cell = self.cell(strain)
        s = self.system
        # FIRE aims at half the tolerance: the numpy recomputation sums pairs in another order
        p = {k: jnp.asarray(v, jnp.float64) for k, v in s.items() if k not in ("species", "box")}
        p.update(cell=jnp.asarray(cell), species=jnp.asarray(s["species"], jnp.int32),
                 r_list=jnp.float64(s["r_cutoff"]), mass=jnp.float64(self.mass))
        rx = self.relaxation
        static = dict(skin=self.skin, dt_start=rx.fire_dt_start, dt_max=rx.fire_dt_max,
                      kernel=self.protocol.force_kernel,
                      block_rows=force_block_rows(len(frac), rx.force_block_rows,
                                                  rx.force_one_block_max_atoms),
                      system_fn=_sheared_system)         # softglass.dynamics' FIRE, sheared
        neighbor_fn = _ShearedNeighbours(jnp.asarray(cell), s["r_cutoff"], self.skin,
                                         self.protocol.force_kernel, rx.capacity_margin)
        r = jnp.asarray(frac, jnp.float64)
        nbrs = allocate_neighbors(neighbor_fn, r, self.capacity)
        self.capacity = nbrs.idx.shape[1]
        return _fire_init(r, nbrs, p, **static), nbrs, p, static, neighbor_fn

    def _fire_to(self, fire, tol, steps):
        """FIRE chunks (softglass.dynamics.run_chunks) until max|F| < tol or MAX_FIRE_STEPS in
        all; the FIRE state (velocities, time step) carries over, so stopping early and going on
        is the same trajectory. An overflowed list is redone larger, and later starts keep it."""
        state, nbrs, p, static, neighbor_fn = fire
        t0 = time.perf_counter()

        def converged(st):
            return float(jnp.max(jnp.linalg.norm(st.force, axis=1))) < tol

        if not converged(state):
            chunk = partial(_fire_chunk, params=dict(p, tol=jnp.float64(tol)), **static)
            state, nbrs, ran = run_chunks(chunk, state, nbrs, neighbor_fn,
                                          self.protocol.max_fire_steps - steps, done=converged,
                                          chunk_steps=self.relaxation.chunk_steps)
            steps += ran
            self.capacity = nbrs.idx.shape[1]
        self.seconds["fire"] += time.perf_counter() - t0
        return (state, nbrs, p, static, neighbor_fn), steps

    # ---- Newton polish ------------------------------------------------------------------------
    def hessian_factor(self, frac, strain):
        """Cholesky factor of the Hessian with atom 0 pinned (rows/columns 0-2 dropped: the
        translations are the only zero modes of a stable minimum, so the pinned Hessian is
        positive definite exactly when the state is a strict minimum), or None when it is not
        (a saddle, or singular: near a fold)."""
        t0 = time.perf_counter()
        i, j, rij, r, _, d1, d2 = self._pair_terms(frac, strain)
        h, _ = hessian_from_pairs(len(frac), i, j, pair_hessian_blocks(rij, r, d1, d2))
        factor = positive_definite_factor(h[3:, 3:], np.mod(frac[1:], 1.0) * self.box, self.box,
                                          self.protocol.newton_factor,
                                          leaf_atoms=self.relaxation.nd_leaf_atoms)
        self.factors += 1
        self.seconds["factor"] += time.perf_counter() - t0
        return factor

    def critical_mode(self, frac, strain):
        """(eigenvalue, participation per atom) of the Hessian's lowest vibrational mode at a
        minimum: shift-invert Lanczos below the spectrum (the cell is sheared, so eigsh's own LU
        rather than the cubic box's nested dissection), the three translations found by their
        content and skipped. Participation p_i = sum_alpha v_i,alpha^2 sums to 1."""
        from .hessian import vibrational_modes
        i, j, rij, r, _, d1, d2 = self._pair_terms(frac, strain)
        h, _ = hessian_from_pairs(len(frac), i, j, pair_hessian_blocks(rij, r, d1, d2))
        v0 = np.random.default_rng(0).standard_normal(h.shape[0])    # deterministic start
        vals, vecs = scipy.sparse.linalg.eigsh(h.tocsc(), k=N_TRANSLATIONS + 1,
                                               sigma=CRITICAL_MODE_SHIFT, which="LM", v0=v0)
        k = vibrational_modes(vals, vecs, N_TRANSLATIONS)[0]
        return float(vals[k]), np.sum(vecs[:, k].reshape(-1, 3) ** 2, axis=1)

    def newton_polish(self, frac, strain, factor=None):
        """Newton from `frac` to max|F| < FORCE_TOL: dx = H^-1 F with atom 0 pinned, starting from
        `factor` (a nearby minimum's, else this state's) and reusing it while the force at least
        halves per step (chord steps), refactoring when it does not. Every step must keep the
        energy (to round-off) from rising, lower max|F| and move no atom more than
        NEWTON_MAX_MOVE, else the state's own factor is made and, if its step fails as well,
        FIRE takes over; every factor must be positive definite, and the end point is factored
        itself, so it is checked to be a minimum. Returns (frac, factor at frac) or None."""
        p = self.protocol
        inv_cell = np.linalg.inv(self.cell(strain))
        energy, forces, _ = self.energy_forces_stress(frac, strain)
        fmax = float(np.max(np.linalg.norm(forces, axis=1)))
        fresh, n_steps = False, 0
        for _ in range(2 * p.newton_max_steps + 2):
            if factor is None:
                factor, fresh = self.hessian_factor(frac, strain), True
                if factor is None:
                    return None
            if fmax < p.force_tol:
                if fresh:
                    return frac, factor
                factor = None                   # check the end point itself
                continue
            if n_steps >= p.newton_max_steps:
                return None
            dx = np.zeros_like(forces)
            dx.ravel()[3:] = factor.solve(forces.ravel()[3:])
            dx -= dx.mean(axis=0)               # no rigid translation (FIRE keeps the centre too)
            n_steps += 1
            self.newton_steps += 1
            if not np.max(np.linalg.norm(dx, axis=1)) <= p.newton_max_move:
                if fresh:                       # a nearly singular Hessian: not a basin's bottom
                    return None
                factor = None
                continue
            trial = frac + dx @ inv_cell.T
            e_new, f_new, _ = self.energy_forces_stress(trial, strain)
            fmax_new = float(np.max(np.linalg.norm(f_new, axis=1)))
            if not (e_new <= energy + 1e-12 * max(1.0, abs(energy)) and fmax_new < fmax):
                if fresh:                       # a true Newton step failed: leave it to FIRE
                    return None
                factor = None                   # a stale factor's step failed: refactor here
                continue
            slow = fmax_new > 0.5 * fmax          # a stale factor converges too slowly
            frac, energy, forces, fmax = np.mod(trial, 1.0), e_new, f_new, fmax_new
            fresh = False
            if slow:
                factor = None
        return None

    # ---- pair geometry in the sheared cell (numpy, independent of the neighbour list) ----------
    def pairs(self, frac, strain, r_cut=None):
        """All pairs i<j closer than r_cut in the cell at `strain`, r_ij = r_j - r_i (nearest
        image: the fractional difference wrapped to [-1/2, 1/2), then T)."""
        return pair_list(frac, self.cell(strain), self.system["r_cutoff"] if r_cut is None
                         else r_cut)

    def _pair_terms(self, frac, strain):
        i, j, rij = self.pairs(frac, strain)
        sp, s = self.system["species"], self.system
        sig, eps = s["sigma"][sp[i], sp[j]], s["epsilon"][sp[i], sp[j]]
        r = np.linalg.norm(rij, axis=1)
        phi, d1, d2 = pair_derivatives(r, sig, eps, s["r_onset"], s["r_cutoff"])
        return i, j, rij, r, phi, d1, d2

    def energy_forces_stress(self, frac, strain):
        """Energy, forces and the shear stress conjugate to the loading strain,
        tau = (1/V) dU/dgamma at fixed fractions = (s/V) sum_pairs phi'(r) r_a r_b / r (the
        virial in the sheared cell; positive when the glass resists the imposed shear)."""
        i, j, rij, r, phi, d1, _ = self._pair_terms(frac, strain)
        fij = (d1 / r)[:, None] * rij
        forces = np.zeros((len(frac), 3))
        np.add.at(forces, i, fij)
        np.add.at(forces, j, -fij)
        stress = self.sign * np.sum(d1 * rij[:, self.a] * rij[:, self.b] / r) / self.volume
        return float(np.sum(phi)), forces, float(stress)

    def response(self, frac, strain, factor=None):
        """Linear response of a minimum to the shear: the modulus
        G = dtau/dgamma = (1/V) [Born - Xi^T H^+ Xi] along the quasistatic path, and the
        non-affine velocity dR/dgamma = -H^+ Xi. Born = sum_pairs u^T K_ij u with
        u = d r_ij / d gamma = s r_b e_a (affine, at fixed fractions); Xi = d^2U / dgamma dR.
        H^+ Xi by conjugate gradients on the sparse Hessian: Xi sums to zero over atoms, so it
        lies in H's range and CG started at zero never leaves it; the translations are then
        projected out. (Measured at N = 1000: CG 0.2 s, sparse LU 1.0 s, dense Cholesky 0.8 s.)
        With `factor` (hessian_factor at this state) H^+ Xi is its direct solve, atom 0 pinned.
        Returns dict(modulus, born, correction, velocity (N, 3))."""
        i, j, rij, r, _, d1, d2 = self._pair_terms(frac, strain)
        k = pair_hessian_blocks(rij, r, d1, d2)
        n = len(frac)
        h, _ = hessian_from_pairs(n, i, j, k)
        rb = rij[:, self.b]
        born = float(np.sum(rb ** 2 * k[:, self.a, self.a]))
        xi_pair = self.sign * rb[:, None] * k[:, :, self.a]
        xi = np.zeros((n, 3))
        np.add.at(xi, j, xi_pair)
        np.add.at(xi, i, -xi_pair)
        xi = xi.ravel()
        if factor is not None:     # pinned solve: rows of atom 0 hold as H and Xi sum to zero
            u, info = np.zeros_like(xi), 0
            u[3:] = factor.solve(xi[3:])
        else:
            u, info = scipy.sparse.linalg.cg(h, xi, rtol=1e-12, maxiter=20 * len(xi))
        if info != 0:       # CG stalled (a nearly singular H next to an instability): pin atom 0
            u = np.zeros_like(xi)
            u[3:] = scipy.sparse.linalg.spsolve(h[3:, 3:].tocsc(), xi[3:])
        u = u.reshape(n, 3)
        u -= u.mean(axis=0)
        correction = float(xi @ u.ravel())
        return dict(modulus=(born - correction) / self.volume, born=born / self.volume,
                    correction=correction / self.volume, velocity=-u)

    def shear_modulus(self, frac, strain):
        """G = dtau/dgamma (Born minus non-affine correction) at a minimum; see response."""
        return self.response(frac, strain)["modulus"]

    def predicted_start(self, state, strain):
        """Fractional start of FIRE at `strain` from the minimum `state`: the affine step (the
        fractions ride with the cell) plus the linear non-affine response dR/dgamma dgamma, which
        cuts the forces FIRE starts from from O(dgamma) to O(dgamma^2). Near a fold the tangent
        of the branch underestimates the minimum's motion, so the start stays in the basin; a
        predicted move above PREDICTOR_MAX_MOVE is dropped all the same (pure affine start)."""
        move = state["velocity"] * (strain - state["strain"])
        if not np.max(np.linalg.norm(move, axis=1)) <= self.protocol.predictor_max_move:
            return state["frac"]
        return state["frac"] + move @ np.linalg.inv(self.cell(strain)).T


class _Cholesky:
    """A dense Cholesky factor with .solve (what newton_polish and response use)."""

    def __init__(self, factor):
        self.factor = factor

    def solve(self, b):
        return scipy.linalg.cho_solve(self.factor, b, check_finite=False)


def positive_definite_factor(h, positions=None, box=None, method="multifrontal", *, leaf_atoms):
    """Cholesky factor of a symmetric matrix (sparse or dense) with .solve, or None unless it is
    positive definite. With the atoms' `positions` (one row per 3 rows of h) in a periodic `box`
    and `method` "multifrontal": softglass/sparse_solver.py's sparse multifrontal factor, the atoms
    ordered by a geometric nested dissection of the matrix's own pattern (any positions give a
    correct factor; near ones a sparse one). Else dense LAPACK potrf of the 2997 x 2997 matrix
    (N = 1000). Measured with the Hessian's assembly, one core (bench_rearrangements.py, glass
    001, 207 factors over 6 directions): 0.23 s per multifrontal factor, 0.32 s per dense one."""
    if positions is not None and method == "multifrontal" and scipy.sparse.issparse(h):
        a = h.tocsr()
        tree = nested_dissection_tree(positions, box, atom_graph(a), leaf_atoms)
        try:
            return MultifrontalCholesky(a, tree)
        except np.linalg.LinAlgError:
            return None
    if method not in NEWTON_FACTORS:
        raise ValueError(f"NEWTON_FACTOR={method!r}: expected one of {NEWTON_FACTORS}")
    a = h.toarray() if scipy.sparse.issparse(h) else np.array(h, np.float64)
    try:
        return _Cholesky(scipy.linalg.cho_factor(a, overwrite_a=True, check_finite=False))
    except np.linalg.LinAlgError:
        return None


# ================================ first plastic event =============================================
def dissipation(glass, before, after):
    """Energy dissipated between two minima: the work of the stress along the step minus the
    energy change; ~0 on an elastic branch, the released energy at a plastic event. The work is
    the cubic-Hermite integral of tau with its slopes G at both ends,
    V [h (tau_a + tau_b) / 2 + h^2 (G_a - G_b) / 12], exact to O(h^5): the trapezoid alone
    leaves V h^3 tau'' / 12, measured 7e-6 epsilon at N = 1000, h = 1e-3 (tau'' ~ 100)."""
    h = after["strain"] - before["strain"]
    work = glass.volume * (0.5 * h * (before["stress"] + after["stress"])
                           + h ** 2 / 12.0 * (before["modulus"] - after["modulus"]))
    return float(work - (after["energy"] - before["energy"]))


def nonaffine_displacement(before, after, cell_after):
    """u_i = T_after (s_i,after - s_i,before), nearest image: the displacement from the affinely
    mapped pre-event minimum (the fractional coordinates ride with the cell) to the post-event
    one; its mean, a rigid translation (the zero modes), removed."""
    ds = after["frac"] - before["frac"]
    ds -= np.round(ds)
    u = ds @ cell_after.T
    return u - u.mean(axis=0)


def d2min(glass, before, after, radius):
    """Falk & Langer's D2min of each atom over its neighbours within `radius` in the pre-event
    minimum: sum_j |d_ij' - J d_ij|^2 with the best local affine map J = X Y^-1,
    X = sum d' d^T, Y = sum d d^T, i.e. sum |d'|^2 - tr(X Y^-1 X^T)."""
    i, j, d = glass.pairs(before["frac"], before["strain"], radius)
    ds = after["frac"][j] - after["frac"][i]
    ds -= np.round(ds)
    d_after = ds @ glass.cell(after["strain"]).T
    n = len(before["frac"])
    x, y, sq = np.zeros((n, 3, 3)), np.zeros((n, 3, 3)), np.zeros(n)
    for atoms in (i, j):                        # each pair is a neighbour of both atoms
        np.add.at(x, atoms, d_after[:, :, None] * d[:, None, :])
        np.add.at(y, atoms, d[:, :, None] * d[:, None, :])
        np.add.at(sq, atoms, np.sum(d_after ** 2, axis=1))
    jmat = x @ np.linalg.pinv(y)
    return np.maximum(sq - np.einsum("nij,nij->n", jmat, x), 0.0)


def shear_to_first_event(snap, direction, protocol, log=None, where="glass", *, relaxation):
    """AQS of one glass in one direction to its first plastic event (or protocol.max_strain).

    Returns a dict: status ('yielded', 'no_yield' or 'fire_failed'), the stress-strain curve
    of the minima visited (strain, stress, energy, dissipation from the previous stable
    minimum, FIRE steps), and for an event its strain bracket, energy and stress drops, the
    non-affine displacement, D2min, the hit and the top movers."""
    log = log or (lambda *a: None)
    t0 = time.perf_counter()
    glass = ShearedGlass(snap, direction, protocol, where, relaxation=relaxation)
    p = protocol
    n = len(glass.frac0)
    curve = []                   # (strain, stress, energy, dissipation, fire steps, stable,
                                 #  checked minimum)

    def note(state, diss, stable):
        curve.append((state["strain"], state["stress"], state["energy"], diss,
                      state["fire_steps"], stable, state["minimum_checked"]))

    out = dict(direction=direction, n_atoms=n, status=None, curve=None, message="")
    try:
        stable = glass.relax(glass.frac0, 0.0)
        note(stable, 0.0, True)
        n_grid = int(round(p.max_strain / p.strain_step))
        after, false_alarms = None, 0
        coarse_steps = bisection_steps = 0
        while after is None:
            # next point of the coarse grid k * strain_step above the last stable strain
            k = int(np.floor(stable["strain"] / p.strain_step + 1e-9)) + 1
            if k > n_grid:
                break
            strain = k * p.strain_step
            trial = glass.relax(glass.predicted_start(stable, strain), strain, stable["factor"])
            coarse_steps += 1
            diss = dissipation(glass, stable, trial)
            note(trial, diss, diss <= p.dissipation_tol)
            if diss <= p.dissipation_tol:
                stable = trial
                continue
            # bisection, every trial relaxed from the last stable (pre-event) minimum
            after, after_from = trial, stable
            while after["strain"] - stable["strain"] > p.strain_resolution:
                strain = 0.5 * (stable["strain"] + after["strain"])
                mid = glass.relax(glass.predicted_start(stable, strain), strain, stable["factor"])
                bisection_steps += 1
                diss = dissipation(glass, stable, mid)
                note(mid, diss, diss <= p.dissipation_tol)
                if diss > p.dissipation_tol:
                    after, after_from = mid, stable
                else:
                    stable = mid
            if after_from is not stable:        # the post-event minimum from the last one before
                after = glass.relax(glass.predicted_start(stable, after["strain"]),
                                    after["strain"], stable["factor"])
                bisection_steps += 1
                diss = dissipation(glass, stable, after)
                note(after, diss, diss <= p.dissipation_tol)
                if not diss > p.dissipation_tol:  # no event after all (a coarse step's quadrature
                    stable, after = after, None  # error, or FIRE's path): scan on from here
                    false_alarms += 1
        if after is None:
            out.update(status="no_yield", message=f"no event up to strain {p.max_strain:g}")
        else:
            diss = dissipation(glass, stable, after)
            u = nonaffine_displacement(stable, after, glass.cell(after["strain"]))
            norm = np.linalg.norm(u, axis=1)
            n_top = max(1, int(np.ceil(p.top_movers_fraction * n)))
            top = np.argsort(-norm, kind="stable")[:n_top]
            critical_eigenvalue, participation = glass.critical_mode(stable["frac"],
                                                                     stable["strain"])
            out.update(
                status="yielded", strain_before=stable["strain"], strain_after=after["strain"],
                event_strain=after["strain"], energy_drop=diss,
                energy_change=after["energy"] - stable["energy"],
                stress_before=stable["stress"], stress_after=after["stress"],
                stress_drop=stable["stress"] - after["stress"],
                displacement=u.astype(np.float64),
                d2min=d2min(glass, stable, after, p.d2min_radius),
                hit=int(top[0]), top_movers=top.astype(np.int64),
                max_displacement=float(norm[top[0]]),
                frac_before=stable["frac"], frac_after=after["frac"],
                cell_before=glass.cell(stable["strain"]), cell_after=glass.cell(after["strain"]),
                coarse_steps=coarse_steps, bisection_steps=bisection_steps,
                modulus_before=stable["modulus"], false_alarms=false_alarms,
                critical_eigenvalue=critical_eigenvalue, critical_participation=participation,
                trigger=int(np.argmax(participation)))
            log(f"  {where} {direction}: event at strain {after['strain']:.5f}, energy drop "
                f"{diss:.3e}, hit {top[0]} moved {norm[top[0]]:.3f} sigma, trigger "
                f"{int(np.argmax(participation))} (lambda_c {critical_eigenvalue:.2e})")
    except FireFailed as err:
        out.update(status="fire_failed", message=str(err))
        log(f"  {where} {direction}: {err}")
    checked = int(sum(c[6] for c in curve))
    curve = np.array([c[:6] for c in curve], dtype=np.float64).reshape(-1, 6)
    order = np.argsort(curve[:, 0], kind="stable")
    out.update(curve=dict(zip(("strain", "stress", "energy", "dissipation", "fire_steps",
                               "stable"), curve[order].T)),
               relaxations=glass.relaxations, fire_steps=glass.fire_steps,
               newton_solves=glass.newton_steps, newton_fallbacks=glass.newton_fallbacks,
               checked_minima=checked, factors=glass.factors,
               seconds=time.perf_counter() - t0, seconds_fire=glass.seconds["fire"],
               seconds_factor=glass.seconds["factor"], skin=glass.skin,
               elastic_dissipation_max=float(max((abs(c[3]) for c in curve[1:] if c[5]),
                                                 default=0.0)))
    return out
