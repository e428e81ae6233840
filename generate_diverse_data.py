"""120 diverse Kob-Andersen glasses: the base configurations the model learns from.

Seed README, "Generate Diverse Dataset": each glass k draws its density, temperature, quench length,
species ratio and sigma/epsilon scales uniformly from the ranges below, then runs the six steps of
generate_glass_data.py (imported: the physics is written once). The draw and the simulation seed of
glass k depend only on (SEED, k), so any glass can be regenerated alone and nothing depends on
N_WORKERS.

The glasses are Dask tasks, one glass per task, resumable: kill the run at any moment and run the
same command again; finished files are kept, missing or invalid ones, and ones made with other
protocol constants (recorded in each glass's parameters["protocol"], hashed in
["protocol_hash"]), are (re)made, and metadata.pkl is rebuilt from the files at the end. It lists
exactly the N_CONFIGS glasses of this run, the set the next steps use; other glass files left in
DATA_DIR by an earlier, larger run are reported, not deleted.

    python generate_diverse_data.py [--N_CONFIGS=120] [--N_WORKERS=2] [--DATA_DIR=data]

By default the tasks run on an embedded local Dask cluster of N_WORKERS worker processes. With
SCHEDULER they run on the workers of an existing Dask scheduler instead (several machines:
dask-jobqueue on SLURM, or by hand), N_WORKERS unused:

    DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION=1.0 dask scheduler   # at tcp://host:8786
    PYTHONPATH=/path/to/repo dask worker tcp://host:8786 --nworkers 4 --nthreads 1 --memory-limit 0
    python generate_diverse_data.py --SCHEDULER=tcp://host:8786

(a saturation of 1.0 hands a glass only to a free worker, as the local cluster does; Dask's
default queues one more on each). Such workers must import this code (generate_diverse_data and
generate_glass_data: start them in the repository directory or with it on PYTHONPATH), should run
one thread each (a process makes one glass at a time) and must see DATA_DIR and JAX_CACHE_DIR at
this run's absolute paths (a shared file system: each worker writes its glasses itself). Each
task carries the overrides of both scripts, so any worker, one restarted by its nanny too, makes
glass k with this run's protocol (checked: a worker whose protocol differs fails the task). A
worker that dies mid-glass loses only that glass, which Dask gives to another worker (up to
distributed.scheduler.allowed-failures times); a glass that fails for good is reported, the
others are kept, and the run ends with an error (rerun to retry). Dask's workers set
OPENBLAS_NUM_THREADS=1 by default: their softness differs from the local cluster's in the last
bits (~1e-15).

Constants of generate_glass_data.py (the protocol: HEAT_STEPS, FORCE_TOL, ...) may be overridden
here too, and are forwarded to the workers.
"""
import contextlib
import os
import sys
import threading
import time
import uuid

import numpy as np

from softglass import glass_set
from softglass.cli import apply_overrides, constants_of, exit_on_help, normalise_argv
from softglass.files import (GlassFileError, atomic_write_pickle, check_writable, load_glass,
                             name_list, record_wall_time, sha256_of_json)
from softglass.glass_set import simulation_seed, summary     # noqa: F401  (gdd.simulation_seed)

# ================================ constants ====================================================
N_CONFIGS = 120                     # base glasses
N_ATOMS = 1000                      # atoms per glass
SEED = 0                            # master seed: glass k depends only on (SEED, k)
N_WORKERS = os.cpu_count() or 1     # processes, one glass per task
SCHEDULER = ""                      # "" : a local Dask cluster of N_WORKERS processes;
                                    # "tcp://host:8786": an existing Dask scheduler (e.g.
                                    # dask-jobqueue on SLURM; README); N_WORKERS is then not used
DATA_DIR = "data"
FILE_PATTERN = "glass_data_{:03d}.pkl"
METADATA_FILE = "metadata.pkl"
MAX_ATTEMPTS = 3                    # a glass failing a physics check is retried with a new sub-seed
REGENERATE = False                  # remake glasses of DATA_DIR made with other settings (another
                                    # protocol, atom count or SEED); False refuses and says which
                                    # settings differ: an hour of glasses is not lost to a typo

