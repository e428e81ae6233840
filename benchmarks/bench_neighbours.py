"""Benchmark of the neighbour list at the sizes the field uses: one rebuild with jax-md's brute
force (compiled, as NEIGHBOUR_LIST="jax" runs it inside the loop) and with the host k-d tree
("kdtree", NeighbourList.rebuild between compiled chunks: the periodic k-d tree query, the
ordering of its pairs into jax-md's list and the copy to the device), and one force evaluation on
the list, per N, precision and list format (Dense for FORCE_KERNEL "dense", the default;
OrderedSparse for "grad"); medians of REPEATS, on CPU (one core: bench_lammps.pin_threads).
The two lists hold the same pairs in the same order (tests/test_glass_physics.py), so only the
rebuild differs.

    python benchmarks/bench_neighbours.py [--SIZES=1000,4000,10000] [--REPEATS=5]
        [--KERNELS=dense,grad] [--OUT_FILE=runs/scaling/bench_neighbours.json]
"""
import json
import os
import statistics
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from softglass.cli import apply_overrides, constants_of  # noqa: E402
from softglass.files import atomic_write_bytes  # noqa: E402
from bench_lammps import pin_threads  # noqa: E402

SIZES = "1000,4000,10000"       # atoms (density 1.2, KA 80:20, random positions)
REPEATS = 5                     # timed calls per measurement (after one compiling call)
SKIN = 0.3                      # sigma: generate_glass_data's SKIN_MINIMIZE (FIRE, descents)
KERNELS = "dense,grad"          # FORCE_KERNEL values: the list format and the force timed
DTYPES = "float32,float64"
BRUTE_FORCE_MAX_ATOMS = 10000   # jax-md's brute force needs ~7 GB at 10^4; skip it above this
THREADS = 1                     # cores (bench_lammps.pin_threads)
CPU = 0                         # the first core pinned to
OUT_FILE = ""                   # JSON of the rows ("" writes none)


def median_ms(fn, *args):
    import jax
    jax.block_until_ready(fn(*args))                      # compile (or warm up)
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def force_fn(ggd, system, kernel, dtype):
    """Forces on a list of `kernel`'s format: dense_pair_forces, or -grad of the pair energy."""
    import jax
    import jax.numpy as jnp
    from jax_md import smap, space
    box, pair = system["box"], potentials.smoothed_lj(system["r_onset"], system["r_cutoff"])
    kw = dict(species=jnp.asarray(system["species"], jnp.int32),
              sigma=jnp.asarray(system["sigma"], dtype), epsilon=jnp.asarray(system["epsilon"],
                                                                           dtype))
    if kernel != "grad":                # a Dense list's kernel
        n = len(system["species"])
        force_fn = forces.pair_forces(pair, box, None, kernel, forces.force_block_rows(
            n, ggd.FORCE_BLOCK_ROWS, ggd.FORCE_ONE_BLOCK_MAX_ATOMS))
        return jax.jit(lambda r, nb: force_fn(r, nb, **kw))
    displacement, _ = space.periodic(box)
    energy = smap.pair_neighbor_list(pair, space.canonicalize_displacement_or_metric(
        displacement))
    return jax.jit(jax.grad(lambda r, nb: -energy(r, neighbor=nb, **kw)))


def main():
    apply_overrides(globals())
    cores = pin_threads(THREADS, CPU)
    import jax
    import jax.numpy as jnp
    import numpy as np
    import generate_glass_data as ggd
    global forces, neighbours, potentials                  # imported after the threads are pinned
    from softglass import forces, neighbours, potentials
    from softglass import pairs
    print(f"cores {cores}")
    print(f"{'N':>6} {'dtype':>8} {'kernel':>6} {'jax-md ms':>10} {'k-d tree ms':>12} "
          f"{'(query ms)':>11} {'force ms':>9} {'slots':>9}")
    rows = []
    for n in (int(s) for s in str(SIZES).split(",")):
        system = ggd.make_system(n_atoms=n)
        box, r_cut = system["box"], system["r_cutoff"]
        for dtype in (jnp.dtype(d) for d in DTYPES.split(",")):
            pos = jnp.asarray(np.random.default_rng(0).uniform(0, box, (n, 3)), dtype)
            moved = jnp.mod(pos + 0.5 * SKIN, box)       # every atom past skin/2: a rebuild
            query = median_ms(lambda: pairs.periodic_pairs(np.asarray(moved, np.float64), box,
                                                         r_cut + SKIN))
            for kernel in KERNELS.split(","):
                ggd.FORCE_KERNEL = kernel
                row = dict(n_atoms=n, dtype=dtype.name, kernel=kernel, kdtree_query_ms=query)
                ggd.NEIGHBOUR_LIST = "kdtree"
                neighbour_fn = ggd.engine().neighbour_list_fn(box, r_cut, SKIN)
                nbrs = neighbours.allocate_neighbors(neighbour_fn, pos)
                row["kdtree_rebuild_ms"] = median_ms(
                    lambda: neighbour_fn.rebuild(moved, nbrs).idx)
                row["force_ms"] = median_ms(force_fn(ggd, system, kernel, dtype), pos, nbrs)
                row["slots"] = int(np.prod(nbrs.idx.shape))
                row["jax_md_rebuild_ms"] = None
                if n <= BRUTE_FORCE_MAX_ATOMS:
                    ggd.NEIGHBOUR_LIST = "jax"
                    brute = neighbours.allocate_neighbors(
                        ggd.engine().neighbour_list_fn(box, r_cut, SKIN), pos)
                    update = jax.jit(neighbour_fn.jax_md(brute.format).update)
                    assert not bool(update(moved, brute).did_buffer_overflow)
                    row["jax_md_rebuild_ms"] = median_ms(update, moved, brute)
                    row["same_list"] = bool(np.array_equal(    # (float32: a pair within
                        np.asarray(update(moved, brute).idx),     # rounding of r_list may differ)
                        np.asarray(neighbour_fn.rebuild(moved, nbrs).idx)))
                rows.append(row)
                jm = row["jax_md_rebuild_ms"]
                print(f"{n:6d} {dtype.name:>8} {kernel:>6} "
                      f"{'-' if jm is None else f'{jm:.2f}':>10} {row['kdtree_rebuild_ms']:12.2f} "
                      f"{query:11.2f} {row['force_ms']:9.2f} {row['slots']:9d}", flush=True)
    if OUT_FILE:
        atomic_write_bytes(OUT_FILE, json.dumps(dict(
            command="python benchmarks/bench_neighbours.py " + " ".join(sys.argv[1:]),
            constants=constants_of(globals()), cores=cores, rows=rows), indent=1).encode())


if __name__ == "__main__":
    main()
