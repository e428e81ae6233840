"""120 diverse Kob-Andersen glasses: the base configurations the model learns from.

Seed README, "Generate Diverse Dataset": each glass k draws its density, temperature, quench length,
species ratio and sigma/epsilon scales uniformly from the ranges below, then runs the six steps of
generate_glass_data.py (imported: the physics is written once). The draw and the simulation seed of
glass k depend only on (SEED, k), so any glass can be regenerated alone and nothing depends on
N_WORKERS.

Runs N_WORKERS processes, one glass per task, and is resumable: kill it at any moment and run the
same command again; finished files are kept, missing or invalid ones are (re)made, and
metadata.pkl is rebuilt from the files at the end.

    python generate_diverse_data.py [--N_CONFIGS=120] [--N_WORKERS=2] [--DATA_DIR=data]

Constants of generate_glass_data.py (the protocol: HEAT_STEPS, FORCE_TOL, ...) may be overridden
here too, and are forwarded to the workers.
"""
import glob
import multiprocessing as mp
import os
import sys
import time

import numpy as np

from glass_io import (GlassFileError, apply_overrides, atomic_write_pickle, constants_of,
                      load_glass, record_wall_time)

# ================================ constants ====================================================
N_CONFIGS = 120                     # base glasses
N_ATOMS = 1000                      # atoms per glass
SEED = 0                            # master seed: glass k depends only on (SEED, k)
N_WORKERS = os.cpu_count() or 1     # processes, one glass per task
DATA_DIR = "data"
FILE_PATTERN = "glass_data_{:03d}.pkl"
METADATA_FILE = "metadata.pkl"
MAX_ATTEMPTS = 3                    # a glass failing a physics check is retried with a new sub-seed

# --- parameter ranges, drawn uniformly per glass (seed README) ---
DENSITY_RANGE = (1.1, 1.3)          # atoms / sigma_AA^3
TEMPERATURE_RANGE = (0.40, 0.48)    # heating temperature, epsilon_AA / k_B
QUENCH_STEPS_RANGE = (3000, 7000)   # Brownian steps of the quench ramp (integers, inclusive)
SPECIES_RATIO_RANGE = (0.75, 0.85)  # fraction of A atoms
SIGMA_SCALE_RANGE = (0.90, 1.10)    # multiplies the whole KA sigma matrix (and so the cut-offs)
EPSILON_SCALE_RANGE = (0.90, 1.10)  # multiplies the whole KA epsilon matrix


# ================================ the draw =======================================================
def draw_parameters(k, seed, ggd):
    """Parameters of glass k: a generator seeded by (seed, k) alone, drawn in a fixed order."""
    rng = np.random.default_rng([seed, k])
    density = rng.uniform(*DENSITY_RANGE)
    temperature = rng.uniform(*TEMPERATURE_RANGE)
    quench_steps = int(rng.integers(QUENCH_STEPS_RANGE[0], QUENCH_STEPS_RANGE[1] + 1))
    species_ratio = rng.uniform(*SPECIES_RATIO_RANGE)
    sigma_scale = rng.uniform(*SIGMA_SCALE_RANGE)
    epsilon_scale = rng.uniform(*EPSILON_SCALE_RANGE)
    return dict(density=float(density), temperature=float(temperature),
                quench_steps=quench_steps, species_ratio=float(species_ratio),
                sigma_scale=float(sigma_scale), epsilon_scale=float(epsilon_scale),
                sigma=np.asarray(ggd.SIGMA) * sigma_scale,
                epsilon=np.asarray(ggd.EPSILON) * epsilon_scale)


def simulation_seed(seed, k, attempt):
    """Deterministic sub-seed of glass k's attempt: positions, species and Brownian noise."""
    return int(np.random.SeedSequence([seed, k, attempt]).generate_state(1)[0])


def glass_path(k):
    return os.path.join(DATA_DIR, FILE_PATTERN.format(k))


# ================================ one glass (in a worker) =======================================
_GGD = None


def _worker_init(own_overrides, ggd_overrides):
    """Import the physics once per worker. A spawned worker re-imports this script with its
    defaults, so the overrides of both scripts are applied again here."""
    global _GGD
    globals().update(own_overrides)
    import generate_glass_data as ggd
    vars(ggd).update(ggd_overrides, SHOW_PROGRESS=False)   # one bar, over glasses, in the parent
    ggd.enable_compilation_cache(ggd.JAX_CACHE_DIR)
    _GGD = ggd


def make_one(task):
    """Make, check and write glass k; retry a failed physics check with the next sub-seed."""
    k, seed, n_atoms, path = task
    ggd = _GGD
    drawn = draw_parameters(k, seed, ggd)
    failures = []
    for attempt in range(MAX_ATTEMPTS):
        sub_seed = simulation_seed(seed, k, attempt)
        t0 = time.perf_counter()
        try:
            snap = ggd.make_glass(n_atoms=n_atoms, density=drawn["density"],
                                  temperature=drawn["temperature"],
                                  quench_steps=drawn["quench_steps"],
                                  species_ratio=drawn["species_ratio"], sigma=drawn["sigma"],
                                  epsilon=drawn["epsilon"], seed=sub_seed, log=lambda *a: None)
        except RuntimeError as err:           # FIRE not converged, overlap, bad spectrum
            failures.append(f"attempt {attempt} (seed {sub_seed}): {err}")
            continue
        snap["parameters"].update(
            index=int(k), draw_seed=int(seed), attempt=int(attempt), failures=failures,
            sigma_scale=drawn["sigma_scale"], epsilon_scale=drawn["epsilon_scale"],
            wall_seconds=round(time.perf_counter() - t0, 3))
        atomic_write_pickle(path, snap)
        return k, summary(snap, path), None
    return k, None, failures


