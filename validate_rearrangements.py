"""Does softness find where the glass yields? Athermal quasistatic shear to the first plastic event.

A fifth, optional step after train.py (issue 13). For each glass and each of six simple-shear
directions (+-xy, +-xz, +-yz; "xy" displaces x in proportion to y), in Lennard-Jones reduced units
(lengths sigma_AA, energies epsilon_AA, stress epsilon_AA / sigma_AA^3):

  1. shear     the cubic box becomes the triclinic cell T(gamma) = L (I + s gamma e_a e_b^T)
               (fractional coordinates, jax-md's periodic_general convention; see sheared_space
               for why its own displacement is not used): an affine step moves the cell and,
               with the fractional coordinates fixed, every atom with it
  2. relax     after each STRAIN_STEP, from the linear-response prediction: FIRE in float64
               (generate_glass_data's smoothed LJ and FIRE parameters, the glass's own
               sigma/epsilon/cut-offs; explicit pair forces on a Dense list, FORCE_KERNEL) until
               max|F| < NEWTON_FORCE, then Newton steps with the Hessian's sparse Cholesky factor
               (NEWTON_FACTOR, nested_dissection.py) to max|F| < FORCE_TOL
  3. detect    the first plastic event: the energy dissipated in a step, the work of the stress
               (cubic Hermite quadrature) minus the energy change, exceeds DISSIPATION_TOL
  4. bisect    between the last stable strain and the first post-event strain, restarting from the
               last pre-event minimum each time, until the bracket is <= STRAIN_RESOLUTION
  5. record    event strain, stress-strain curve, energy and stress drops, the non-affine
               displacement between the minima just before and after (minimum image of the
               sheared cell), D2min, the hit (most-moved atom) and the top-1% movers
  6. score     indicators of the unstrained inherent structure (softness over 10/30/100 modes,
               vibrality, -lambda_1 of the local Hessian, random, the model's prediction when
               MODEL exists, each of MORE_MODELS (e.g. one trained with --LABEL_MODES=100),
               train.py's gradient-boosted trees when its split is read): percentile of the hit,
               share of hits in the top 5%, ROC AUC of the top-1% movers, bootstrap 95%
               intervals resampling glasses, and each model's difference to every indicator
               paired by event

Input: the test glasses of train.py's split (RESULTS_FILE 'split' -> 'test' -> DATA_DIR's base
glasses), or GLASSES, a comma list of .pkl paths (runs without training). One result file per
(glass, direction) is written atomically under OUT_DIR/events, so a killed run resumes where it
stopped; a direction that does not yield by MAX_STRAIN, or whose FIRE fails, is recorded as such.

    python validate_rearrangements.py [--GLASSES=a.pkl,b.pkl] [--N_WORKERS=2] [--OUT_DIR=...]
        [--MORE_MODELS=s100=s100/hybrid_physics_best.pth]
"""
import contextlib
import json
import multiprocessing as mp
import os
import re
import time

import numpy as np

from glass_io import (GlassFileError, apply_overrides, atomic_write_bytes, atomic_write_pickle,
                      constants_of, exit_on_help, file_sha256, load_glass, safe_load_pickle,
                      same_value, system_of)

# ================================ constants ====================================================
# --- shear protocol ---
DIRECTIONS = "+xy,-xy,+xz,-xz,+yz,-yz"   # sign, displaced, gradient axis ("xy": x moves with y)
STRAIN_STEP = 1e-3              # strain increment of the coarse scan. First events of KA glasses
                                # come at gamma ~ 0.002-0.03 (median 0.009 at N = 500, issue
                                # 13), so 1e-3 finds one in ~10 steps; bisection then costs
                                # log2(1e-3/1e-5) ~ 7 relaxations. A smaller step only adds
                                # coarse steps: two events in one step are harmless, bisection
                                # returns the first one.
MAX_STRAIN = 0.2                # a direction not yielding by this strain is recorded as "no_yield"
STRAIN_RESOLUTION = 1e-5        # bisection stops when the event is bracketed this tightly
FORCE_TOL = 1e-10               # epsilon/sigma; a minimum has max_i |F_i| below this (as a glass)
MAX_FIRE_STEPS = 100000         # FIRE steps per relaxation; more is recorded as "fire_failed"
DISSIPATION_TOL = 1e-4          # epsilon; a step dissipating more than this is plastic. Along an
                                # elastic branch the work (Hermite quadrature of tau with its slopes
                                # G) equals the energy change but for the kinks of G where a pair
                                # crosses r_onset or r_cutoff (the smoothed LJ is only C1).
                                # Measured (bench_rearrangements.py, N = 1000, 6 directions): the
                                # largest elastic |dissipation| per direction is 2e-6 to 5.5e-5,
                                # the first events released 0.03 to 10 epsilon. The margin below
                                # is thin (2x): a false alarm costs only its bisection (the
                                # bracket's end relaxed from the last stable minimum is checked
                                # again and, when elastic, the scan goes on). The raw energy
                                # cannot be used: a residual stress tau_0 < 0 makes E fall
                                # elastically by V |tau_0| dgamma per step.
SKIN = 0.3                      # sigma; neighbour-list skin (generate_glass_data's SKIN_MINIMIZE),
                                # reduced for a small box so r_cut + skin stays below half the
                                # sheared cell's narrowest width (the list's images stay unique)
FORCE_KERNEL = "dense"          # FIRE's forces in the sheared cell, as generate_glass_data's
                                # FORCE_KERNEL: "dense", explicit pair forces on a Dense list (no
                                # scatter); "grad", -jax.grad of the energy on a half list (the
                                # kernel until Nov 2026). The same forces to round-off, so, like
                                # NEWTON_*, not part of a result's protocol
PREDICTOR_MAX_MOVE = 0.05       # sigma; largest linear-response move used to start FIRE (a larger
                                # one means a nearly singular Hessian: start affinely instead)
