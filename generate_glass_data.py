"""One Kob-Andersen glass, its inherent structure and its softness labels.

Method (seed README, "Generate Glass Configurations"), in Lennard-Jones reduced units
(lengths in sigma_AA, energies in epsilon_AA, temperature in epsilon_AA/k_B, time in the
Brownian unit tau_B = gamma sigma_AA^2 / epsilon_AA):

  1. untangle       gradient descent on soft spheres from random positions (removes overlaps)
  2. lj_descent     gradient descent on the Lennard-Jones energy (pre-hardening)
  3. heat           Brownian dynamics at T = TEMPERATURE for HEAT_STEPS
  4. quench         Brownian dynamics with T ramped linearly to 0 over QUENCH_STEPS
  5. FIRE           minimisation to the inherent structure, max|F| < FORCE_TOL (float64)
  6. Hessian        sparse 3N x 3N Hessian -> lowest modes -> softness S_i; local 3x3 blocks D_i

Outputs DATA_DIR/OUTPUT_FILE (default data/glass_data_1k.pkl for N = 1000, glass_data_10k.pkl
for 10^4) in the seed's schema.
Run `python generate_glass_data.py --help` for the constants; override any with --NAME=value
or --NAME value.
"""
import dataclasses
import os
import time
import warnings
from functools import partial

import numpy as np

from glass_io import (apply_overrides, atomic_write_pickle, constants_of, exit_on_help,
                      jax_cache_dir_before_overrides, or_constants, record_wall_time,
                      validate_snapshot)

# ================================ constants ====================================================
# --- system (Kob & Andersen, PRE 51, 4626 (1995)) ---
N_ATOMS = 1000                  # atoms
DENSITY = 1.2                   # number density, atoms / sigma_AA^3
SPECIES_RATIO = 0.8             # fraction of A atoms (KA 80:20)
SIGMA = ((1.0, 0.8), (0.8, 0.88))     # sigma_ab, sigma_AA units   [[AA, AB], [BA, BB]]
EPSILON = ((1.0, 1.5), (1.5, 0.5))    # epsilon_ab, epsilon_AA units
R_ONSET = 2.0                   # start of the C1 smoothing, in units of max(sigma) (jax-md's convention)
R_CUTOFF = 2.5                  # potential is exactly zero beyond, in units of max(sigma)
SEED = 0                        # seeds positions, species and Brownian noise

# --- protocol ---
UNTANGLE_STEPS = 300            # soft-sphere gradient-descent steps
UNTANGLE_STEP_SIZE = 0.1        # sigma^2/epsilon; soft-sphere forces are O(1), so 0.1 removes overlaps fast
LJ_DESCENT_STEPS = 500          # LJ gradient-descent steps
LJ_DESCENT_STEP_SIZE = 1e-3     # sigma^2/epsilon; < 2/k_max with k_max ~ 1e3 the stiffest LJ curvature
MAX_MOVE = 0.02                 # sigma; per-atom cap on a descent step (the few pairs the soft spheres
                                # leave at r ~ 0.9 sigma have LJ forces ~1e2 and curvatures ~1e4)
TEMPERATURE = 0.44              # heating temperature (epsilon/k_B), just above KA's T_MCT = 0.435
HEAT_STEPS = 2000               # Brownian steps at TEMPERATURE: 0.4 tau_B, several cage times
                                # (sigma^2 * 0.01 / (2 T/GAMMA) ~ 0.01 tau_B); E/N plateaus within it
QUENCH_STEPS = 7000             # Brownian steps of the linear ramp TEMPERATURE -> 0
DT = 2e-4                       # Brownian time step (tau_B). The Euler-Maruyama drift F*DT/GAMMA is
                                # stable only while DT*k/GAMMA < 2; the inherent structure's largest
                                # Hessian eigenvalue is ~1.8e3, and thermal collisions at T=0.44 are
                                # stiffer still: measured, DT=5e-4 blows up within 500 steps and
                                # 2e-4 is stable (E/N plateaus at -7.23 while heating).
BROWNIAN_MAX_DT_LAMBDA = 1.5    # keep DT lambda_max / GAMMA below this (Euler-Maruyama's limit is 2):
                                # a stiffer glass (lambda_max measured after the LJ descent) is heated
                                # and quenched with DT/m over m times the steps, the same Brownian
                                # time; the default KA glass has DT lambda_max / GAMMA ~ 0.4 (m = 1)
GAMMA = 1.0                     # friction (mass/tau_B). jax-md's default 0.1 with the seed's dt=1e-3
                                # gives DT/GAMMA = 1e-2, twenty times past the stability limit.
FIRE_DT_START = 0.005           # FIRE initial step (tau, unit mass)
FIRE_DT_MAX = 0.02              # FIRE largest step; velocity Verlet needs dt < 2/omega_max = 0.047
                                # (lambda_max ~ 1.8e3); jax-md's default 0.4 diverges (measured)
FIRE_MAX_DT_OMEGA = 1.0         # keep FIRE_DT_MAX * omega_max below this (half the Verlet limit 2):
                                # a stiffer glass (compressed: rho sigma^3 up to 1.7 in the diverse
                                # ranges) gets a FIRE mass m = (FIRE_DT_MAX omega_max / this)^2 > 1,
                                # omega_max^2 = lambda_max of the Hessian at the quenched state.
                                # Unit mass otherwise (the default KA glass: dt omega = 0.85).
FORCE_TOL = 1e-10               # inherent structure reached when max_i |F_i| < FORCE_TOL (epsilon/sigma)
MAX_FIRE_STEPS = 50000          # not converging within this many steps is an error
CHUNK_STEPS = 1000              # steps per compiled chunk (progress, overflow checks)
SHOW_PROGRESS = True            # tqdm bar per phase (the parallel script turns it off in workers)

# --- neighbour lists: radius r_cutoff + skin, rebuilt when an atom has moved skin/2 ---
SKIN_DYNAMICS = 0.8             # sigma; thermal vibrations at T=0.44 reach ~0.25 sigma over 3000
                                # coordinates, so a smaller skin rebuilds every few steps
                                # (measured: 6 ms/step at skin 0.5, 3 ms/step at 0.8)
SKIN_MINIMIZE = 0.3             # sigma; descents and FIRE move little, a short list is cheaper
CAPACITY_MARGIN = 1.2           # head-room of the pair buffer above the pairs found at allocation
NEIGHBOUR_LIST = "kdtree"       # how the list is rebuilt: "kdtree", scipy's periodic k-d tree on the
                                # host between compiled chunks, O(N log N); "jax", jax-md's
                                # brute force, O(N^2) time and memory (7 GB at N = 10^4). The same
                                # pairs in the same order, so the same glass bit for bit (tested)
FORCE_KERNEL = "dense_r2"       # how the compiled phases get forces: "dense_r2", explicit pair
                                # forces on a Dense list (N x neighbours, every pair in both rows):
                                # a gather and a sum along the rows, no scatter, twice the pairs,
                                # the smoothed LJ's (dE/dr)/r in closed form in r^2 (no square
                                # root, one division per pair; smoothed_lj_force_over_r);
                                # "dense", the same sums differentiating jax-md's pair function at
                                # r (the default from Nov 2026 to 2026-12-05: the glasses of
                                # runs/pipeline_69c5be4; forces 1.4x slower in float64, 1.15x in
                                # float32, FIRE 1.5x slower at N = 1000, report 13.4);
                                # "grad", -jax.grad of the pair energy on a half (OrderedSparse)
                                # list, whose backward pass is a scatter-add (slow in XLA on CPU;
                                # the default until Nov 2026: 2.6x slower generation, report 13.4).
                                # The same potential summed in another order: the glass differs by
                                # round-off, so the kernel is recorded in the protocol unless it is
                                # "grad" (glasses made before the flip keep their protocol hash)
