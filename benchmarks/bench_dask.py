"""Benchmark of issue 15 (Dask in generate_diverse_data.py): the same N_CONFIGS glasses of N_ATOMS
atoms with N_WORKERS workers, made side by side in one run by
  (a) the spawn pool of generate_diverse_data.py before Dask (its make_glasses loop and worker
      initializer, reproduced below, calling the same make_one), and
  (b) the Dask path of today (generate_diverse_data.make_glasses: an embedded LocalCluster),
each into a fresh data folder. Prints both wall times (worker start-up included, the loading and
checks before it and metadata.pkl after it left out: the same code in both), their ratio, and
checks that the two sets of glasses are identical, bit for bit.

CACHE="warm" (default): an untimed run of the same glasses (the Dask path) first fills a JAX
compilation cache that both timed runs share, so neither compiles; "cold": each timed run starts
with an empty cache of its own (and compiles). The pool runs first, then Dask.

    python benchmarks/bench_dask.py [--N_CONFIGS=4] [--N_ATOMS=1000] [--N_WORKERS=2]
        [--CACHE=warm] [any constant of generate_diverse_data.py or generate_glass_data.py,
        e.g. --HEAT_STEPS=300 "--QUENCH_STEPS_RANGE=(300, 600)"]
"""
import multiprocessing as mp
import os
import sys
import tempfile
import time

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides, constants_of, normalise_argv  # noqa: E402
from softglass.files import load_glass  # noqa: E402

N_CONFIGS = 4       # glasses to make, in each timed run
N_ATOMS = 1000      # atoms per glass
N_WORKERS = 2       # worker processes, in both
CACHE = "warm"      # "warm": one JAX compilation cache, filled by an untimed run first;
                    # "cold": an empty cache for each timed run


def _old_worker_init(own_overrides, ggd_overrides):
    """generate_diverse_data._worker_init before Dask: a spawned worker re-imports the scripts
    with their defaults, so the overrides of both are applied again here."""
    import generate_diverse_data as gdd
    import generate_glass_data as ggd
    vars(gdd).update(own_overrides)
    vars(ggd).update(ggd_overrides, SHOW_PROGRESS=False)
    ggd.enable_compilation_cache(ggd.JAX_CACHE_DIR)


def pool_make_glasses(todo, digest, own_overrides, ggd_overrides):
    """generate_diverse_data.make_glasses before Dask: N_WORKERS spawned processes, one glass per
    task in imap_unordered, one bar over glasses; returns the failures {k: messages}."""
    import generate_diverse_data as gdd
    from tqdm import tqdm
    failed = {}
    tasks = [(k, gdd.SEED, gdd.N_ATOMS, os.path.abspath(gdd.glass_path(k)), digest,
              own_overrides, ggd_overrides) for k in todo]
    ctx = mp.get_context("spawn")     # JAX is not fork-safe
    with ctx.Pool(min(gdd.N_WORKERS, len(todo)), initializer=_old_worker_init,
                  initargs=(own_overrides, ggd_overrides)) as pool, \
            tqdm(total=len(todo), desc="glasses (pool)", unit="glass") as bar:
        for k, rec, failures in pool.imap_unordered(gdd.make_one, tasks):
            if rec is None:
                failed[k] = failures
            bar.update(1)
        pool.close()
        pool.join()
    return failed


def _timed(make, data_dir, cache_dir, own_overrides, ggd_overrides):
    """Wall seconds of make(...) for glasses 0..N_CONFIGS-1 into the fresh `data_dir`."""
    import generate_diverse_data as gdd
    import generate_glass_data as ggd
    os.makedirs(data_dir)
    own_overrides = dict(own_overrides, DATA_DIR=data_dir)
    ggd_overrides = dict(ggd_overrides, JAX_CACHE_DIR=cache_dir)
    vars(gdd).update(own_overrides)
    vars(ggd).update(ggd_overrides)
    _, digest = gdd.glass_protocol(ggd)
    environ = dict(os.environ)    # a nanny sets PYTHONHASHSEED here: not for the next run
    t0 = time.perf_counter()
    failed = make(list(range(N_CONFIGS)), digest, own_overrides, ggd_overrides)
    wall = time.perf_counter() - t0
    os.environ.clear()
    os.environ.update(environ)
    if failed:
        raise SystemExit(f"error: glasses {sorted(failed)} failed: {failed}")
    return wall


def _identical(dir_a, dir_b):
    """Whether every glass of the two folders has the same arrays, energy and attempt."""
    for k in range(N_CONFIGS):
        name = f"glass_data_{k:03d}.pkl"
        a, b = load_glass(os.path.join(dir_a, name)), load_glass(os.path.join(dir_b, name))
        if not (all(np.array_equal(a[key], b[key]) for key in
                    ("positions", "species", "softness_score", "eigenvalues"))
                and a["energy"] == b["energy"]
                and a["parameters"]["attempt"] == b["parameters"]["attempt"]):
            return False
    return True


def main(argv=None):
    argv = normalise_argv(sys.argv[1:] if argv is None else argv)
    mine = {f"--{n}" for n in constants_of(globals())}
    apply_overrides(globals(), [a for a in argv if a.split("=", 1)[0] in mine])
    if CACHE not in ("warm", "cold"):
        raise SystemExit(f"error: CACHE must be 'warm' or 'cold', not {CACHE!r}")
    import generate_diverse_data as gdd
    import generate_glass_data as ggd
    ours, theirs = gdd.split_overrides(
        [a for a in argv if a.split("=", 1)[0] not in mine]
        + [f"--N_CONFIGS={N_CONFIGS}", f"--N_ATOMS={N_ATOMS}", f"--N_WORKERS={N_WORKERS}"], ggd)
    gdd.refuse_ineffective(theirs)
    own_overrides = apply_overrides(vars(gdd), ours)
    ggd_overrides = apply_overrides(dict(constants_of(vars(ggd))), theirs)
    with tempfile.TemporaryDirectory() as tmp:
        def cache(label):
            return os.path.join(tmp, "cache" if CACHE == "warm" else f"cache_{label}")
        if CACHE == "warm":
            print("filling the JAX compilation cache (untimed):", flush=True)
            _timed(gdd.make_glasses, os.path.join(tmp, "warm_up"), cache("warm_up"),
                   own_overrides, ggd_overrides)
        walls = {}
        for label, make in (("pool", pool_make_glasses), ("dask", gdd.make_glasses)):
            print(f"{label}:", flush=True)
            walls[label] = _timed(make, os.path.join(tmp, label), cache(label), own_overrides,
                                  ggd_overrides)
        same = _identical(os.path.join(tmp, "pool"), os.path.join(tmp, "dask"))
    print(f"{N_CONFIGS} glasses of {N_ATOMS} atoms, {N_WORKERS} workers, JAX cache {CACHE}"
          + (" (filled by an untimed run first)" if CACHE == "warm" else " (each run its own)")
          + f":\n  (a) spawn pool (before Dask): {walls['pool']:7.1f} s"
          f"\n  (b) Dask LocalCluster (now):  {walls['dask']:7.1f} s"
          f"\n  ratio (b)/(a): {walls['dask'] / walls['pool']:.3f}; glasses identical: "
          f"{'yes' if same else 'NO'}", flush=True)
    if not same:
        raise SystemExit("error: the two paths made different glasses")


if __name__ == "__main__":
    main()