NEWTON_FORCE = 1e-2             # epsilon/sigma; FIRE hands over to Newton below this max|F| (0 =
                                # plain FIRE to FORCE_TOL). The linear-response start is usually
                                # closer (~5e-3 after a 1e-3 step), so an elastic step needs no
                                # FIRE: chord steps with the previous minimum's Cholesky factor
                                # of the Hessian (atom 0 pinned), one new factor to check the end
                                # is a minimum; ~0.6 s per relaxation at N = 1000 against ~5 s of
                                # FIRE (bench_rearrangements.py)
NEWTON_RETRY_FORCE = 1e-4       # epsilon/sigma; when Newton fails at NEWTON_FORCE (past a fold the
                                # start has no basin), FIRE goes on to this force (through the
                                # event, into the new basin) and Newton tries again
NEWTON_MAX_STEPS = 30           # Newton/chord steps per relaxation before falling back to FIRE
NEWTON_FACTOR = "multifrontal"  # Cholesky factor of the pinned Hessian Newton solves with:
                                # "multifrontal", nested_dissection.py's sparse factor (fronts
                                # in a geometric nested-dissection order); "dense", LAPACK potrf
                                # of the dense 3N-3 matrix (the factor until Nov 2026)
NEWTON_MAX_MOVE = 0.02          # sigma; a larger Newton step means a nearly singular Hessian (the
                                # state is near a fold, not a minimum's quadratic basin): FIRE

# --- what counts as a rearrangement ---
TOP_MOVERS_FRACTION = 0.01      # the top 1% of |non-affine displacement|: at N = 1000 the 10 atoms
                                # of a typical first event's core (a shear transformation zone of
                                # ~5-20 atoms), so a positive set of its core, not its elastic halo
TOP_HIT_FRACTION = 0.05         # score: share of events whose hit lies in an indicator's top 5%
D2MIN_RADIUS = 1.5              # sigma_AA; D2min neighbours (first minimum of g_AA(r) of KA ~ 1.45)

# --- indicators ---
MODE_COUNTS = (10, 30, 100)     # softness over this many lowest non-trivial Hessian modes;
                                # vibrality sums over the largest count (1/omega^2 weights the
                                # lowest modes, so the truncation is a small correction)
MODEL = "hybrid_physics_best.pth"   # train.py's model; skipped with a note when absent
MORE_MODELS = ""                # other train.py models scored beside it, comma list of name=path
                                # (e.g. s100=s100/hybrid_physics_best.pth, trained with
                                # --LABEL_MODES=100): indicator "model_<name>"
N_BOOTSTRAP = 10000             # bootstrap resamples of the glasses (events of one glass correlate)
SEED = 0                        # random indicator and bootstrap

# --- input and output ---
GLASSES = ""                    # comma list of .pkl glasses; "" = the test glasses of RESULTS_FILE
RESULTS_FILE = "results.json"   # train.py's results: its 'split' names the test glasses
DATA_DIR = "data"               # the data set of generate_diverse_data.py
OUT_DIR = "rearrangements"      # events/, indicators/, rearrangements.json, the figure, event.xyz
N_WORKERS = os.cpu_count() or 1  # processes, one (glass, direction) per task (spawn: JAX is not
                                 # fork-safe); 1 runs in this process
SHOW_PROGRESS = True            # tqdm bar over tasks
JAX_CACHE_DIR = ".jax_cache"    # persistent XLA compilation cache ("" disables)

exit_on_help(globals())         # --help lists the constants above without importing jax

# constants that shape a result: a result file made with other values is made again
_PROTOCOL = ("STRAIN_STEP", "MAX_STRAIN", "STRAIN_RESOLUTION", "FORCE_TOL", "MAX_FIRE_STEPS",
             "DISSIPATION_TOL", "SKIN", "PREDICTOR_MAX_MOVE", "TOP_MOVERS_FRACTION", "D2MIN_RADIUS")
# NEWTON_* change how fast a minimum is reached, not which (tests/test_rearrangements.py checks the
# event against plain FIRE), so results made with other values are kept
_AXES = {"xy": (0, 1), "xz": (0, 2), "yz": (1, 2)}     # (displaced axis a, gradient axis b)


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


def skin_for(box, r_cut, max_strain, where="glass"):
    """SKIN, or less for a small box, so the listed pairs (r < r_cut + skin) keep unique images."""
    width = check_sheared_minimum_image(box, r_cut, max_strain, where)
    return float(min(SKIN, 0.9 * (width / 2.0 - r_cut)))


# ================================ JAX set-up =====================================================
import generate_glass_data as ggd                     # noqa: E402  (enables float64)
import jax                                            # noqa: E402
import jax.numpy as jnp                               # noqa: E402
from jax_md import partition, smap, space             # noqa: E402
import scipy.linalg                                   # noqa: E402
import scipy.sparse                                   # noqa: E402
import scipy.sparse.linalg                            # noqa: E402
from scipy.spatial import cKDTree                     # noqa: E402
from nested_dissection import (MultifrontalCholesky, atom_graph,    # noqa: E402
                               nested_dissection_tree)


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

    def __init__(self, cell, r_list, skin):
        self.cell, self.r_list, self.skin = cell, r_list, skin

    def jax_md(self, fmt):
        displacement, _ = sheared_space(self.cell)
        return partition.neighbor_list(displacement, self.cell, self.r_list, self.skin,
                                       format=fmt, disable_cell_list=True,
                                       capacity_multiplier=1.0, fractional_coordinates=True)

    def allocate(self, frac):
        return self.jax_md(ggd.list_format(FORCE_KERNEL)).allocate(frac)

    def update(self, frac, nbrs):
        return self.jax_md(nbrs.format).update(frac, nbrs)

    def update_or_stale(self, frac, nbrs):
        """generate_glass_data's compiled loops ask this: rebuilt inside, never stale."""
        return self.update(frac, nbrs), jnp.bool_(False)