FORCE_BLOCK_ROWS = 128          # atoms; the dense kernel sums a system of more than
                                # FORCE_ONE_BLOCK_MAX_ATOMS atoms in blocks of this many rows of
                                # its list (lax.map), so that each block's (3, rows, neighbours)
                                # planes stay in cache: one force call at N = 10^4 takes 10.7 ms
                                # instead of 32.6 (float32; 13.6 vs 48.1 float64; one core,
                                # bench_force_blocks.py, report 13.4). Round-off differs from the
                                # one-block sum (~1e-14 relative in float64), so a blocked glass
                                # is another glass: recorded in the protocol when it applies
FORCE_ONE_BLOCK_MAX_ATOMS = 2000    # atoms; up to this size the forces are one block, as every
                                # glass made before 2026-12-04 (the 1000-atom sets bit for bit)

# --- Hessian and labels ---
N_SOFT_MODES = 10               # softness sums |v_k(i)|^2 over modes 4..13 (seed); sum_i S_i = N_SOFT_MODES
N_ZERO_MODES = 3                # global translations of a periodic box
ZERO_MODE_TOL = 1e-6            # |lambda| below this counts as a zero mode (epsilon/sigma^2)
DENSE_EIGH_MAX_ATOMS = 400      # up to this N use dense eigh, above it sparse shift-invert eigsh
EIGSH_SHIFT = -0.1              # shift-invert target below the spectrum (H is PSD at a minimum)
ND_LEAF_ATOMS = 64              # atoms; nested dissection (sparse path) stops cutting pieces this
                                # small: their frontal matrices are dense anyway (16..256 measured
                                # at N = 10^4: the same fill and flops within 6%)
MIN_PAIR_DISTANCE = 0.6         # sigma_AA; a closer pair in the inherent structure is an overlap

# --- files ---
DATA_DIR = "data"               # folder of the output (created if missing)
OUTPUT_FILE = "glass_data_{size}.pkl"   # the snapshot written into DATA_DIR; {size} is N_ATOMS as
                                # 1k, 10k, ... or 256 (the seed's glass_data_1k.pkl at N = 1000)
JAX_CACHE_DIR = ".jax_cache"    # persistent XLA compilation cache ("" disables)

exit_on_help(globals())             # --help lists the constants above without importing jax

# ================================ JAX set-up ====================================================
# float64 is needed for FIRE to reach 1e-10 and for the Hessian; the stochastic phases run in
# float32 explicitly (half the memory traffic, and their noise dwarfs float32 rounding).
import jax                                            # noqa: E402
jax.config.update("jax_enable_x64", True)
# jax-md's neighbour-list scatter mixes int64 and int32 indices under x64; harmless, but noisy.
warnings.filterwarnings("ignore", message="scatter inputs have incompatible types")
import jax.numpy as jnp                               # noqa: E402
from jax import lax                                   # noqa: E402
from jax.experimental.compilation_cache import compilation_cache   # noqa: E402


def enable_compilation_cache(cache_dir, min_compile_seconds=0.5):
    """Keep compiled XLA programs on disk (in `cache_dir`; "" turns the cache off) so a second
    run (or worker) skips compilation; programs that compile faster than `min_compile_seconds`
    are not kept. JAX opens its cache folder once, at the first compilation after it is set: a
    change of folder resets it, or the old one would silently stay in use."""
    path = os.path.abspath(cache_dir) if cache_dir else None
    if jax.config.jax_compilation_cache_dir != path:
        jax.config.update("jax_compilation_cache_dir", path)
        compilation_cache.reset_cache()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)


# Importing jax-md compiles ~120 tiny XLA programs (rigid_body's module-level shapes, op by op):
# 4 of its 8-11 s on our 2-core machine. When this run's cache folder exists they are read from
# it (every program kept, however fast); then the cache is off again until main() (or a library
# caller) turns on the one it was asked for, with the usual threshold.
_IMPORT_CACHE = jax_cache_dir_before_overrides(globals())    # applies --JAX_CACHE_DIR itself
if _IMPORT_CACHE:
    enable_compilation_cache(_IMPORT_CACHE, min_compile_seconds=0)
from jax_md import energy, minimize, partition, quantity, simulate, smap, space   # noqa: E402
if _IMPORT_CACHE:
    enable_compilation_cache("")
import scipy.sparse                                   # noqa: E402
import scipy.sparse.linalg                            # noqa: E402
from scipy.spatial import cKDTree                     # noqa: E402

# the sparse direct solver of lowest_modes' shift-invert; every name re-exported (ggd.X callers)
from nested_dissection import (MultifrontalCholesky, atom_graph, extend_add,  # noqa: E402, F401
                               nested_dissection_order, nested_dissection_tree, vertex_separator)


# ================================ the system ====================================================
def box_length(n_atoms, density):
    return float((n_atoms / density) ** (1.0 / 3.0))


def absolute_cutoffs(sigma):
    """jax-md's lennard_jones_* multiply r_onset/r_cutoff by max(sigma); we do the same, once,
    and store and use the absolute distances."""
    s = float(np.max(sigma))
    return R_ONSET * s, R_CUTOFF * s


def check_minimum_image(n_atoms, density, r_cut):
    """A box narrower than 2 r_cut lets an atom see two images of a neighbour: refuse it."""
    if not (isinstance(n_atoms, (int, np.integer)) and n_atoms > 0 and density > 0):
        raise ValueError(f"N_ATOMS={n_atoms!r} and DENSITY={density!r} must be positive")
    box = box_length(n_atoms, density)
    if box <= 2.0 * r_cut:
        n_min = int(np.ceil(density * (2.0 * r_cut) ** 3)) + 1
        raise ValueError(f"N_ATOMS={n_atoms} at density {density} gives a box of {box:.3f} sigma, "
                         f"not wider than twice the cutoff ({2 * r_cut:.3f}); the minimum-image "
                         f"convention would fail. Use N_ATOMS >= {n_min} at this density.")
    return box


def assign_species(n_atoms, species_ratio, rng):
    """N_A = round(ratio * N) atoms of type A (0), the rest B (1), in random order."""
    n_a = int(round(species_ratio * n_atoms))
    species = np.ones(n_atoms, np.int32)
    species[:n_a] = 0
    return rng.permutation(species).astype(np.int32)


def smoothed_lj(r_onset, r_cutoff):
    """jax-md's LJ times the C1 (HOOMD) switch S(r): S=1 below r_onset, 0 beyond r_cutoff.

    Python-float cut-offs become float64 arrays first: jax-md squares them as `r ** f32(2)`,
    which for a (weakly typed) Python float rounds r^2 to float32 and, unless r is exact in
    binary (sigma scaled by 1.06, say), shifts the forces by ~1e-7 (measured): enough to fail
    the 1e-10 force check."""
    strong = lambda r: r if isinstance(r, jax.Array) else jnp.asarray(r, jnp.float64)  # noqa
    pair = energy.multiplicative_isotropic_cutoff(energy.lennard_jones, strong(r_onset),
                                                  strong(r_cutoff))
    pair.force_over_r = smoothed_lj_force_over_r(strong(r_onset), strong(r_cutoff))
    return pair


def smoothed_lj_force_over_r(r_onset, r_cutoff):
    """(dE/dr) / r of smoothed_lj's pair energy E = phi S as a closed form in u = r^2, for the
    "dense_r2" kernel: F_i = sum_j (dE/dr / r) r_ij needs neither r nor a division by it.
    With a = sigma^2 / u: phi = 4 eps (a^6 - a^3), dphi/du = -12 eps (2 a^6 - a^3) / u; the HOOMD
    switch is a cubic in u, S = (rc^2 - u)^2 (rc^2 + 2u - 3 ro^2) / (rc^2 - ro^2)^3 between the
    onset and the cut-off, dS/du = 6 (rc^2 - u)(ro^2 - u) / (rc^2 - ro^2)^3; and dE/dr / r =
    2 dE/du = 2 (dphi/du S + phi dS/du), zero beyond the cut-off (jax-md's expressions, checked
    against the forward-mode derivative of smoothed_lj in tests/test_force_kernel.py)."""
    ro2, rc2 = r_onset ** 2, r_cutoff ** 2
    scale = 1 / (rc2 - ro2) ** 3

    def force_over_r(u, sigma, epsilon):
        inv = 1 / u
        a3 = (sigma * sigma * inv) ** 3
        a6 = a3 * a3
        phi = 4 * epsilon * (a6 - a3)
        dphi = -12 * epsilon * (2 * a6 - a3) * inv
        w = rc2 - u
        switch = jnp.where(u < ro2, 1, w * w * (rc2 + 2 * u - 3 * ro2) * scale)
        dswitch = jnp.where(u < ro2, 0, 6 * w * (ro2 - u) * scale)
        return jnp.where(u < rc2, 2 * (dphi * switch + phi * dswitch), 0)

    return force_over_r