# --- parameter ranges, drawn uniformly per glass (seed README) ---
DENSITY_RANGE = (1.1, 1.3)          # atoms / sigma_AA^3
TEMPERATURE_RANGE = (0.40, 0.48)    # heating temperature, epsilon_AA / k_B
QUENCH_STEPS_RANGE = (3000, 7000)   # Brownian steps of the quench ramp (integers, inclusive)
SPECIES_RATIO_RANGE = (0.75, 0.85)  # fraction of A atoms
SIGMA_SCALE_RANGE = (0.90, 1.10)    # multiplies the whole KA sigma matrix (and so the cut-offs)
EPSILON_SCALE_RANGE = (0.90, 1.10)  # multiplies the whole KA epsilon matrix

# --- other glass formers (--POTENTIAL=cuzr or sw, forwarded to generate_glass_data.py) ---
# The melt temperature, time step and melt time stay the former's; what varies is what shapes a
# metallic or network glass: its density (pressure), its quench rate (how well annealed it is)
# and, for the alloy, its composition.
CUZR_DENSITY_RANGE = (0.0608, 0.0622)       # atoms / A^3: +-1.1% around the zero-pressure 0.0615
                                            # of Cu64Zr36 (~3 GPa per 1%: docs/report.md 17)
CUZR_QUENCH_RATE_RANGE = (5e13, 2e14)       # K/s, log-uniform around generate_glass_data's 1e14
CUZR_CU_FRACTION_RANGE = (0.60, 0.68)       # fraction of Cu around Cu64Zr36 (the glass-forming
                                            # range of Cu-Zr spans ~Cu50-Cu70)
SW_DENSITY_RANGE = (0.0480, 0.0500)         # atoms / A^3: a-Si's 0.0490 +-2%
SW_QUENCH_RATE_RANGE = (5e13, 2e14)         # K/s, log-uniform

# generate_glass_data.py's constants that glass k never reads: make_one passes its own atom count,
# sub-seed and drawn parameters instead.
_GIVEN_PER_GLASS = ("N_ATOMS", "SEED", "DENSITY", "TEMPERATURE", "QUENCH_STEPS", "SPECIES_RATIO",
                    "CUZR_DENSITY", "CUZR_QUENCH_RATE", "CUZR_CU_FRACTION", "SW_DENSITY",
                    "SW_QUENCH_RATE")
# ...and so overriding them here would silently change nothing: refused, with what to use instead.
_NO_EFFECT_HERE = {
    "DENSITY": "each glass draws its density from DENSITY_RANGE",
    "TEMPERATURE": "each glass draws its temperature from TEMPERATURE_RANGE",
    "QUENCH_STEPS": "each glass draws its quench length from QUENCH_STEPS_RANGE",
    "SPECIES_RATIO": "each glass draws its fraction of A atoms from SPECIES_RATIO_RANGE",
    "OUTPUT_FILE": "the glasses are written to DATA_DIR/FILE_PATTERN",
    "SHOW_PROGRESS": "the workers never show per-phase bars (one bar over glasses here)",
    **{f"{former}_{name}": f"each glass draws it from {former}_{name}_RANGE"
       for former, names in (("CUZR", ("DENSITY", "QUENCH_RATE", "CU_FRACTION")),
                             ("SW", ("DENSITY", "QUENCH_RATE"))) for name in names},
}
# This script's constants for one former only: a glass of another former does not record them,
# so that changing them remakes no glass they never shaped (and the Kob-Andersen sets keep the
# protocol hashes they had before other formers existed).
_KA_ONLY = tuple(f.name.upper() + "_RANGE" for f in glass_set.dataclasses.fields(glass_set.Ranges))
_FORMER_PREFIXES = ("CUZR_", "SW_")

exit_on_help(globals(), forwarded=["generate_glass_data.py"],   # read, not imported
             hide=_NO_EFFECT_HERE)


# ================================ the draw =======================================================
def ranges():
    """The ranges glass k draws from (softglass.glass_set.Ranges), read when called so that
    --NAME=value reaches them."""
    return glass_set.Ranges(density=DENSITY_RANGE, temperature=TEMPERATURE_RANGE,
                            quench_steps=QUENCH_STEPS_RANGE, species_ratio=SPECIES_RATIO_RANGE,
                            sigma_scale=SIGMA_SCALE_RANGE, epsilon_scale=EPSILON_SCALE_RANGE)