def _sheared_system(params, skin):
    """Shift, neighbour list and pair energy (forces, on a Dense list) of the (traced) sheared
    cell. jax.grad of the energy with respect to fractional positions is the real-space gradient
    (see _to_real), so FIRE's velocities and forces live in real space and shift maps them back
    to fractions."""
    cell = params["cell"]
    displacement, shift = sheared_space(cell)
    metric = space.canonicalize_displacement_or_metric(displacement)
    pair = ggd.smoothed_lj(params["r_onset"], params["r_cutoff"])
    return shift, _ShearedNeighbours(cell, params["r_list"], skin), ggd.energy_or_forces(
        smap.pair_neighbor_list(pair, metric), ggd.dense_pair_forces(pair, None, cell=cell))


class FireFailed(RuntimeError):
    """FIRE did not reach max|F| < FORCE_TOL within MAX_FIRE_STEPS."""


# ================================ one glass under shear ==========================================
class ShearedGlass:
    """One glass sheared in one direction: relaxations at any strain, energy, stress, Hessian."""

    def __init__(self, snap, direction, where="glass"):
        self.system = system_of(snap)
        self.direction = direction
        self.a, self.b, self.sign = parse_direction(direction)
        self.box = self.system["box"]
        self.volume = self.box ** 3
        self.skin = skin_for(self.box, self.system["r_cutoff"], MAX_STRAIN, where)
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
        steps, fire, polished = 0, None, None
        handovers = (NEWTON_FORCE, NEWTON_RETRY_FORCE) if NEWTON_FORCE > 0 else ()
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
            fire, steps = self._fire_to(fire, 0.5 * FORCE_TOL, steps)
            frac, factor = np.mod(np.asarray(fire[0].position, np.float64), 1.0), None
        else:
            frac, factor = polished
        self.fire_steps += steps
        self.relaxations += 1
        energy, forces, stress = self.energy_forces_stress(frac, strain)
        max_force = float(np.max(np.linalg.norm(forces, axis=1)))
        if not max_force < FORCE_TOL:
            raise FireFailed(f"FIRE did not converge at strain {strain:.6f} ({self.direction}): "
                             f"max|F| = {max_force:.3e} >= FORCE_TOL = {FORCE_TOL:.0e} after "
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
        static = dict(skin=self.skin, dt_start=ggd.FIRE_DT_START, dt_max=ggd.FIRE_DT_MAX,
                      system_fn=_sheared_system)         # generate_glass_data's FIRE, sheared
        neighbor_fn = _ShearedNeighbours(jnp.asarray(cell), s["r_cutoff"], self.skin)
        r = jnp.asarray(frac, jnp.float64)
        nbrs = ggd.allocate_neighbors(neighbor_fn, r, self.capacity)
        self.capacity = nbrs.idx.shape[1]
        return ggd._fire_init(r, nbrs, p, **static), nbrs, p, static, neighbor_fn

    def _fire_to(self, fire, tol, steps):
        """FIRE chunks until max|F| < tol or MAX_FIRE_STEPS in all; the FIRE state (velocities,
        time step) carries over, so stopping early and going on is the same trajectory."""
        state, nbrs, p, static, neighbor_fn = fire
        pt = dict(p, tol=jnp.float64(tol))
        t0 = time.perf_counter()
        while steps < MAX_FIRE_STEPS:
            if float(jnp.max(jnp.linalg.norm(state.force, axis=1))) < tol:
                break
            n = min(ggd.CHUNK_STEPS, MAX_FIRE_STEPS - steps)
            new_state, new_nbrs, ran, _ = ggd._fire_chunk(state, nbrs, 0, n, pt, **static)
            if bool(new_nbrs.did_buffer_overflow):   # lost pairs: redo the chunk, larger buffer
                self.capacity = ggd._capacity(nbrs, int(nbrs.idx.shape[1] * 1.5))
                nbrs = ggd.allocate_neighbors(neighbor_fn, state.position, self.capacity)
                continue
            state, nbrs = new_state, new_nbrs
            steps += int(ran)
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
        h, _ = ggd.hessian_from_pairs(len(frac), i, j, ggd.pair_hessian_blocks(rij, r, d1, d2))
        factor = positive_definite_factor(h[3:, 3:], np.mod(frac[1:], 1.0) * self.box, self.box)
        self.factors += 1
        self.seconds["factor"] += time.perf_counter() - t0
        return factor

    def newton_polish(self, frac, strain, factor=None):
        """Newton from `frac` to max|F| < FORCE_TOL: dx = H^-1 F with atom 0 pinned, starting from
        `factor` (a nearby minimum's, else this state's) and reusing it while the force at least
        halves per step (chord steps), refactoring when it does not. Every step must keep the
        energy (to round-off) from rising, lower max|F| and move no atom more than
        NEWTON_MAX_MOVE, else the state's own factor is made and, if its step fails as well,
        FIRE takes over; every factor must be positive definite, and the end point is factored
        itself, so it is checked to be a minimum. Returns (frac, factor at frac) or None."""
        inv_cell = np.linalg.inv(self.cell(strain))
        energy, forces, _ = self.energy_forces_stress(frac, strain)
        fmax = float(np.max(np.linalg.norm(forces, axis=1)))
        fresh, n_steps = False, 0
        for _ in range(2 * NEWTON_MAX_STEPS + 2):
            if factor is None:
                factor, fresh = self.hessian_factor(frac, strain), True
                if factor is None:
                    return None
            if fmax < FORCE_TOL:
                if fresh:
                    return frac, factor
                factor = None                   # check the end point itself
                continue
            if n_steps >= NEWTON_MAX_STEPS:
                return None
            dx = np.zeros_like(forces)
            dx.ravel()[3:] = factor.solve(forces.ravel()[3:])
            dx -= dx.mean(axis=0)               # no rigid translation (FIRE keeps the centre too)
            n_steps += 1
            self.newton_steps += 1
            if not np.max(np.linalg.norm(dx, axis=1)) <= NEWTON_MAX_MOVE:
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
        return sheared_pairs(frac, self.cell(strain), self.system["r_cutoff"] if r_cut is None
                             else r_cut)

    def _pair_terms(self, frac, strain):
        i, j, rij = self.pairs(frac, strain)
        sp, s = self.system["species"], self.system
        sig, eps = s["sigma"][sp[i], sp[j]], s["epsilon"][sp[i], sp[j]]
        r = np.linalg.norm(rij, axis=1)
        phi, d1, d2 = ggd._pair_derivatives(r, sig, eps, s["r_onset"], s["r_cutoff"])
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
        k = ggd.pair_hessian_blocks(rij, r, d1, d2)
        n = len(frac)
        h, _ = ggd.hessian_from_pairs(n, i, j, k)
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
        if not np.max(np.linalg.norm(move, axis=1)) <= PREDICTOR_MAX_MOVE:
            return state["frac"]
        return state["frac"] + move @ np.linalg.inv(self.cell(strain)).T


class _Cholesky:
    """A dense Cholesky factor with .solve (what newton_polish and response use)."""

    def __init__(self, factor):
        self.factor = factor

    def solve(self, b):
        return scipy.linalg.cho_solve(self.factor, b, check_finite=False)


def positive_definite_factor(h, positions=None, box=None):
    """Cholesky factor of a symmetric matrix (sparse or dense) with .solve, or None unless it is
    positive definite. With the atoms' `positions` (one row per 3 rows of h) in a periodic `box`
    and NEWTON_FACTOR "multifrontal": nested_dissection.py's sparse multifrontal factor, the atoms
    ordered by a geometric nested dissection of the matrix's own pattern (any positions give a
    correct factor; near ones a sparse one). Else dense LAPACK potrf of the 2997 x 2997 matrix
    (N = 1000). Measured with the Hessian's assembly, one core (bench_rearrangements.py, glass
    001, 207 factors over 6 directions): 0.23 s per multifrontal factor, 0.32 s per dense one."""
    if positions is not None and NEWTON_FACTOR == "multifrontal" and scipy.sparse.issparse(h):
        a = h.tocsr()
        tree = nested_dissection_tree(positions, box, atom_graph(a), ggd.ND_LEAF_ATOMS)
        try:
            return MultifrontalCholesky(a, tree)
        except np.linalg.LinAlgError:
            return None
    if NEWTON_FACTOR not in ("multifrontal", "dense"):
        raise ValueError(f"NEWTON_FACTOR={NEWTON_FACTOR!r}: expected 'multifrontal' or 'dense'")
    a = h.toarray() if scipy.sparse.issparse(h) else np.array(h, np.float64)
    try:
        return _Cholesky(scipy.linalg.cho_factor(a, overwrite_a=True, check_finite=False))
    except np.linalg.LinAlgError:
        return None


def sheared_pairs(frac, cell, r_cut):
    """Pairs closer than r_cut in a general periodic cell (columns = cell vectors). A k-d tree on
    the fractional coordinates (unit periodic box) with radius r_cut / sigma_min(T) finds every
    candidate; the real distances then keep those within r_cut."""
    frac = np.mod(frac, 1.0)
    frac[frac >= 1.0] = 0.0                     # mod of -1e-17 rounds to 1.0
    radius = r_cut / np.linalg.svd(cell, compute_uv=False)[-1]
    pairs = cKDTree(frac, boxsize=1.0).query_pairs(min(radius, 0.8660254), output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    ds = frac[j] - frac[i]
    ds -= np.round(ds)
    rij = ds @ cell.T
    keep = np.einsum("ij,ij->i", rij, rij) < r_cut ** 2
    return i[keep], j[keep], rij[keep]


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


def d2min(glass, before, after, radius=None):
    """Falk & Langer's D2min of each atom over its neighbours within `radius` in the pre-event
    minimum: sum_j |d_ij' - J d_ij|^2 with the best local affine map J = X Y^-1,
    X = sum d' d^T, Y = sum d d^T, i.e. sum |d'|^2 - tr(X Y^-1 X^T)."""
    radius = D2MIN_RADIUS if radius is None else radius
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


def shear_to_first_event(snap, direction, log=None, where="glass"):
    """AQS of one glass in one direction to its first plastic event (or MAX_STRAIN).

    Returns a dict: status ('yielded', 'no_yield' or 'fire_failed'), the stress-strain curve
    of the minima visited (strain, stress, energy, dissipation from the previous stable
    minimum, FIRE steps), and for an event its strain bracket, energy and stress drops, the
    non-affine displacement, D2min, the hit and the top movers."""
    log = log or (lambda *a: None)
    t0 = time.perf_counter()
    glass = ShearedGlass(snap, direction, where)
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
        n_grid = int(round(MAX_STRAIN / STRAIN_STEP))
        after, false_alarms = None, 0
        coarse_steps = bisection_steps = 0
        while after is None:
            # next point of the coarse grid k * STRAIN_STEP above the last stable strain
            k = int(np.floor(stable["strain"] / STRAIN_STEP + 1e-9)) + 1
            if k > n_grid:
                break
            trial = glass.relax(glass.predicted_start(stable, k * STRAIN_STEP), k * STRAIN_STEP,
                                stable["factor"])
            coarse_steps += 1
            diss = dissipation(glass, stable, trial)
            note(trial, diss, diss <= DISSIPATION_TOL)
            if diss <= DISSIPATION_TOL:
                stable = trial
                continue
            # bisection, every trial relaxed from the last stable (pre-event) minimum
            after, after_from = trial, stable
            while after["strain"] - stable["strain"] > STRAIN_RESOLUTION:
                strain = 0.5 * (stable["strain"] + after["strain"])
                mid = glass.relax(glass.predicted_start(stable, strain), strain, stable["factor"])
                bisection_steps += 1
                diss = dissipation(glass, stable, mid)
                note(mid, diss, diss <= DISSIPATION_TOL)
                if diss > DISSIPATION_TOL:
                    after, after_from = mid, stable
                else:
                    stable = mid
            if after_from is not stable:        # the post-event minimum from the last one before
                after = glass.relax(glass.predicted_start(stable, after["strain"]),
                                    after["strain"], stable["factor"])
                bisection_steps += 1
                diss = dissipation(glass, stable, after)
                note(after, diss, diss <= DISSIPATION_TOL)
                if not diss > DISSIPATION_TOL:  # no event after all (a coarse step's quadrature
                    stable, after = after, None  # error, or FIRE's path): scan on from here
                    false_alarms += 1
        if after is None:
            out.update(status="no_yield", message=f"no event up to strain {MAX_STRAIN:g}")
        else:
            diss = dissipation(glass, stable, after)
            u = nonaffine_displacement(stable, after, glass.cell(after["strain"]))
            norm = np.linalg.norm(u, axis=1)
            n_top = max(1, int(np.ceil(TOP_MOVERS_FRACTION * n)))
            top = np.argsort(-norm, kind="stable")[:n_top]
            out.update(
                status="yielded", strain_before=stable["strain"], strain_after=after["strain"],
                event_strain=after["strain"], energy_drop=diss,
                energy_change=after["energy"] - stable["energy"],
                stress_before=stable["stress"], stress_after=after["stress"],
                stress_drop=stable["stress"] - after["stress"],
                displacement=u.astype(np.float64), d2min=d2min(glass, stable, after),
                hit=int(top[0]), top_movers=top.astype(np.int64),
                max_displacement=float(norm[top[0]]),
                frac_before=stable["frac"], frac_after=after["frac"],
                cell_before=glass.cell(stable["strain"]), cell_after=glass.cell(after["strain"]),
                coarse_steps=coarse_steps, bisection_steps=bisection_steps,
                modulus_before=stable["modulus"], false_alarms=false_alarms)
            log(f"  {where} {direction}: event at strain {after['strain']:.5f}, energy drop "
                f"{diss:.3e}, hit {top[0]} moved {norm[top[0]]:.3f} sigma")
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


# ================================ indicators and scores ===========================================
def indicators_of(snap, seed=0, models=None, gbt=None):
    """Per-atom indicators of the unstrained inherent structure, higher = predicted softer:
    S_n over the n lowest non-trivial modes (n in MODE_COUNTS), vibrality
    sum_k |e_k(i)|^2 / lambda_k over the same (largest) set of modes, -lambda_1 of the local
    Hessian (stored), random, each model's prediction ({indicator name: load_model(...)}) and
    train.py's gradient-boosted trees when `gbt` (gbt_indicator) is given."""
    system = system_of(snap)
    positions = np.asarray(snap["positions"], np.float64)
    h, local = ggd.hessian(positions, system)
    n_modes = max(MODE_COUNTS)
    vals, vecs = ggd.lowest_modes(h, ggd.N_ZERO_MODES + n_modes, positions,
                                  float(snap["box_size"]))
    ggd.check_modes(vals)
    out = {f"S{m}": ggd.softness_from_modes(vecs, n_soft=m) for m in MODE_COUNTS}
    out["vibrality"] = ggd.vibrality_from_modes(vals, vecs, n_modes=n_modes)
    out["-lambda_1"] = -np.asarray(snap["eigenvalues"], np.float64)[:, 0]
    out["random"] = np.random.default_rng(seed).random(len(positions))
    for name, model in (models or {}).items():
        out[name] = model_prediction(model, snap)
    if gbt is not None:
        out["gbt"] = gbt_prediction(gbt, snap)
    return out


def scored_models():
    """{indicator name: (model, sha256 of its file)}: MODEL as "model" (skipped with a note when
    absent), each name=path of MORE_MODELS as "model_<name>" (an error when absent: asked for)."""
    models = {}
    model = load_model(MODEL)
    if model is not None:
        models["model"] = (model, file_sha256(MODEL))   # hashed once, not per glass
    for name, path in more_models().items():         # present: more_models checked
        models[f"model_{name}"] = (load_model(path), file_sha256(path))
    return models


def more_models():
    """MORE_MODELS as {name: path}; a malformed entry or a missing file is an error (checked
    before any shear is run)."""
    out = {}
    for item in filter(None, (x.strip() for x in MORE_MODELS.split(","))):
        name, sep, path = (t.strip() for t in item.partition("="))
        if not sep or not re.fullmatch(r"[A-Za-z0-9_]+", name) or not path:
            raise GlassFileError(f"MORE_MODELS: {item!r} is not name=path (name: letters, "
                                 "digits, _)")
        if not os.path.exists(path):
            raise GlassFileError(f"{path}: model file not found (MORE_MODELS {name})")
        out[name] = path
    return out


def load_model(path):
    """train.py's model (its architecture and scaling from the file), or None with a note."""
    if not os.path.exists(path):
        print(f"note: {path} not found: the model's prediction is not scored (train.py writes it)")
        return None
    import torch
    import train
    return train.load_trained_model(path, torch.device("cpu"))


def model_prediction(model, snap):
    """predict.py's path: the snapshot is an inherent structure already, so its positions and
    stored local-Hessian eigenvalues are the model's input."""
    import torch
    import predict
    net, scaling, card = model
    glass = dict(species=np.asarray(snap["species"]), box=float(snap["box_size"]))
    described = dict(positions=np.asarray(snap["positions"], np.float64),
                     eigenvalues=np.asarray(snap["eigenvalues"], np.float64))
    return predict.predicted_softness(net, scaling, card, glass, described, torch.device("cpu"))


def gbt_indicator():
    """train.py's gradient-boosted-trees baseline (the 5 local-Hessian features of an atom and
    their means over its neighbours within train.CUTOFF) fitted to the stored label (the seed's
    S10) of the training glasses of train.py's split, or None with a note when there is no split
    (GLASSES given). Fitted on the base glasses, not their rotated copies: the features and the
    label are rotation invariant. Returns (trees, key): key names the training set by content."""
    import hashlib
    import augment_data
    import train
    try:
        with open(RESULTS_FILE) as fh:
            names = json.load(fh)["split"]["train"]
    except (OSError, ValueError, KeyError, TypeError):
        print(f"note: no train.py split in {RESULTS_FILE}: the trees baseline is not scored")
        return None
    bases = dict(augment_data.base_files(DATA_DIR))
    missing = [k for k in names if k not in bases]
    if missing:
        raise GlassFileError(f"{RESULTS_FILE}: training glasses {missing[:5]} are not in "
                             f"{DATA_DIR}'s data set")
    digest = hashlib.sha256()
    xs, ys = [], []
    for k in names:
        digest.update(file_sha256(bases[k]).encode())
        g = train.glass_graph(load_glass(bases[k]))
        xs.append(train.neighbour_features(g))
        ys.append(g.y.numpy())
    trees = train.fit_gbt(np.concatenate(xs), np.concatenate(ys))
    return trees, digest.hexdigest()


def gbt_prediction(gbt, snap):
    import train
    trees, _ = gbt
    return trees.predict(train.neighbour_features(train.glass_graph(snap))).astype(np.float64)


def percentile_rank(values, atom):
    """Share of the other atoms whose indicator is below the atom's (ties count half):
    1 = the highest, 0.5 on average for a random indicator."""
    others = np.delete(values, atom)
    v = values[atom]
    return float((np.sum(others < v) + 0.5 * np.sum(others == v)) / len(others))


def in_top(values, atom, fraction):
    """Whether the atom is among the ceil(fraction N) highest (fewer than that above it)."""
    return bool(np.sum(values > values[atom]) < int(np.ceil(fraction * len(values))))


def roc_auc(values, positive):
    """Probability that a positive atom outranks a negative one (Mann-Whitney, ties half)."""
    from scipy.stats import rankdata
    ranks = rankdata(values)
    n_pos = int(np.sum(positive))
    n_neg = len(values) - n_pos
    return float((np.sum(ranks[positive]) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_by_glass(values, glass_ids, n_boot, rng):
    """Mean over events and its 95% interval, resampling glasses (with all their events): the
    directions of one glass often trigger the same atom, so events are not independent."""
    values, glass_ids = np.asarray(values, float), np.asarray(glass_ids)
    glasses = np.unique(glass_ids)
    sums = np.array([values[glass_ids == g].sum() for g in glasses])
    counts = np.array([np.sum(glass_ids == g) for g in glasses])
    pick = rng.integers(0, len(glasses), size=(n_boot, len(glasses)))
    means = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(lo), float(hi)


def score_events(events, indicators, n_boot=None, seed=None):
    """events: [(glass name, result dict)] of yielded events; indicators: {glass: {name: array}}.
    Returns {indicator: scores} with the per-event values kept for the figure."""
    n_boot = N_BOOTSTRAP if n_boot is None else n_boot
    seed = SEED if seed is None else seed
    names = sorted({k for ind in indicators.values() for k in ind})
    table = {}
    for name in names:
        rows = [(g, ev) for g, ev in events if name in indicators[g]]
        if not rows:
            continue
        gid = [g for g, _ in rows]
        pct, top, auc = [], [], []
        for g, ev in rows:
            x = indicators[g][name]
            pct.append(percentile_rank(x, ev["hit"]))
            top.append(in_top(x, ev["hit"], TOP_HIT_FRACTION))
            positive = np.zeros(len(x), bool)
            positive[ev["top_movers"]] = True
            auc.append(roc_auc(x, positive))
        rng = np.random.default_rng(seed)
        table[name] = dict(
            n_events=len(rows), n_glasses=len(set(gid)),
            hit_percentile=bootstrap_by_glass(pct, gid, n_boot, rng),
            hit_in_top=bootstrap_by_glass(top, gid, n_boot, rng),
            top_movers_auc=bootstrap_by_glass(auc, gid, n_boot, rng),
            per_event_percentile=[float(p) for p in pct], glass_of_event=gid)
    return table


def paired_differences(table, n_boot=None, seed=None):
    """Each model's hit percentile minus every other indicator's, event by event (the same
    events), mean and by-glass bootstrap 95% interval: intervals of two indicators overlap more
    than their difference is uncertain, since both see the same hard and easy events."""
    n_boot = N_BOOTSTRAP if n_boot is None else n_boot
    out = {}
    for m in sorted(k for k in table if k == "model" or k.startswith("model_")):
        for other in sorted(table):
            a, b = table[m], table[other]
            if other == m or a["glass_of_event"] != b["glass_of_event"]:
                continue
            diff = np.subtract(a["per_event_percentile"], b["per_event_percentile"])
            out[f"{m} - {other}"] = bootstrap_by_glass(
                diff, a["glass_of_event"], n_boot,
                np.random.default_rng(SEED if seed is None else seed))
    return out


# ================================ pipeline ========================================================
def protocol():
    return {k: globals()[k] for k in _PROTOCOL}


def glass_list():
    """[(name, path)]: GLASSES, or the test glasses of train.py's split in RESULTS_FILE."""
    if GLASSES.strip():
        paths = [p.strip() for p in GLASSES.split(",") if p.strip()]
    else:
        import augment_data
        try:
            with open(RESULTS_FILE) as fh:
                test = json.load(fh)["split"]["test"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise GlassFileError(f"{RESULTS_FILE}: no train.py split to read the test glasses "
                                 f"from ({type(err).__name__}: {err}); run train.py or name "
                                 "glasses with --GLASSES=a.pkl,b.pkl")
        bases = dict(augment_data.base_files(DATA_DIR))
        missing = [k for k in test if k not in bases]
        if missing:
            raise GlassFileError(f"{RESULTS_FILE}: test glasses {missing} are not in "
                                 f"{DATA_DIR}'s data set (metadata.pkl)")
        paths = [bases[k] for k in test]
    names = [re.sub(r"\.pkl$", "", os.path.basename(p)) for p in paths]
    if len(set(names)) != len(names):
        raise GlassFileError(f"GLASSES: two glasses share a file name ({', '.join(paths)})")
    return list(zip(names, paths))


def result_path(name, direction):
    sign = "p" if direction.strip()[0] == "+" else "m"
    return os.path.join(OUT_DIR, "events", f"{name}_{sign}{direction.strip()[1:]}.pkl")


def existing_result(path):
    """A finished result of the current protocol, or None (missing, unreadable, other protocol)."""
    if not os.path.exists(path):
        return None
    try:
        res = safe_load_pickle(path)
    except GlassFileError:
        return None
    if not (isinstance(res, dict) and res.get("status") and same_value(res.get("protocol"),
                                                                       protocol())):
        return None
    return res


def run_task(task):
    """Shear one glass in one direction and write its result file (atomic)."""
    name, path, direction = task
    snap = load_glass(path)
    res = shear_to_first_event(snap, direction, where=path)
    res.update(glass=name, path=path, protocol=protocol())
    atomic_write_pickle(result_path(name, direction), res)
    return name, direction, res["status"], res.get("event_strain"), res["seconds"]


def _worker_init(overrides):
    """A spawned worker re-imports this script with its defaults: apply the overrides again."""
    globals().update(overrides)
    ggd.enable_compilation_cache(JAX_CACHE_DIR)


@contextlib.contextmanager
def threads_per_worker(n_workers):
    """Spawned workers start with cores / n_workers BLAS threads (OpenBLAS, MKL, OpenMP) and, at
    one, single-threaded XLA ops. Left at their defaults, 2 workers on 2 cores run 4 BLAS and 4
    XLA threads: the last full run so made took 102 s per direction on average, against 59 s in
    bench_rearrangements.py with one pinned process per core (report 12). The environment is
    restored when the pool is done."""
    threads = max(1, (os.cpu_count() or 1) // n_workers)
    keys = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "XLA_FLAGS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: str(threads) for k in keys[:3]})
    if threads == 1:
        os.environ["XLA_FLAGS"] = f"{saved['XLA_FLAGS'] or ''} --xla_cpu_multi_thread_eigen=false"
    try:
        yield threads
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_tasks(tasks, overrides):
    from tqdm import tqdm
    bar = tqdm(total=len(tasks), desc="shear", unit="direction", disable=not SHOW_PROGRESS)
    report = lambda r: tqdm.write(f"  {r[0]} {r[1]}: {r[2]}" + (  # noqa: E731
        f" at strain {r[3]:.5f}" if r[3] is not None else "") + f" ({r[4]:.1f}s)")
    if N_WORKERS <= 1 or len(tasks) <= 1:
        for task in tasks:
            report(run_task(task))
            bar.update(1)
    else:
        ctx, n = mp.get_context("spawn"), min(N_WORKERS, len(tasks))
        with threads_per_worker(n), ctx.Pool(n, initializer=_worker_init,
                                             initargs=(overrides,)) as pool:
            for r in pool.imap_unordered(run_task, tasks):
                report(r)
                bar.update(1)
            pool.close()
            pool.join()
    bar.close()


def glass_indicators(name, path, models, gbt):
    """Indicators of one glass, cached in OUT_DIR/indicators. The cache names what made it (the
    glass file's content, each model file's content (models: scored_models()), the trees'
    training glasses' content), so a retrained model or another split recomputes it instead of
    scoring stale predictions."""
    cache = os.path.join(OUT_DIR, "indicators", f"{name}.pkl")
    stored = safe_load_pickle(cache) if os.path.exists(cache) else None
    made_from = dict(mode_counts=list(MODE_COUNTS), seed=SEED, glass=file_sha256(path),
                     models={k: sha for k, (_, sha) in models.items()},
                     gbt=gbt[1] if gbt is not None else None)
    if isinstance(stored, dict) and same_value(stored.get("made_from"), made_from):
        return stored["values"]
    snap = load_glass(path)
    index = int(re.search(r"(\d+)$", name)[1]) if re.search(r"(\d+)$", name) else 0
    values = indicators_of(snap, seed=SEED * 100003 + index,
                           models={k: m for k, (m, _) in models.items()}, gbt=gbt)
    atomic_write_pickle(cache, dict(values=values, made_from=made_from))
    return values


def write_event_xyz(path, res, snap, indicators):
    """The pre-event minimum in its sheared cell with the non-affine displacement, D2min, true
    softness (the glass's label) and every indicator as columns (OVITO reads it)."""
    cell = res["cell_before"]
    positions = np.mod(res["frac_before"], 1.0) @ cell.T
    names = np.array(["A", "B"])[np.asarray(snap["species"])]
    norm = np.linalg.norm(res["displacement"], axis=1)
    cols = [("nonaffine", res["displacement"]), ("displacement", norm[:, None]),
            ("d2min", res["d2min"][:, None]),
            ("softness_true", np.asarray(snap["softness_score"])[:, None])]
    cols += [(re.sub(r"[^A-Za-z0-9_]", "_", k), v[:, None]) for k, v in indicators.items()]
    if "model" in indicators:
        cols.append(("softness_pred", indicators["model"][:, None]))
    props = "species:S:1:pos:R:3" + "".join(f":{k}:R:{v.shape[1]}" for k, v in cols)
    lattice = " ".join(f"{x:.10f}" for x in cell.T.ravel())      # rows: the cell vectors
    values = np.concatenate([positions] + [v for _, v in cols], axis=1)
    lines = [str(len(names)), f'Lattice="{lattice}" Properties={props} pbc="T T T" '
             f'comment="first event of {res["glass"]} sheared {res["direction"]} at strain '
             f'{res["event_strain"]:.5f}; hit atom {res["hit"]}"']
    lines += [f"{s} " + " ".join(f"{v:.10g}" for v in row) for s, row in zip(names, values)]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def plot_hit_percentiles(table, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, row in sorted(table.items(), key=lambda kv: -kv[1]["hit_percentile"][0]):
        p = np.sort(row["per_event_percentile"])
        m, lo, hi = row["hit_percentile"]
        ax.step(p, np.arange(1, len(p) + 1) / len(p), where="post",
                label=f"{name}: {m:.2f} [{lo:.2f}, {hi:.2f}]")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("percentile rank of the indicator at the hit atom")
    ax.set_ylabel("cumulative share of events")
    ax.set_title("Which indicator finds the first rearrangement?")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarise(glasses):
    """Read every result, score the indicators, write the table, the figure and one event."""
    directions = [d.strip() for d in DIRECTIONS.split(",")]
    results = {(g, d): existing_result(result_path(g, d)) for g, _ in glasses for d in directions}
    missing = [f"{g} {d}" for (g, d), r in results.items() if r is None]
    if missing:
        raise RuntimeError(f"results missing for {missing[:5]}; run again to finish them")
    models = scored_models()
    if GLASSES.strip():
        print("note: GLASSES given, so no train.py split: the trees baseline is not scored")
    gbt = gbt_indicator() if not GLASSES.strip() else None
    indicators = {g: glass_indicators(g, p, models, gbt) for g, p in glasses}
    events = [(g, r) for (g, d), r in results.items() if r["status"] == "yielded"]
    table = score_events(events, indicators)
    strains = np.array([r["event_strain"] for _, r in events])
    statuses = {s: sum(r["status"] == s for r in results.values())
                for s in ("yielded", "no_yield", "fire_failed")}
    summary = dict(
        n_glasses=len(glasses), directions=directions, statuses=statuses,
        not_yielded=[f"{g} {d}: {r['status']} ({r['message']})" for (g, d), r in results.items()
                     if r["status"] != "yielded"],
        event_strain=dict(median=float(np.median(strains)) if len(strains) else None,
                          min=float(strains.min()) if len(strains) else None,
                          max=float(strains.max()) if len(strains) else None),
        seconds_per_direction=float(np.mean([r["seconds"] for r in results.values()])),
        model=MODEL if "model" in models else None,
        model_sha256=models["model"][1] if "model" in models else None,
        more_models={k: dict(file=v, sha256=models[f"model_{k}"][1])
                     for k, v in more_models().items()},
        scores={k: {kk: vv for kk, vv in v.items()
                    if kk not in ("per_event_percentile", "glass_of_event")}
                for k, v in table.items()},
        paired_differences=paired_differences(table),
        protocol=protocol(), constants=constants_of(globals()))
    atomic_write_bytes(os.path.join(OUT_DIR, "rearrangements.json"),
                       json.dumps(summary, indent=2).encode())
    if table:
        plot_hit_percentiles(table, os.path.join(OUT_DIR, "hit_percentile_cdf.png"))
    if events:
        g, res = events[0]
        write_event_xyz(os.path.join(OUT_DIR, "event.xyz"), res, load_glass(dict(glasses)[g]),
                        indicators[g])
    return summary, table


def print_table(summary):
    print(f"{summary['statuses']} over {summary['n_glasses']} glasses; median event strain "
          f"{summary['event_strain']['median']}")
    print(f"{'indicator':<12} {'hit percentile [95%]':<24} {'hit in top 5%':<22} "
          f"{'AUC top 1%':<22}")
    for name, row in sorted(summary["scores"].items(), key=lambda kv: -kv[1]["hit_percentile"][0]):
        f = lambda t: f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"  # noqa: E731
        print(f"{name:<12} {f(row['hit_percentile']):<24} {f(row['hit_in_top']):<22} "
              f"{f(row['top_movers_auc']):<22}")
    if summary.get("paired_differences"):
        print("hit percentile, paired by event (model minus indicator) [by-glass 95%]:")
        for name, t in summary["paired_differences"].items():
            print(f"  {name:<24} {t[0]:+.3f} [{t[1]:+.3f}, {t[2]:+.3f}]")


def main(argv=None):
    overrides = apply_overrides(globals(), argv)
    ggd.enable_compilation_cache(JAX_CACHE_DIR)
    t0 = time.perf_counter()
    try:
        glasses = glass_list()
        more_models()
        directions = [d.strip() for d in DIRECTIONS.split(",")]
        for d in directions:
            parse_direction(d)
        for name, path in glasses:            # refuse a too-small box before any work
            snap = load_glass(path)
            check_sheared_minimum_image(float(snap["box_size"]),
                                        float(snap["parameters"]["r_cutoff"]), MAX_STRAIN, path)
    except (GlassFileError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    tasks = [(g, p, d) for g, p in glasses for d in directions
             if existing_result(result_path(g, d)) is None]
    print(f"{len(glasses)} glasses x {len(directions)} directions: "
          f"{len(glasses) * len(directions) - len(tasks)} done, {len(tasks)} to run with "
          f"{min(N_WORKERS, max(len(tasks), 1))} worker(s) -> {OUT_DIR}", flush=True)
    if tasks:
        run_tasks(tasks, overrides)
    summary, _ = summarise(glasses)
    print_table(summary)
    print(f"wrote {os.path.join(OUT_DIR, 'rearrangements.json')}, hit_percentile_cdf.png, "
          f"event.xyz in {time.perf_counter() - t0:.1f}s")
    return summary


if __name__ == "__main__":
    main()