def soft_sphere_pair(dr, sigma, epsilon, **unused):
    """Harmonic soft sphere (eps/2)(1 - r/sigma)^2 for r < sigma, used only to untangle."""
    return energy.soft_sphere(dr, sigma=sigma, epsilon=epsilon, alpha=2)


def neighbor_list_fn(box, r_list, skin):
    """A neighbour list of the cubic box, radius r_list + skin, rebuilt when an atom has moved
    skin/2: half (OrderedSparse) for FORCE_KERNEL "grad" (jax.grad of the energy costs 2 ms at
    N = 1000 on it against 3.5-4 ms on a Dense list), Dense for "dense"."""
    return NeighbourList(box, r_list, skin)


_FORMATS = {"grad": partition.OrderedSparse, "dense": partition.Dense,      # FORCE_KERNEL -> list
            "dense_r2": partition.Dense}


def list_format(kernel=None):
    """jax-md's neighbour-list format the force kernel (None: FORCE_KERNEL, read now) computes
    forces on (read at allocation, on the host: the format is a static field of the list, so the
    compiled phases follow it)."""
    kernel, = or_constants(globals(), force_kernel=kernel)
    if kernel not in _FORMATS:
        raise ValueError(f"FORCE_KERNEL={kernel!r}: expected one of {tuple(_FORMATS)}")
    return _FORMATS[kernel]


def sorted_pair_keys(first, second, n_atoms, both_ways=False):
    """Sorted keys first * N + second of the pairs (first[k], second[k]) (both_ways: of
    (second[k], first[k]) as well): sorting one integer key orders pairs by `first`, then
    `second`, with neither an argsort nor the gathers that apply one. int32 while N^2 fits
    (N <= 46340). At N = 10^4 (1.1M keys) numpy's AVX-512 sort takes a few ms, where the two
    stable argsorts of 16-bit keys and the gathers it replaced took most of a Dense rebuild
    (docs/report.md 13.4)."""
    kind = np.int32 if n_atoms * n_atoms < 2 ** 31 else np.int64
    first, second, n = np.asarray(first, kind), np.asarray(second, kind), kind(n_atoms)
    key = first * n + second
    if both_ways:
        key = np.concatenate([key, second * n + first])
    key.sort()
    return key


def ordered_pairs(position, box, r_list, capacity=None):
    """The pairs jax-md's brute-force OrderedSparse list holds, in its order: rows (receiver j,
    sender i), j < i, |r_ij| < r_list under periodic boundaries, sorted by sender then receiver,
    padded with N up to `capacity` (None: exactly the pairs found); and how many there are (more
    than capacity: overflow). Found by scipy's periodic k-d tree in float64: a pair within
    rounding of r_list may be kept or not, which changes no force (it lies a skin beyond the
    potential's cut-off)."""
    pos = np.asarray(position, np.float64)
    n = len(pos)
    pairs = periodic_pairs(pos, float(box), float(r_list))
    capacity = len(pairs) if capacity is None else int(capacity)
    key = sorted_pair_keys(pairs.max(axis=1), pairs.min(axis=1), n)[:capacity]
    idx = np.full((2, capacity), n, np.int32)
    idx[1, :len(key)], idx[0, :len(key)] = np.divmod(key, n)
    return idx, np.int32(len(pairs))


def dense_neighbours(position, box, r_list, capacity=None):
    """The rows jax-md's brute-force Dense list holds: row i lists the atoms j != i with
    |r_ij| < r_list under periodic boundaries in increasing order (every pair in both rows),
    padded with N up to `capacity` columns (None: the longest row); and the longest row's length
    (more than capacity: overflow). The same k-d tree search as ordered_pairs; each pair enters
    as (i, j) and (j, i), ordered by row, then column (sorted_pair_keys); row i's entries start
    where key i * N would be inserted, and an entry's slot is its place in its row."""
    pos = np.asarray(position, np.float64)
    n = len(pos)
    key = sorted_pair_keys(*periodic_pairs(pos, float(box), float(r_list)).T, n, both_ways=True)
    kind = key.dtype.type
    starts = np.searchsorted(key, np.arange(n + 1, dtype=kind) * kind(n))
    counts = np.diff(starts)
    longest = int(counts.max(initial=0))
    capacity = longest if capacity is None else int(capacity)
    offset = np.arange(len(key), dtype=kind) - np.repeat(starts[:-1].astype(kind), counts)  # slot
    row = np.repeat(np.arange(n, dtype=kind), counts)
    col = key - row * kind(n)
    idx = np.full((n, capacity), n, np.int32)
    if capacity >= longest:             # every entry fits: one flat scatter
        idx.reshape(-1)[row * kind(capacity) + offset] = col
    else:                               # overflow: keep each row's first `capacity`
        kept = offset < capacity
        idx[row[kept], offset[kept]] = col[kept]
    return idx, np.int32(longest)


_KDTREE = "kdtree"      # marks a list built on the host (a static field: part of jit's key)
_HOST_BUILD = {partition.OrderedSparse: ordered_pairs, partition.Dense: dense_neighbours}


class NeighbourList:
    """jax-md's neighbour-list functions for the cubic box (allocate; update_or_stale inside
    the compiled loop; rebuild between chunks). NEIGHBOUR_LIST
    chooses how a list is built: "jax", jax-md's brute force, O(N^2) in time and memory; or
    "kdtree", ordered_pairs (dense_neighbours) on the host, O(N log N): the compiled loop checks,
    as jax-md does, whether an atom moved more than skin/2 since the last build, and if so stops
    there for run_phase to rebuild the list on the host and go on. Either way the list is
    jax-md's NeighborList with the same pairs in the same order, so the energy functions use it
    unchanged and the glass is the same bit for bit (tests/test_glass_physics.py,
    test_force_kernel.py); its format (OrderedSparse
    or Dense) follows FORCE_KERNEL at allocation, and update_or_stale and rebuild follow the kind
    and format of list they are given."""

    def __init__(self, box, r_list, skin):
        self.displacement, _ = space.periodic(box)
        self.box, self.r_list, self.skin = box, r_list, skin
        self.metric_sq = jax.vmap(lambda a, b: jnp.sum(self.displacement(a, b) ** 2))
        self.threshold_sq = (skin / jnp.float32(2)) ** 2        # jax-md's own expression

    def jax_md(self, fmt):
        return partition.neighbor_list(self.displacement, self.box, self.r_list, self.skin,
                                       format=fmt, disable_cell_list=True,
                                       capacity_multiplier=1.0)

    def allocate(self, position):
        fmt = list_format()
        if NEIGHBOUR_LIST == "jax":
            return self.jax_md(fmt).allocate(position)
        if NEIGHBOUR_LIST != _KDTREE:
            raise ValueError(f"NEIGHBOUR_LIST={NEIGHBOUR_LIST!r}: expected 'kdtree' or 'jax'")
        idx, n_found = _HOST_BUILD[fmt](position, self.box, self.r_list + self.skin)
        return partition.NeighborList(
            idx=jnp.asarray(idx), reference_position=position,
            error=partition.PartitionError(jnp.zeros((), jnp.uint8)), cell_list_capacity=None,
            max_occupancy=int(n_found), format=fmt, cell_size=None,
            cell_list_fn=None, update_fn=_KDTREE)

    def update_or_stale(self, position, nbrs):
        """One step of the compiled loop: (list, stale). A jax-md list is updated there (jax-md's
        brute force rebuilds it when an atom has moved skin/2) and is never stale; a k-d tree list
        is returned as it is, stale when an atom has moved skin/2, and the loop stops so that
        run_phase rebuilds it on the host (rebuild) before the next step: the same list at the
        same step as a rebuild inside the loop, so the same trajectory. No host callback runs
        inside a compiled loop: one (jax.pure_callback) deadlocked on one pinned core at 10^4
        atoms (docs/report.md 13.4)."""
        if nbrs.update_fn != _KDTREE:
            return self.jax_md(nbrs.format).update(position, nbrs), jnp.bool_(False)
        moved = jnp.any(self.metric_sq(position, nbrs.reference_position) > self.threshold_sq)
        return nbrs, moved

    def rebuild(self, position, nbrs):
        """On the host, between compiled chunks: the list of `position` in the format and buffer
        of nbrs, built at that size (one copy to the device), or a larger buffer if its pairs no
        longer fit."""
        capacity = nbrs.idx.shape[1]
        if nbrs.update_fn == _KDTREE:
            idx, n_found = _HOST_BUILD[nbrs.format](position, self.box, self.r_list + self.skin,
                                                    capacity)
            if n_found <= capacity:
                return dataclasses.replace(nbrs, idx=jnp.asarray(idx), reference_position=position)
        return allocate_neighbors(self, position, capacity)