def former_ranges(former):
    """The ranges a glass of `former` (cuzr, sw) draws from (softglass.glass_set.FormerRanges)."""
    if former == "cuzr":
        return glass_set.FormerRanges(density=CUZR_DENSITY_RANGE,
                                      quench_rate=CUZR_QUENCH_RATE_RANGE,
                                      fraction=CUZR_CU_FRACTION_RANGE)
    return glass_set.FormerRanges(density=SW_DENSITY_RANGE, quench_rate=SW_QUENCH_RATE_RANGE,
                                  fraction=(1.0, 1.0))


def draw_parameters(k, seed, ggd):
    """Parameters of glass k: a generator seeded by (seed, k) alone, drawn in a fixed order
    (softglass.glass_set.draw_parameters), scaling generate_glass_data's SIGMA and EPSILON; for
    another former, its density, quench rate and composition (draw_former_parameters)."""
    if ggd.POTENTIAL != "ka":
        return glass_set.draw_former_parameters(k, seed, former_ranges(ggd.POTENTIAL))
    return glass_set.draw_parameters(k, seed, ranges(), ggd.SIGMA, ggd.EPSILON)


def glass_path(k):
    return os.path.join(DATA_DIR, FILE_PATTERN.format(k))


# ================================ one glass (in a worker) =======================================
_CONFIGURED = {}        # in a worker process: the overrides in force, and the constants' defaults
_ONE_GLASS_AT_A_TIME = threading.Lock()     # the constants are the process's, not the thread's


def configured_ggd(own_overrides, ggd_overrides):
    """generate_glass_data, with this script, configured in this (worker) process by the run's
    overrides of both scripts. A Dask worker imports them with their defaults (and a worker
    restarted by its nanny imports them again), so every task carries the overrides; they are
    applied when they differ from the ones in force (a shared cluster may serve runs with other
    settings: each starts again from the defaults)."""
    import generate_glass_data as ggd
    key = repr((sorted(own_overrides.items()), sorted(ggd_overrides.items())))
    if _CONFIGURED.get("key") != key:
        if "defaults" not in _CONFIGURED:
            _CONFIGURED["defaults"] = (constants_of(globals()), constants_of(vars(ggd)))
        own_defaults, ggd_defaults = _CONFIGURED["defaults"]
        globals().update(own_defaults, **own_overrides)
        vars(ggd).update(ggd_defaults, **ggd_overrides)
        ggd.SHOW_PROGRESS = False            # one bar, over glasses, in the parent
        ggd.enable_compilation_cache(ggd.JAX_CACHE_DIR)
        _CONFIGURED["key"] = key
    return ggd


def make_one(task):
    """The Dask task of glass k: configure this worker with the overrides the task carries, then
    make, check and write the glass. Returns (k, its metadata record or None, the failures)."""
    k, seed, n_atoms, path, digest, own_overrides, ggd_overrides = task
    with _ONE_GLASS_AT_A_TIME:
        return make_glass_k(k, seed, n_atoms, path, digest,
                            configured_ggd(own_overrides, ggd_overrides))


def make_glass_k(k, seed, n_atoms, path, digest, ggd):
    """Make, check and write glass k; retry a failed physics check with the next sub-seed."""
    protocol, mine = glass_protocol(ggd)
    if mine != digest:      # the overrides did not reach this worker: never label a glass wrongly
        raise RuntimeError(f"worker's protocol differs from the parent's: {protocol}")
    drawn = draw_parameters(k, seed, ggd)
    failures = []
    for attempt in range(MAX_ATTEMPTS):
        sub_seed = simulation_seed(seed, k, attempt)
        t0 = time.perf_counter()
        try:
            snap = drawn_glass(ggd, n_atoms, drawn, sub_seed)
        except RuntimeError as err:           # FIRE not converged, overlap, bad spectrum
            failures.append(f"attempt {attempt} (seed {sub_seed}): {err}")
            continue
        record = dict(index=int(k), draw_seed=int(seed), attempt=int(attempt), failures=failures)
        if ggd.POTENTIAL == "ka":
            record.update(sigma_scale=drawn["sigma_scale"], epsilon_scale=drawn["epsilon_scale"])
        snap["parameters"].update(record, wall_seconds=round(time.perf_counter() - t0, 3),
                                  protocol=protocol, protocol_hash=digest)
        atomic_write_pickle(path, snap)
        return k, summary(snap, path), None
    return k, None, failures


