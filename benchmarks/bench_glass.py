"""Benchmark of generate_glass_data.py on this machine.

1. Whole script, wall time, as a user runs it: once with an empty persistent compilation cache
   (cold: includes all XLA compilation) and once with the cache it left (warm).
2. In one process, REPEATS glasses of different seeds: time per phase, median over the glasses
   after the first (compiled code reused, as generate_diverse_data.py does).

    python benchmarks/bench_glass.py [--N_ATOMS=1000] [--REPEATS=3] [--FORCE_KERNEL=dense]

Phases per glass with two force kernels, one after the other on the same day (the host's speed
varies from day to day): run it with --FORCE_KERNEL=dense, then with the default.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides  # noqa: E402

N_ATOMS = 1000      # atoms per glass
REPEATS = 3         # glasses timed in one process (the first includes compilation)
FORCE_KERNEL = ""   # generate_glass_data's FORCE_KERNEL for both parts ("": its default)


def whole_script(cache_dir, data_dir):
    t0 = time.perf_counter()
    subprocess.run([sys.executable, os.path.join(_ROOT, "generate_glass_data.py"),
                    f"--N_ATOMS={N_ATOMS}", f"--DATA_DIR={data_dir}", f"--JAX_CACHE_DIR={cache_dir}"]
                   + ([f"--FORCE_KERNEL={FORCE_KERNEL}"] if FORCE_KERNEL else []),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    apply_overrides(globals())
    with tempfile.TemporaryDirectory() as tmp:
        cold = whole_script(os.path.join(tmp, "cache"), tmp)
        warm = whole_script(os.path.join(tmp, "cache"), tmp)
    print(f"whole script, N={N_ATOMS}: cold cache {cold:.1f} s, warm cache {warm:.1f} s (wall)")

    import generate_glass_data as ggd
    ggd.enable_compilation_cache("")
    ggd.FORCE_KERNEL = FORCE_KERNEL or ggd.FORCE_KERNEL
    print(f"FORCE_KERNEL {ggd.FORCE_KERNEL}")
    runs = []
    for seed in range(REPEATS):
        t0 = time.perf_counter()
        snap = ggd.make_glass(n_atoms=N_ATOMS, seed=seed, log=lambda *a: None)
        sec = dict(snap["parameters"]["seconds"], total=time.perf_counter() - t0)
        sec["fire_steps"] = snap["parameters"]["n_fire_steps"]
        runs.append(sec)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.1f}" for k, v in sec.items())
              + f"  E/N {snap['energy'] / N_ATOMS:.4f}")
    later = runs[1:] or runs
    print(f"median over seeds 1..{REPEATS - 1} (compiled): " +
          ", ".join(f"{k} {statistics.median(r[k] for r in later):.2f}" for k in later[0]))


if __name__ == "__main__":
    main()