def dense_pair_forces(pair, box, cell=None, block_rows=0, force_over_r=None):
    """Forces in the cubic box on a Dense list: F_i = sum_j phi'(|r_ij|) r_ij / |r_ij| over row i,
    r_ij = R_j - R_i (minimum image), phi' by forward-mode differentiation of the same pair
    function, sigma and epsilon of the slot's species pair. A gather and a sum along the rows:
    every pair is evaluated twice, but nothing is scattered (jax.grad of the energy on a half
    list scatter-adds each pair's force onto its two atoms, which XLA on CPU does slowly).
    Written for XLA's CPU loops: coordinates as three (N, M) planes (not (N, M, 3), whose
    3-wide inner axis does not vectorise), the periodic wrap by rounding (jax-md's jnp.mod is a
    slow fmod) and the species pair's parameters by selects on each atom's row of the tables
    (not a 2-d gather per slot): 3-4x faster at N = 256 than the same sums written on (N, M, 3)
    arrays with jax-md's displacement and parameter look-ups (measured, one core).
    With `cell` (a general periodic cell T, columns the cell vectors: aqs_shear.py's sheared
    box) the positions are fractions s and r_ij = T (s_ij - round(s_ij)), still in planes;
    the forces are real-space ones (what FIRE's velocities are).
    With block_rows > 0 the rows are summed block_rows at a time (lax.map over blocks; the last
    block padded with empty rows): the same sums, but each block's planes fit in cache, where
    at N = 10^4 the whole (3, N, M) planes stream through memory (FORCE_BLOCK_ROWS).
    With force_over_r(u, sigma, epsilon) (the "dense_r2" kernel: smoothed_lj_force_over_r) the
    pair term dE/dr / r comes from r^2 in closed form instead of differentiating `pair` at
    r = sqrt(r^2) and dividing by r."""

    def minimum_image(x, x_i, idx):                     # r_ij as three (rows, M) planes
        d = x[:, idx] - x_i[:, :, None]
        if cell is None:
            return d - box * jnp.round(d / box)
        d = d - jnp.round(d)
        return jnp.stack([sum(cell[a, b] * d[b] for b in range(3)) for a in range(3)])

    def row_forces(x, species, sigma, epsilon, x_i, s_i, idx):
        """F_i of the rows whose positions are x_i (3, rows), species s_i, list rows idx."""
        mask = idx < x.shape[1]                         # padding is N, as in jax-md
        dr = minimum_image(x, x_i, idx)                 # r_ij, (3, rows, M)
        r_sq = jnp.where(mask, dr[0] ** 2 + dr[1] ** 2 + dr[2] ** 2, 1)          # padding: 1
        s_j = species[idx]

        def of_pair(table):                             # table[s_i, s_j] per slot
            row = table[s_i]                            # (rows, n_species)
            return sum(jnp.where(s_j == b, row[:, b, None], 0) for b in range(table.shape[1]))

        if force_over_r is not None:
            g = force_over_r(r_sq, sigma=of_pair(sigma), epsilon=of_pair(epsilon))
            return jnp.sum(jnp.where(mask, g, 0) * dr, axis=2).T
        r = jnp.sqrt(r_sq)
        _, dphi = jax.jvp(lambda d: pair(d, sigma=of_pair(sigma), epsilon=of_pair(epsilon)),
                          (r,), (jnp.ones_like(r),))
        return jnp.sum(jnp.where(mask, dphi / r, 0) * dr, axis=2).T

    def forces(position, neighbor, species, sigma, epsilon, **unused):
        x, idx = position.T, neighbor.idx
        n = x.shape[1]
        if not 0 < block_rows < n:                      # one block: the whole list
            return row_forces(x, species, sigma, epsilon, x, species, idx)
        n_blocks = -(-n // block_rows)
        pad = n_blocks * block_rows - n                 # empty rows: every slot is padding
        rows = jnp.pad(jnp.arange(n), (0, pad)).reshape(n_blocks, block_rows)
        idx = jnp.pad(idx, ((0, pad), (0, 0)), constant_values=n).reshape(n_blocks, block_rows,
                                                                          -1)
        per_block = jax.lax.map(lambda b: row_forces(x, species, sigma, epsilon, x[:, b[0]],
                                                     species[b[0]], b[1]), (rows, idx))
        return per_block.reshape(n_blocks * block_rows, -1)[:n]

    return forces


def force_block_rows(n_atoms):
    """Rows per block of the dense kernel's force sum for a system of n_atoms (0: one block),
    read when a phase starts (a static argument of the compiled phases, so an override counts)."""
    return FORCE_BLOCK_ROWS if n_atoms > FORCE_ONE_BLOCK_MAX_ATOMS else 0


def force_statics(n_atoms, kernel=None):
    """The static arguments of the compiled phases that choose how a system of n_atoms sums its
    forces: the kernel (None: FORCE_KERNEL, read now, so an override counts; jit would keep the
    first value it traced if the phases read the constant themselves) and its block_rows."""
    kernel, = or_constants(globals(), force_kernel=kernel)
    list_format(kernel)                                 # an unknown kernel stops here
    return dict(kernel=kernel, block_rows=force_block_rows(n_atoms))


def pair_forces(pair, box, cell, kernel, block_rows):
    """The forces a Dense list's kernel computes (dense_pair_forces): "dense_r2" takes the pair's
    closed form in r^2 where it has one (smoothed_lj; the soft spheres of the untangling have
    none and are differentiated, as with "dense")."""
    closed = getattr(pair, "force_over_r", None) if kernel == "dense_r2" else None
    return dense_pair_forces(pair, box, cell, block_rows, closed)


def _system(box, r_list, skin, pair, kernel, block_rows):
    """Shift, neighbour list and pair energy for a (traced) box. The energy function, given a
    Dense list (FORCE_KERNEL "dense" or "dense_r2"), returns the forces instead (in blocks of
    block_rows rows, see dense_pair_forces): jax-md's integrators and
    quantity.canonicalize_force take either, and the list's format is static under jit."""
    displacement, shift = space.periodic(box)
    metric = space.canonicalize_displacement_or_metric(displacement)
    return shift, neighbor_list_fn(box, r_list, skin), energy_or_forces(
        smap.pair_neighbor_list(pair, metric), pair_forces(pair, box, None, kernel, block_rows))


def energy_or_forces(energy_fn, forces_fn):
    """The pair energy on a half (OrderedSparse) list, the forces on a Dense one: the list's
    format is static under jit, so each compiled phase takes one branch."""

    def energy_or_forces(position, neighbor, **kwargs):
        if neighbor.format is partition.Dense:
            return forces_fn(position, neighbor, **kwargs)
        return energy_fn(position, neighbor=neighbor, **kwargs)

    return energy_or_forces


# ================================ neighbour-list bookkeeping =====================================
def _bucket(n_pairs):
    """Round a pair capacity up to a coarse geometric grid (ratio 2^(1/4)), so glasses of similar
    size share one compiled program instead of compiling one each."""
    k = np.ceil(4 * np.log2(max(n_pairs, 1024)))
    return int(1024 * np.ceil(2 ** (k / 4) / 1024))


def _row_bucket(n_neighbours, n_atoms):
    """The same for the rows of a Dense list: neighbours per atom rounded up to a multiple of 8 on
    a finer grid (ratio 2^(1/8): every slot of every row is computed), at most N - 1 (jax-md's
    limit; no atom has more neighbours)."""
    k = np.ceil(8 * np.log2(max(n_neighbours, 32)))
    return int(min(n_atoms - 1, 8 * np.ceil(2 ** (k / 8) / 8)))


def _capacity(nbrs, n_slots):
    """The bucketed buffer for n_slots entries of a list like nbrs (pairs, or neighbours per
    atom)."""
    if nbrs.format is partition.Dense:
        return _row_bucket(n_slots, nbrs.idx.shape[0])
    return _bucket(n_slots)


def allocate_neighbors(neighbor_fn, positions, capacity=None):
    """Build a neighbour list whose buffer has a bucketed capacity (a static shape under jit).

    jax-md sizes the buffer from the pairs found times a multiplier; we build it at exact size
    and pad the pair buffer (a Dense list: each row; index N marks an empty slot, as in jax-md) to
    the bucketed capacity.
    The closures jax-md stores as static fields are dropped so the list is a plain pytree whose
    jit cache key depends only on its shapes.
    """
    nbrs = neighbor_fn.allocate(positions)
    if capacity is None:
        capacity = _capacity(nbrs, int(np.ceil(nbrs.max_occupancy * CAPACITY_MARGIN)))
    n_found = nbrs.idx.shape[1]
    if capacity < n_found:
        capacity = _capacity(nbrs, int(np.ceil(n_found * CAPACITY_MARGIN)))
    idx = jnp.asarray(np.pad(np.asarray(nbrs.idx), ((0, 0), (0, capacity - n_found)),
                             constant_values=len(positions)))        # numpy: no compile per size
    return dataclasses.replace(nbrs, idx=idx, max_occupancy=capacity, cell_list_fn=None,
                               update_fn=nbrs.update_fn if nbrs.update_fn == _KDTREE else None)


def _size(nbrs):
    """A list's buffer in words: pairs (OrderedSparse) or neighbours per atom (Dense)."""
    unit = "neighbours per atom" if nbrs.format is partition.Dense else "pairs"
    return f"{nbrs.idx.shape[1]} {unit}"


def run_phase(chunk_fn, state, system, r_list, skin, n_steps, label, done=None):
    """Run `chunk_fn(state, nbrs, step0, n) -> (state, nbrs, steps run, stale)` over n_steps
    (run_chunks) on a neighbour list allocated here, with a progress bar. Returns (state, steps
    run)."""
    from tqdm import tqdm
    neighbor_fn = neighbor_list_fn(system["box"], r_list, skin)
    nbrs = allocate_neighbors(neighbor_fn, state.position)
    with tqdm(total=n_steps, desc=label, unit="step", leave=False, mininterval=1.0,
              disable=not SHOW_PROGRESS) as bar:
        state, _, step = run_chunks(chunk_fn, state, nbrs, neighbor_fn, n_steps, label, done,
                                    bar.update)
    return state, step


def run_chunks(chunk_fn, state, nbrs, neighbor_fn, n_steps, label="", done=None, progress=None):
    """The host loop of every compiled phase (and of aqs_shear's FIRE): chunk_fn over n_steps in
    chunks of at most CHUNK_STEPS, from `state` on the list `nbrs` of `neighbor_fn`.

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
        n = min(CHUNK_STEPS, n_steps - step)
        new_state, new_nbrs, ran, stale = chunk_fn(state, nbrs, step, n)
        if bool(new_nbrs.did_buffer_overflow):
            bigger = _capacity(nbrs, int(nbrs.idx.shape[1] * 1.5))
            nbrs = allocate_neighbors(neighbor_fn, state.position, bigger)
            if label:
                tqdm.write(f"  {label}: neighbour buffer overflowed, reallocated to {_size(nbrs)}")
            continue
        state, nbrs = new_state, new_nbrs
        step += int(ran)
        if progress is not None:
            progress(int(ran))
        if bool(stale):
            capacity = nbrs.idx.shape[1]
            nbrs = neighbor_fn.rebuild(state.position, nbrs)
            if nbrs.idx.shape[1] != capacity and label:
                tqdm.write(f"  {label}: neighbour buffer outgrown, reallocated to {_size(nbrs)}")
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
    shift, neighbor_fn, energy_fn = _system(params["box"], params["r_list"], skin, pair,
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
    shift, neighbor_fn, energy_fn = _system(params["box"], params["r_list"], skin,
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
    runs on here (aqs_shear.py passes its sheared cell's instead)."""
    return _system(params["box"], params["r_list"], skin,
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


# ================================ the protocol ===================================================
def _params(system, dtype, **extra):
    """Traced parameters of one glass in the working precision of a phase."""
    p = {k: jnp.asarray(v, dtype) for k, v in system.items() if k != "species"}
    p["species"] = jnp.asarray(system["species"], jnp.int32)
    p.update({k: jnp.asarray(v, dtype) for k, v in extra.items()})
    return p


def untangle_and_descend(positions, system, label, soft, steps, step_size):
    """Steps 1-2: gradient descent on soft spheres (soft=True) or on the LJ energy (float32)."""
    r_list = float(np.max(system["sigma"])) if soft else system["r_cutoff"]
    p = _params(system, jnp.float32, r_list=r_list, step_size=step_size, max_move=MAX_MOVE)
    state = simulate.BrownianState(jnp.asarray(positions, jnp.float32), jnp.float32(1),
                                   jax.random.PRNGKey(0))
    chunk = partial(_descent_chunk, params=p, soft=soft, skin=SKIN_MINIMIZE,
                    **force_statics(len(positions)))
    state, _ = run_phase(chunk, state, system, r_list, SKIN_MINIMIZE, steps, label)
    return np.asarray(state.position, np.float64)


def brownian(positions, system, key, kT_start, kT_end, steps, label, substeps=1):
    """Steps 3-4: Brownian heating (kT_start = kT_end) or linear quench, in float32; each of the
    `steps` steps of DT done as `substeps` steps of DT / substeps (stiff glasses)."""
    steps = steps * substeps
    p = _params(system, jnp.float32, r_list=system["r_cutoff"], dt=DT / substeps, gamma=GAMMA,
                kT_start=kT_start, kT_end=kT_end, total=max(steps, 1))
    state = simulate.BrownianState(jnp.asarray(positions, jnp.float32), jnp.float32(1), key)
    chunk = partial(_brownian_chunk, params=p, skin=SKIN_DYNAMICS,
                    **force_statics(len(positions)))
    state, _ = run_phase(chunk, state, system, system["r_cutoff"], SKIN_DYNAMICS, steps, label)
    return np.asarray(state.position, np.float64)


def largest_hessian_eigenvalue(positions, system):
    """lambda_max of the Hessian (Lanczos): the stiffest mode sets the stable step of every
    integrator here (Brownian: DT lambda_max / GAMMA < 2; Verlet: dt sqrt(lambda_max / m) < 2)."""
    h, _ = hessian(positions, system)
    return float(scipy.sparse.linalg.eigsh(h, k=1, which="LA", return_eigenvectors=False,
                                           v0=np.ones(h.shape[0]))[0])


def brownian_substeps(lam_max):
    """m >= 1 such that (DT / m) lambda_max / GAMMA <= BROWNIAN_MAX_DT_LAMBDA."""
    return max(1, int(np.ceil(DT * lam_max / GAMMA / BROWNIAN_MAX_DT_LAMBDA)))


def fire_mass(positions, system):
    """FIRE's (fictitious) mass: 1, or larger where the glass is so stiff that FIRE_DT_MAX would
    come within FIRE_MAX_DT_OMEGA of velocity Verlet's stability limit. The condition FIRE stops
    on (max|F| < FORCE_TOL) does not depend on the mass, but the path does, so in a rugged landscape
    the basin can: of the 36 default glasses given only m > 1 (plain Brownian steps), 8 end in
    another minimum than at m = 1 (experiments/are_glass_sets_alike.py, README Step 1)."""
    lam_max = largest_hessian_eigenvalue(positions, system)
    return max(1.0, (FIRE_DT_MAX * np.sqrt(max(lam_max, 0.0)) / FIRE_MAX_DT_OMEGA) ** 2)


def inherent_structure(positions, system, force_tol=None):
    """Step 5: FIRE in float64 to max|F| < FORCE_TOL (or force_tol: a looser value stops FIRE
    early, see experiments/do_unconverged_glasses_change_r.py). Not converging is an error.
    Returns positions, energy, max|F|, FIRE steps and the FIRE mass."""
    force_tol, = or_constants(globals(), force_tol=force_tol)
    # FIRE aims at half the tolerance, so that the independent recomputation below, which sums
    # the same pairs in another order, cannot land a rounding error above FORCE_TOL.
    mass = fire_mass(positions, system)
    p = _params(system, jnp.float64, r_list=system["r_cutoff"], tol=0.5 * force_tol, mass=mass)
    r = jnp.asarray(positions, jnp.float64)
    static = dict(skin=SKIN_MINIMIZE, dt_start=FIRE_DT_START, dt_max=FIRE_DT_MAX,
                  **force_statics(len(positions)))
    neighbor_fn = neighbor_list_fn(system["box"], system["r_cutoff"], SKIN_MINIMIZE)
    state = _fire_init(r, allocate_neighbors(neighbor_fn, r), p, **static)
    converged = lambda st: float(jnp.max(jnp.linalg.norm(st.force, axis=1))) < p["tol"]  # noqa
    state, n_steps = run_phase(partial(_fire_chunk, params=p, **static), state, system,
                               system["r_cutoff"], SKIN_MINIMIZE, MAX_FIRE_STEPS, "FIRE",
                               done=converged)
    positions = np.mod(np.asarray(state.position, np.float64), system["box"])
    e, forces = energy_and_forces(positions, system)
    max_force = float(np.max(np.linalg.norm(forces, axis=1)))
    if not max_force < force_tol:
        raise RuntimeError(f"FIRE did not reach an inherent structure: max|F| = {max_force:.3e} "
                           f">= FORCE_TOL = {force_tol:.0e} after {n_steps} steps "
                           f"(FIRE mass {mass:.2f}; raise MAX_FIRE_STEPS or check the protocol)")
    return positions, e, max_force, n_steps, mass


# ================================ pair geometry, forces, Hessian =================================
def periodic_pairs(positions, box, r_cut):
    """Index pairs (i, j), i < j, closer than r_cut under periodic boundaries: scipy's periodic
    k-d tree on the positions wrapped into [0, box)."""
    wrapped = np.mod(positions, box)
    wrapped[wrapped >= box] = 0.0           # np.mod of a tiny negative number can give box
    return cKDTree(wrapped, boxsize=box).query_pairs(r_cut, output_type="ndarray")


def pair_list(positions, box, r_cut):
    """All pairs i<j closer than r_cut under periodic boundaries (minimum image), with
    r_ij = r_j - r_i wrapped into the box."""
    pairs = periodic_pairs(positions, box, r_cut)
    i, j = pairs[:, 0], pairs[:, 1]
    rij = positions[j] - positions[i]
    rij -= box * np.round(rij / box)
    return i, j, rij


@jax.jit
def _pair_derivatives_jit(r, sigma, epsilon, r_onset, r_cutoff):
    phi = smoothed_lj(r_onset, r_cutoff)
    f = lambda x, s, e: phi(x, sigma=s, epsilon=e)  # noqa: E731
    return (jax.vmap(f)(r, sigma, epsilon), jax.vmap(jax.grad(f))(r, sigma, epsilon),
            jax.vmap(jax.grad(jax.grad(f)))(r, sigma, epsilon))


def _pair_derivatives(r, sigma, epsilon, r_onset, r_cutoff):
    """phi(r), phi'(r), phi''(r) of the smoothed LJ, by automatic differentiation of jax-md's
    own pair function (the seed's k_rad/k_trans are these without the smoothing).

    Compiled once for a padded length: evaluated eagerly, every new pair count (one per glass)
    compiled and cached each primitive again. Measured on six 400-atom glasses in one process:
    peak memory grew ~100 MB per glass before, ~15 MB after, and each glass took seconds less."""
    n = len(r)
    m = _bucket(n)
    pad = lambda a, value: np.concatenate([a, np.full(m - n, value)])  # noqa: E731
    out = _pair_derivatives_jit(pad(r, 1.0), pad(sigma, 1.0), pad(epsilon, 0.0),
                                np.float64(r_onset), np.float64(r_cutoff))
    return tuple(np.asarray(o)[:n] for o in out)


def _pairs_with_parameters(positions, system):
    i, j, rij = pair_list(positions, system["box"], system["r_cutoff"])
    s = np.asarray(system["species"])
    sig = np.asarray(system["sigma"])[s[i], s[j]]
    eps = np.asarray(system["epsilon"])[s[i], s[j]]
    r = np.linalg.norm(rij, axis=1)
    phi, d1, d2 = _pair_derivatives(r, sig, eps, system["r_onset"], system["r_cutoff"])
    return i, j, rij, r, phi, d1, d2


def energy_and_forces(positions, system):
    """Total energy and forces from the pair list (float64), independent of the neighbour list."""
    i, j, rij, r, phi, d1, _ = _pairs_with_parameters(positions, system)
    fij = (d1 / r)[:, None] * rij            # force on j from i is -phi'(r) n = -(d1/r) rij
    forces = np.zeros_like(positions)
    np.add.at(forces, i, fij)
    np.add.at(forces, j, -fij)
    return float(np.sum(phi)), forces


def pair_hessian_blocks(rij, r, d1, d2):
    """K_ij = phi'' n n^T + (phi'/r)(I - n n^T) = (k_rad - k_trans) n n^T + k_trans I.
    The Hessian's off-diagonal block is -K_ij and its diagonal block sum_j K_ij."""
    n = rij / r[:, None]
    nn = n[:, :, None] * n[:, None, :]
    k_trans = d1 / r
    return (d2 - k_trans)[:, None, None] * nn + k_trans[:, None, None] * np.eye(3)


def hessian(positions, system):
    """Sparse 3N x 3N Hessian and the local 3x3 blocks D_i (its diagonal blocks)."""
    i, j, rij, r, _, d1, d2 = _pairs_with_parameters(positions, system)
    return hessian_from_pairs(len(positions), i, j, pair_hessian_blocks(rij, r, d1, d2))


def hessian_from_pairs(n_atoms, i, j, k):
    """Assemble H from pair blocks K_ij (pairs i<j): H_ij = H_ji = -K_ij, H_ii = D_i = sum_j K_ij."""
    local = np.zeros((n_atoms, 3, 3))
    np.add.at(local, i, k)
    np.add.at(local, j, k)
    a = np.arange(3)
    row = lambda atoms: (3 * atoms[:, None, None] + a[None, :, None]).repeat(3, 2)  # noqa: E731
    col = lambda atoms: (3 * atoms[:, None, None] + a[None, None, :]).repeat(3, 1)  # noqa: E731
    diag = np.arange(n_atoms)
    rows = np.concatenate([row(i), row(j), row(diag)]).ravel()
    cols = np.concatenate([col(j), col(i), col(diag)]).ravel()
    vals = np.concatenate([-k, -k, local]).ravel()
    h = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(3 * n_atoms, 3 * n_atoms))
    return h, local


def lowest_modes(h, n_modes, positions=None, box=None):
    """The n_modes lowest eigenpairs of the Hessian, ascending. Dense eigh for small systems,
    shift-invert Lanczos (eigsh, sigma below the spectrum) for large ones. With the positions
    and the box, the shift-invert solves use a multifrontal Cholesky factor of H - sigma I in a
    nested-dissection order (nested_dissection.py); without them, eigsh's own SuperLU factor
    (same modes to ~1e-13).
    Measured at N = 10^4, 13 modes, one BLAS thread: factor 22 s + Lanczos 11 s, peak 2.8 GB,
    against SuperLU's 330 s + 18 s, 4.0 GB."""
    n_atoms = h.shape[0] // 3
    if n_atoms <= DENSE_EIGH_MAX_ATOMS:
        vals, vecs = np.linalg.eigh(h.toarray())
        return vals[:n_modes], vecs[:, :n_modes]
    v0 = np.random.default_rng(0).standard_normal(h.shape[0])   # deterministic Lanczos start
    op_inv = None
    if positions is not None and box is not None:
        shifted = (h - EIGSH_SHIFT * scipy.sparse.identity(h.shape[0], format="csr")).tocsr()
        try:
            factor = MultifrontalCholesky(shifted, nested_dissection_tree(
                positions, box, atom_graph(h), ND_LEAF_ATOMS))
            op_inv = scipy.sparse.linalg.LinearOperator(h.shape, matvec=factor.solve,
                                                        matmat=factor.solve, dtype=np.float64)
        except np.linalg.LinAlgError:
            # H has a mode below EIGSH_SHIFT (a saddle, not a minimum): eigsh's own LU, which
            # pivots, still finds the modes, and check_modes rejects them by name
            op_inv = None
    vals, vecs = scipy.sparse.linalg.eigsh(h.tocsc(), k=n_modes, sigma=EIGSH_SHIFT, which="LM",
                                           v0=v0, OPinv=op_inv)
    order = np.argsort(vals)
    return vals[order], vecs[:, order]


def softness_from_modes(vecs, n_zero=None, n_soft=None):
    """S_i = sum_{k=4}^{13} sum_alpha |v_k(i, alpha)|^2 (seed): participation of atom i in the
    N_SOFT_MODES softest non-trivial modes. Eigenvectors are unit vectors, so sum_i S_i = n_soft.
    n_zero and n_soft left None take N_ZERO_MODES and N_SOFT_MODES when called (overrides too)."""
    n_zero, n_soft = or_constants(globals(), n_zero_modes=n_zero, n_soft_modes=n_soft)
    soft = vecs[:, n_zero:n_zero + n_soft]
    return np.sum(soft.reshape(-1, 3, n_soft) ** 2, axis=(1, 2))


def vibrality_from_modes(vals, vecs, n_zero=None, n_modes=None):
    """Vibrality V_i = sum_k sum_alpha |v_k(i, alpha)|^2 / lambda_k over the n_modes lowest
    non-trivial modes (lambda_k = omega_k^2 at unit mass): how far atom i moves in the glass's
    harmonic response, dominated by the softest modes (Tanguy, Mantisi and Tsamados, EPL 90,
    16004 (2010); an indicator of where a glass yields, Richard et al., Phys. Rev. Mater. 4,
    113609 (2020)). n_zero and n_modes left None take N_ZERO_MODES and N_SOFT_MODES."""
    n_zero, n_modes = or_constants(globals(), n_zero_modes=n_zero, n_soft_modes=n_modes)
    weight = vecs[:, n_zero:n_zero + n_modes].reshape(-1, 3, n_modes) ** 2
    return np.sum(weight.sum(axis=1) / np.asarray(vals)[n_zero:n_zero + n_modes], axis=1)


def translation_content(vecs):
    """Share of each eigenvector (columns of vecs, 3N x k) that is a rigid translation,
    |sum_i v_k(i)|^2 / N: 1 for a translation, 0 for a mode orthogonal to all three."""
    n = vecs.shape[0] // 3
    return np.sum(vecs.reshape(n, 3, -1).sum(axis=0) ** 2, axis=0) / n


def vibrational_modes(vals, vecs, n_zero=None):
    """Indices of the modes other than the n_zero translations, lowest eigenvalue first. The
    translations are found by their content, not by their place in the spectrum: away from a
    minimum, unstable modes (lambda < 0) lie below them. n_zero None: N_ZERO_MODES, read now."""
    n_zero, = or_constants(globals(), n_zero_modes=n_zero)
    translations = np.argsort(-translation_content(vecs))[:n_zero]
    order = np.argsort(vals, kind="stable")
    return order[~np.isin(order, translations)]


def softness_of_any_configuration(vals, vecs, n_zero=None, n_soft=None):
    """The seed's softness where the configuration need not be a minimum (FIRE stopped early or
    skipped): S sums the n_soft lowest vibrational modes, unstable ones first. At an inherent
    structure this is softness_from_modes. None: N_ZERO_MODES, N_SOFT_MODES, read now."""
    n_zero, n_soft = or_constants(globals(), n_zero_modes=n_zero, n_soft_modes=n_soft)
    soft = vibrational_modes(vals, vecs, n_zero)[:n_soft]
    return np.sum(vecs[:, soft].reshape(-1, 3, n_soft) ** 2, axis=(1, 2))


def local_hessian_eigenvalues(local):
    """Eigenvalues of each atom's 3x3 cage-stiffness block D_i, ascending (rotation invariant)."""
    return np.linalg.eigvalsh(local)


# ================================ physics checks =================================================
def check_modes(vals):
    """Exactly three zero modes (translations), then a positive spectrum."""
    zero = np.abs(vals[:N_ZERO_MODES])
    if not np.all(zero < ZERO_MODE_TOL):
        raise RuntimeError(f"expected {N_ZERO_MODES} zero modes, lowest eigenvalues {vals[:5]}")
    if not vals[N_ZERO_MODES] > ZERO_MODE_TOL:
        raise RuntimeError(f"mode {N_ZERO_MODES + 1} is not positive ({vals[N_ZERO_MODES]:.3e}): "
                           "the structure is not a minimum or has another zero mode")


def check_hessian(h, local):
    """Symmetric, translation-invariant (rows sum to zero), diagonal blocks equal to D_i."""
    asym = abs(h - h.T).max()
    scale = abs(h).max()
    if asym > 1e-12 * scale:
        raise RuntimeError(f"Hessian not symmetric: max|H - H^T| = {asym:.3e}")
    n_atoms = len(local)
    for axis in range(3):
        t = np.zeros(3 * n_atoms)
        t[axis::3] = 1.0
        if np.max(np.abs(h @ t)) > 1e-10 * scale:
            raise RuntimeError("Hessian rows do not sum to zero (translation invariance broken)")
    idx = 3 * np.arange(n_atoms)[:, None] + np.arange(3)
    blocks = np.asarray(h[idx.repeat(3, 1).ravel(), np.tile(idx, 3).ravel()]).reshape(-1, 3, 3)
    if not np.allclose(blocks, local, rtol=1e-12, atol=1e-12 * scale):
        raise RuntimeError("local blocks D_i differ from the Hessian's diagonal blocks")


def min_pair_distance(positions, box):
    d, _ = cKDTree(np.mod(positions, box), boxsize=box).query(np.mod(positions, box), k=2)
    return float(np.min(d[:, 1]))


# ================================ one glass ======================================================
# Constants that do not change the glass made: where it is written, the compilation cache and the
# progress bars. Every other one shapes it (CHUNK_STEPS too: FIRE stops at chunk boundaries).
_NOT_PROTOCOL = ("DATA_DIR", "OUTPUT_FILE", "JAX_CACHE_DIR", "SHOW_PROGRESS",
                 "NEIGHBOUR_LIST",      # either list gives the same glass bit for bit (tested)
                 "ND_LEAF_ATOMS")       # reorders the shift-invert's factorisation only: the
                                        # labels change by round-off (~1e-12), not the glass
# Constants added after glasses were made, with the value those were made with: recorded only when
# set otherwise, so that the existing glasses keep their protocol hash and a glass made otherwise
# is not taken for one of them.
_RECORDED_UNLESS = {"FORCE_KERNEL": "grad"}
# Constants that shape only a glass of more than FORCE_ONE_BLOCK_MAX_ATOMS atoms made with the
# dense kernel (its forces are summed in blocks): recorded only for such a glass, so every smaller
# one keeps the protocol hash it had before they existed.
_BLOCKED_ONLY = ("FORCE_BLOCK_ROWS", "FORCE_ONE_BLOCK_MAX_ATOMS")


def protocol_constants(n_atoms=None):
    """The constants that shape a glass of n_atoms (None: N_ATOMS), with their values now
    (overrides included): recorded with each glass of the diverse set, so that a rerun with
    another protocol remakes it."""
    n_atoms, = or_constants(globals(), n_atoms=n_atoms)
    blocked = list_format() is partition.Dense and force_block_rows(n_atoms) > 0
    return {k: v for k, v in constants_of(globals()).items() if k not in _NOT_PROTOCOL
            and not (k in _RECORDED_UNLESS and v == _RECORDED_UNLESS[k])
            and (blocked or k not in _BLOCKED_ONLY)}


def make_system(n_atoms=None, density=None, species_ratio=None, sigma=None, epsilon=None,
                seed=None):
    """Box, species and interaction parameters (absolute cut-offs) of one glass. Arguments left
    None take the (possibly overridden) module constants."""
    n_atoms, density, species_ratio, sigma, epsilon, seed = or_constants(
        globals(), n_atoms=n_atoms, density=density, species_ratio=species_ratio, sigma=sigma,
        epsilon=epsilon, seed=seed)
    sigma, epsilon = np.asarray(sigma, np.float64), np.asarray(epsilon, np.float64)
    r_on, r_cut = absolute_cutoffs(sigma)
    box = check_minimum_image(n_atoms, density, r_cut)
    rng = np.random.default_rng(seed)
    return dict(box=box, species=assign_species(n_atoms, species_ratio, rng), sigma=sigma,
                epsilon=epsilon, r_onset=r_on, r_cutoff=r_cut)


def quenched_configuration(system, temperature, quench_steps, seed, timed=None, log=print):
    """Steps 1-4: random positions, soft-sphere untangling, LJ descent, Brownian heating at
    `temperature`, linear quench to T = 0. Returns the positions (not yet an inherent
    structure), lambda_max after the descent and the Brownian substeps it set."""
    timed = timed or (lambda name, fn, *args, **kwargs: fn(*args, **kwargs))
    key = jax.random.PRNGKey(seed)
    key, k_init, k_heat, k_quench = jax.random.split(key, 4)
    n_atoms, box = len(system["species"]), system["box"]
    r = np.asarray(jax.random.uniform(k_init, (n_atoms, 3), jnp.float64, 0.0, box))
    r = timed("untangle", untangle_and_descend, r, system, "untangle", True, UNTANGLE_STEPS,
              UNTANGLE_STEP_SIZE)
    r = timed("lj_descent", untangle_and_descend, r, system, "LJ descent", False,
              LJ_DESCENT_STEPS, LJ_DESCENT_STEP_SIZE)
    lam_max = largest_hessian_eigenvalue(r, system)
    m = brownian_substeps(lam_max)
    if m > 1:
        log(f"  stiff glass: lambda_max = {lam_max:.3g}, Brownian step DT/{m}")
    r = timed("heat", brownian, r, system, k_heat, temperature, temperature, HEAT_STEPS, "heat",
              m)
    r = timed("quench", brownian, r, system, k_quench, temperature, 0.0, quench_steps, "quench",
              m)
    return r, lam_max, m


def make_glass(n_atoms=None, density=None, temperature=None, quench_steps=None,
               species_ratio=None, sigma=None, epsilon=None, seed=None, log=print):
    """The six steps for one glass; returns the snapshot dict of the seed's schema.
    Arguments left None take the module constants."""
    n_atoms, density, temperature, quench_steps, species_ratio, seed = or_constants(
        globals(), n_atoms=n_atoms, density=density, temperature=temperature,
        quench_steps=quench_steps, species_ratio=species_ratio, seed=seed)
    system = make_system(n_atoms, density, species_ratio, sigma, epsilon, seed)
    box = system["box"]
    seconds = {}

    def timed(name, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds[name] = round(time.perf_counter() - t0, 3)
        log(f"  {name}: {seconds[name]:.1f}s")
        return out

    r, lam_max, m = quenched_configuration(system, temperature, quench_steps, seed, timed, log)
    r, e_is, max_force, n_fire, mass = timed("fire", inherent_structure, r, system)
    log(f"  inherent structure: E/N = {e_is / n_atoms:.6f}, max|F| = {max_force:.2e} "
        f"after {n_fire} FIRE steps")

    t0 = time.perf_counter()
    h, local = hessian(r, system)
    check_hessian(h, local)
    vals, vecs = lowest_modes(h, N_ZERO_MODES + N_SOFT_MODES, r, box)
    check_modes(vals)
    softness = softness_from_modes(vecs)
    eigenvalues = local_hessian_eigenvalues(local)
    d_min = min_pair_distance(r, box)
    if d_min < MIN_PAIR_DISTANCE:
        raise RuntimeError(f"overlap: closest pair at {d_min:.3f} < {MIN_PAIR_DISTANCE} sigma")
    seconds["hessian"] = round(time.perf_counter() - t0, 3)
    log(f"  lowest Hessian eigenvalues: {np.array2string(vals[:6], precision=4)}; "
        f"closest pair {d_min:.3f}; sum S = {softness.sum():.6f}")

    parameters = dict(
        n_atoms=int(n_atoms), density=float(density), temperature=float(temperature),
        quench_steps=int(quench_steps), heat_steps=int(HEAT_STEPS), dt=float(DT),
        gamma=float(GAMMA), species_ratio=float(species_ratio), seed=int(seed),
        sigma=system["sigma"], epsilon=system["epsilon"], r_onset=float(system["r_onset"]),
        r_cutoff=float(system["r_cutoff"]), max_force=max_force, n_fire_steps=int(n_fire),
        fire_mass=float(mass), lambda_max_descent=lam_max, brownian_substeps=int(m),
        force_tol=float(FORCE_TOL), n_soft_modes=int(N_SOFT_MODES),
        lowest_eigenvalues=np.asarray(vals, np.float64), min_pair_distance=d_min,
        seconds=seconds, versions=dict(jax=jax.__version__, numpy=np.__version__))
    return dict(positions=r.astype(np.float64), species=system["species"].astype(np.int64),
                box_size=float(box), softness_score=softness.astype(np.float64),
                eigenvalues=eigenvalues.astype(np.float64), energy=float(e_is),
                parameters=parameters)


# ================================ main ===========================================================
def output_file(n_atoms=None):
    """OUTPUT_FILE with its {size} filled in: 1000 atoms -> 1k, 10000 -> 10k, 256 -> 256."""
    n_atoms, = or_constants(globals(), n_atoms=n_atoms)
    size = f"{n_atoms // 1000}k" if n_atoms % 1000 == 0 else str(n_atoms)
    try:
        return OUTPUT_FILE.format(size=size)
    except (KeyError, IndexError, ValueError) as err:
        raise SystemExit(f"error: OUTPUT_FILE={OUTPUT_FILE!r}: only {{size}} may be filled in "
                         f"({type(err).__name__}: {err})")


def main(argv=None):
    apply_overrides(globals(), argv)
    enable_compilation_cache(JAX_CACHE_DIR)
    t0 = time.perf_counter()
    path = os.path.join(DATA_DIR, output_file())
    print(f"Kob-Andersen glass: N={N_ATOMS}, density={DENSITY}, T={TEMPERATURE}, "
          f"quench {QUENCH_STEPS} steps, seed {SEED} -> {path}")
    try:
        snap = make_glass()
    except (ValueError, RuntimeError) as err:   # bad parameters or a failed physics check
        raise SystemExit(f"error: {err}\nnothing written to {path}")
    validate_snapshot(snap, path, N_ATOMS)
    atomic_write_pickle(path, snap)
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in snap["parameters"]["seconds"].items())
    print(f"  time per phase: {phases}")
    print(f"wrote {path} (E/N = {snap['energy'] / N_ATOMS:.6f}) in "
          f"{time.perf_counter() - t0:.1f}s")
    record_wall_time(DATA_DIR, "generate_glass_data.py", time.perf_counter() - t0)


if __name__ == "__main__":
    main()