def drawn_glass(ggd, n_atoms, drawn, sub_seed):
    """One glass of the drawn parameters: Kob-Andersen's six steps (make_glass) or another
    former's melt-quench (make_former_glass)."""
    if ggd.POTENTIAL != "ka":
        return ggd.make_former_glass(n_atoms=n_atoms, seed=sub_seed, log=lambda *a: None, **drawn)
    return ggd.make_glass(n_atoms=n_atoms, density=drawn["density"],
                          temperature=drawn["temperature"], quench_steps=drawn["quench_steps"],
                          species_ratio=drawn["species_ratio"], sigma=drawn["sigma"],
                          epsilon=drawn["epsilon"], seed=sub_seed, log=lambda *a: None)


# ================================ the protocol ===================================================
# This script's constants that do not change glass k: how many glasses, where, how many processes.
_NOT_PROTOCOL = ("N_CONFIGS", "N_WORKERS", "SCHEDULER", "DATA_DIR", "FILE_PATTERN",
                 "METADATA_FILE", "REGENERATE",
                 "MAX_ATTEMPTS")     # glass k of attempt a depends on (SEED, k, a) alone


def shapes_the_former(name, former):
    """Whether this script's constant `name` shapes a glass of `former`: a range of one former
    (CUZR_..., SW_..., the Kob-Andersen ranges) shapes only that former's glasses."""
    if name.startswith(_FORMER_PREFIXES):
        return name.startswith(former.upper() + "_")
    return former == "ka" or name not in _KA_ONLY


def glass_protocol(ggd):
    """Every constant that shapes glass k besides k itself, by script, and the sha256 of its
    canonical JSON. A stored glass is kept only if it was made with the same."""
    protocol = {
        "generate_glass_data.py": {k: v for k, v in ggd.protocol_constants(N_ATOMS).items()
                                   if k not in _GIVEN_PER_GLASS},
        "generate_diverse_data.py": {k: v for k, v in constants_of(globals()).items()
                                     if k not in _NOT_PROTOCOL
                                     and shapes_the_former(k, ggd.POTENTIAL)}}
    return protocol, sha256_of_json(protocol)


def check_densest_box(ggd):
    """Refuse (ValueError) an N_ATOMS whose box is narrower than 2 r_cut at the densest,
    largest-sigma corner of the ranges (softglass.glass_set.check_densest_box); for another
    former, narrower than twice its cut-off plus the skin at the densest draw (its potential
    file is read here, so a missing one stops the run before any cluster starts)."""
    if ggd.POTENTIAL == "ka":
        glass_set.check_densest_box(N_ATOMS, ranges(), ggd.SIGMA, ggd.R_ONSET, ggd.R_CUTOFF)
        return
    from softglass import former_glass
    densest = ggd.former_protocol(density=former_ranges(ggd.POTENTIAL).density[1])
    former_glass.check_box(ggd.make_potential(ggd.POTENTIAL, ggd.CUZR_POTENTIAL_FILE), N_ATOMS,
                           ggd.systems.box_length(N_ATOMS, densest.density), densest.md.skin,
                           f" at the densest {ggd.POTENTIAL} glass")


def refuse_ineffective(forwarded):
    """Stop on a forwarded --NAME=value that the glasses of this script never read."""
    for arg in forwarded:
        name = arg[2:].split("=", 1)[0]
        if name in _NO_EFFECT_HERE:
            raise SystemExit(f"error: --{name} has no effect in generate_diverse_data.py: "
                             f"{_NO_EFFECT_HERE[name]}")