def summary(snap, path):
    """One metadata record: the file, its parameters, e_IS/N, max|F| and seconds."""
    p = snap["parameters"]
    return dict(file=os.path.basename(path), parameters=p,
                e_per_atom=float(snap["energy"] / len(snap["positions"])),
                max_force=float(p["max_force"]), seconds=float(p.get("wall_seconds", 0.0)))


# ================================ the set ========================================================
def existing_glass_is_valid(k, seed, n_atoms):
    """A finished file is kept only if it loads, validates, and was drawn for this (SEED, k)."""
    path = glass_path(k)
    if not os.path.exists(path):
        return False
    try:
        snap = load_glass(path, n_atoms=n_atoms)
    except GlassFileError as err:
        print(f"  {err}: regenerating", flush=True)
        return False
    p = snap["parameters"]
    if p.get("index") != k or p.get("draw_seed") != seed:
        print(f"  {path}: made for index {p.get('index')}, SEED {p.get('draw_seed')}, not "
              f"{k}, {seed}: regenerating", flush=True)
        return False
    return True


def remove_stale_temp_files():
    """Temp files of writes cut short by a kill (atomic writes never leave a partial target)."""
    for tmp in glob.glob(os.path.join(DATA_DIR, ".*.tmp")):
        os.unlink(tmp)


def build_metadata(ggd, n_configs):
    """metadata.pkl, rebuilt from the files themselves (never from memory of this run)."""
    records = []
    for k in range(n_configs):
        path = glass_path(k)
        records.append(summary(load_glass(path, n_atoms=N_ATOMS), path))
    import jax
    meta = dict(records=records, n_configs=n_configs, n_atoms=N_ATOMS, seed=SEED,
                constants=constants_of(globals()), protocol=constants_of(vars(ggd)),
                versions=dict(numpy=np.__version__, jax=jax.__version__,
                              python=sys.version.split()[0]))
    atomic_write_pickle(os.path.join(DATA_DIR, METADATA_FILE), meta)
    return meta


def split_overrides(argv, ggd):
    """--NAME=value arguments: this script's constants, and the protocol's (forwarded)."""
    ours, theirs = [], []
    own = set(constants_of(globals()))
    for arg in argv:
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else ""
        (theirs if name not in own and name in constants_of(vars(ggd)) else ours).append(arg)
    return ours, theirs


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    import generate_glass_data as ggd
    ours, theirs = split_overrides(argv, ggd)
    own_overrides = apply_overrides(globals(), ours)
    ggd_overrides = apply_overrides(dict(constants_of(vars(ggd))), theirs)
    vars(ggd).update(ggd_overrides)
    if N_CONFIGS < 1 or N_WORKERS < 1:
        raise SystemExit("error: N_CONFIGS and N_WORKERS must be positive")
    try:   # refuse a box narrower than 2 r_cut for the densest, largest-sigma corner of the ranges
        r_cut = ggd.absolute_cutoffs(np.asarray(ggd.SIGMA) * SIGMA_SCALE_RANGE[1])[1]
        ggd.check_minimum_image(N_ATOMS, DENSITY_RANGE[1], r_cut)
    except ValueError as err:
        raise SystemExit(f"error: {err}")
    os.makedirs(DATA_DIR, exist_ok=True)
    remove_stale_temp_files()
    todo = [k for k in range(N_CONFIGS) if not existing_glass_is_valid(k, SEED, N_ATOMS)]
    print(f"{N_CONFIGS} glasses of {N_ATOMS} atoms in {DATA_DIR}: {N_CONFIGS - len(todo)} done, "
          f"{len(todo)} to make with {N_WORKERS} worker(s)", flush=True)
    t0 = time.perf_counter()
    failed = {}
    if todo:
        from tqdm import tqdm
        tasks = [(k, SEED, N_ATOMS, glass_path(k)) for k in todo]
        ctx = mp.get_context("spawn")     # JAX is not fork-safe
        with ctx.Pool(min(N_WORKERS, len(todo)), initializer=_worker_init,
                      initargs=(own_overrides, ggd_overrides)) as pool, \
                tqdm(total=len(todo), desc="glasses", unit="glass") as bar:
            for k, rec, failures in pool.imap_unordered(make_one, tasks):
                if rec is None:
                    failed[k] = failures
                    tqdm.write(f"  glass {k:03d} FAILED after {MAX_ATTEMPTS} attempts: "
                               f"{failures[-1]}")
                else:
                    p = rec["parameters"]
                    tqdm.write(f"  glass {k:03d}: rho {p['density']:.3f}  T {p['temperature']:.3f}"
                               f"  quench {p['quench_steps']}  x_A {p['species_ratio']:.3f}  "
                               f"sigma*{p['sigma_scale']:.3f}  eps*{p['epsilon_scale']:.3f}  "
                               f"e_IS/N {rec['e_per_atom']:.4f}  max|F| {rec['max_force']:.1e}"
                               f"  {rec['seconds']:.1f}s" + (f"  (attempt {p['attempt']})"
                                                             if p["attempt"] else ""))
                bar.update(1)
            pool.close()
            pool.join()
    if failed:
        raise SystemExit(f"error: glasses {sorted(failed)} failed every attempt; rerun to retry")
    build_metadata(ggd, N_CONFIGS)
    print(f"made {len(todo)} glasses in {time.perf_counter() - t0:.1f}s; wrote "
          f"{os.path.join(DATA_DIR, METADATA_FILE)}", flush=True)
    record_wall_time(DATA_DIR, "generate_diverse_data.py", time.perf_counter() - t0,
                     glasses_made=len(todo), glasses_total=N_CONFIGS, workers=N_WORKERS)


if __name__ == "__main__":
    main()
