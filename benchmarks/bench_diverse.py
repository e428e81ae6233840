"""Benchmark of generate_diverse_data.py: N_CONFIGS glasses with N_WORKERS workers in a fresh
directory (and a fresh compilation cache), wall time and time per glass, extrapolated to 120.

    python benchmarks/bench_diverse.py [--N_CONFIGS=8] [--N_WORKERS=2] [--N_ATOMS=1000]
"""
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides  # noqa: E402

N_CONFIGS = 8       # glasses to make
N_WORKERS = 2       # processes
N_ATOMS = 1000      # atoms per glass
FULL_SET = 120      # the default set size the wall time is extrapolated to


def main():
    apply_overrides(globals())
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, os.path.join(_ROOT, "generate_diverse_data.py"),
                        f"--N_CONFIGS={N_CONFIGS}", f"--N_WORKERS={N_WORKERS}",
                        f"--N_ATOMS={N_ATOMS}", f"--DATA_DIR={tmp}/data",
                        f"--JAX_CACHE_DIR={tmp}/cache"], check=True)
        wall = time.perf_counter() - t0
        with open(os.path.join(tmp, "data", "metadata.pkl"), "rb") as fh:
            records = pickle.load(fh)["records"]
    per_glass = [r["seconds"] for r in records]
    print(f"{N_CONFIGS} glasses, {N_WORKERS} workers, N={N_ATOMS}: wall {wall:.1f} s; "
          f"per glass (in its worker) median {statistics.median(per_glass):.1f} s, "
          f"min {min(per_glass):.1f}, max {max(per_glass):.1f}; "
          f"extrapolated {FULL_SET} glasses: {wall / N_CONFIGS * FULL_SET / 60:.1f} min")


if __name__ == "__main__":
    main()