def split_overrides(argv, ggd):
    """--NAME=value (or --NAME value) arguments, as --NAME=value: this script's constants, and
    the protocol's (forwarded)."""
    ours, theirs = [], []
    own = set(constants_of(globals()))
    for arg in normalise_argv(argv):       # `--NAME value` -> `--NAME=value` before splitting
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else ""
        (theirs if name not in own and name in constants_of(vars(ggd)) else ours).append(arg)
    return ours, theirs


# ================================ the set ========================================================
def build_metadata(ggd, n_configs, digest):
    """metadata.pkl, rebuilt from the files themselves (never from memory of this run): the set
    of glasses the next steps use, all made with the protocol hashed as `digest`."""
    records = []
    for k in range(n_configs):
        path = glass_path(k)
        records.append(summary(load_glass(path, n_atoms=N_ATOMS), path))
        if records[-1]["parameters"].get("protocol_hash") != digest:   # replaced meanwhile
            raise GlassFileError(f"{path}: not made with this run's protocol; rerun")
    import jax
    meta = dict(records=records, n_configs=n_configs, n_atoms=N_ATOMS, seed=SEED,
                protocol_hash=digest,
                constants=constants_of(globals()), protocol=constants_of(vars(ggd)),
                versions=dict(numpy=np.__version__, jax=jax.__version__,
                              python=sys.version.split()[0]))
    atomic_write_pickle(os.path.join(DATA_DIR, METADATA_FILE), meta)
    return meta


def make_glasses(todo, digest, own_overrides, ggd_overrides):
    """Make the glasses `todo` on a Dask cluster, one bar over glasses: an embedded local cluster
    of N_WORKERS processes or, with SCHEDULER, an existing one (softglass.dask_cluster). Returns
    the failures {k: messages}. Every cluster, client and bar is closed however this ends (Ctrl-C
    too): the client first, then the cluster (the ExitStack closes in reverse order); once the
    results are in, a connection error of that shutdown is dropped from the log."""
    from softglass import dask_cluster       # (dask and distributed: before holding their logs)
    with dask_cluster.shutdown_noise_dropped() as noise, \
            dask_cluster.dask_warnings_held_back() as held, contextlib.ExitStack() as stack:
        client = dask_cluster.open_client(stack, SCHEDULER, min(N_WORKERS, len(todo)))
        failed = run_glasses(client, todo, digest, own_overrides, ggd_overrides)
        if failed:
            held.show()
        if not SCHEDULER:           # our workers end with the cluster (a shared one's are left)
            with contextlib.suppress(Exception):
                client.run(dask_cluster.quiet_worker_shutdown)
        noise.install()
    return failed


def run_glasses(client, todo, digest, own_overrides, ggd_overrides):
    """Glass k of `todo` as one task each on the Dask `client`'s workers, collected as they
    finish (softglass.dask_cluster.results_as_finished); returns the failures {k: messages}. A
    glass whose task failed for good (its worker died allowed-failures times: KilledWorker; or
    an exception) is a failure of that glass alone."""
    import generate_glass_data as ggd
    # the task function by reference to an importable module (never __main__'s copy of it), so
    # the workers import it themselves
    import generate_diverse_data as module
    from tqdm import tqdm
    from softglass.dask_cluster import results_as_finished
    ggd_overrides = dict(ggd_overrides, JAX_CACHE_DIR=ggd.JAX_CACHE_DIR and os.path.abspath(
        ggd.JAX_CACHE_DIR))     # the parent's folder, wherever a worker starts
    run, failed = uuid.uuid4().hex[:8], {}
    tasks = [(f"glass-{k:03d}-{run}", (k, SEED, N_ATOMS, os.path.abspath(glass_path(k)), digest,
                                       own_overrides, ggd_overrides)) for k in todo]
    keys = {key: task[0] for key, task in tasks}
    with tqdm(total=len(todo), desc="glasses", unit="glass") as bar:
        for key, result, err in results_as_finished(client, module.make_one, tasks):
            k = keys[key]
            if err is not None:     # KilledWorker, CancelledError, an error in make_one
                rec, failures = None, [f"{type(err).__name__}: {err}"]
                tqdm.write(f"  glass {k:03d} FAILED: {failures[-1]}")
            else:
                _, rec, failures = result
                if rec is None:
                    tqdm.write(f"  glass {k:03d} FAILED after {MAX_ATTEMPTS} attempts: "
                               f"{failures[-1]}")
            if rec is None:
                failed[k] = failures
            else:
                tqdm.write(glass_set.progress_line(k, rec))
            bar.update(1)
    return failed


# ================================ main ===========================================================
def configure(argv):
    """This script's and generate_glass_data's overrides applied (the latter forwarded to the
    workers), the settings checked before any cluster starts. Returns generate_glass_data and
    both overrides."""
    import generate_glass_data as ggd
    ours, theirs = split_overrides(argv, ggd)
    refuse_ineffective(theirs)
    own_overrides = apply_overrides(globals(), ours)
    ggd_overrides = apply_overrides(dict(constants_of(vars(ggd))), theirs)
    vars(ggd).update(ggd_overrides)
    if N_CONFIGS < 1 or N_WORKERS < 1:
        raise SystemExit("error: N_CONFIGS and N_WORKERS must be positive")
    try:
        ggd.check_former(ggd.POTENTIAL)
    except ValueError as err:
        raise SystemExit(f"error: {err}")
    glass_set.check_ranges(ranges())
    if ggd.POTENTIAL != "ka":
        prefix = ggd.POTENTIAL.upper() + "_"
        glass_set.check_ranges(former_ranges(ggd.POTENTIAL), names=dict(
            density=prefix + "DENSITY_RANGE", quench_rate=prefix + "QUENCH_RATE_RANGE",
            fraction=prefix + "CU_FRACTION_RANGE"))
    try:
        check_densest_box(ggd)
    except (ValueError, OSError) as err:
        raise SystemExit(f"error: {err}")
    check_writable(DATA_DIR, "DATA_DIR")
    return ggd, own_overrides, ggd_overrides


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ggd, own_overrides, ggd_overrides = configure(argv)
    glass_set.remove_stale_temp_files(DATA_DIR)
    protocol, digest = glass_protocol(ggd)
    todo = glass_set.glasses_to_make([glass_path(k) for k in range(N_CONFIGS)], SEED, N_ATOMS,
                                     protocol, digest, REGENERATE, DATA_DIR)
    where = (f"on the Dask scheduler {SCHEDULER} (its workers; N_WORKERS is not used)"
             if SCHEDULER else f"with {N_WORKERS} worker(s)")
    print(f"{N_CONFIGS} glasses of {N_ATOMS} atoms in {DATA_DIR}: {N_CONFIGS - len(todo)} done, "
          f"{len(todo)} to make {where}", flush=True)
    t0 = time.perf_counter()
    failed = {}
    if todo:
        # metadata.pkl describes a finished set: until this run has made it again, there is none
        # (a run killed halfway through a regeneration must not leave old metadata vouching for
        # a mixture of old and new glasses; augment_data.py refuses without it)
        meta_path = os.path.join(DATA_DIR, METADATA_FILE)
        if os.path.exists(meta_path):
            os.unlink(meta_path)
        try:
            failed = make_glasses(todo, digest, own_overrides, ggd_overrides)
        except KeyboardInterrupt:
            raise SystemExit("\ninterrupted: finished glasses are kept; rerun the same command "
                             "to resume")
    if failed:
        raise SystemExit(f"error: glasses {sorted(failed)} failed every attempt; rerun to retry")
    build_metadata(ggd, N_CONFIGS, digest)
    print(f"made {len(todo)} glasses in {time.perf_counter() - t0:.1f}s; wrote "
          f"{os.path.join(DATA_DIR, METADATA_FILE)}", flush=True)
    strays = glass_set.stray_files(DATA_DIR, FILE_PATTERN, N_CONFIGS)
    if strays:
        print(f"note: {len(strays)} file(s) in {DATA_DIR} look like glasses but are not in this "
              f"set of {N_CONFIGS} (not in {METADATA_FILE}, not used by the next steps, left in "
              f"place): {name_list(strays)}", flush=True)
    record_wall_time(DATA_DIR, "generate_diverse_data.py", time.perf_counter() - t0,
                     glasses_made=len(todo), glasses_total=N_CONFIGS,
                     **(dict(scheduler=SCHEDULER) if SCHEDULER else dict(workers=N_WORKERS)))


if __name__ == "__main__":
    main()
