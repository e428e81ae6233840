"""Benchmark of the neighbour list at the sizes the field uses: one rebuild (inside the compiled
loop, as the phases do it) with jax-md's brute force (NEIGHBOUR_LIST="jax") and with the host k-d
tree ("kdtree"), and one force evaluation on the list, per N and precision; medians of REPEATS.
The two lists hold the same pairs in the same order (tests/test_glass_physics.py), so only the
rebuild differs.

    python tests/benchmarks/bench_neighbours.py [--SIZES=(1000,4000,10000)] [--REPEATS=5]
"""
import os
import statistics
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, _ROOT)

from glass_io import apply_overrides  # noqa: E402

SIZES = (1000, 4000, 10000)     # atoms (density 1.2, KA 80:20, random positions)
REPEATS = 5                     # timed calls per measurement (after one compiling call)
SKIN = 0.3                      # sigma: generate_glass_data's SKIN_MINIMIZE (FIRE, descents)
KINDS = ("jax", "kdtree")       # NEIGHBOUR_LIST values to compare
BRUTE_FORCE_MAX_ATOMS = 10000   # jax-md's brute force needs ~7 GB at 10^4; skip it above this


def median_ms(fn, *args):
    import jax
    jax.block_until_ready(fn(*args))                      # compile
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main():
    apply_overrides(globals())
    import jax
    import jax.numpy as jnp
    import numpy as np
    import generate_glass_data as ggd
    from jax_md import smap, space
    print(f"{'N':>6} {'dtype':>8} {'list':>7} {'rebuild ms':>11} {'force ms':>9} {'pairs':>9}")
    for n in SIZES:
        system = ggd.make_system(n_atoms=n)
        box, r_cut = system["box"], system["r_cutoff"]
        displacement, _ = space.periodic(box)
        pair_energy = smap.pair_neighbor_list(ggd.smoothed_lj(system["r_onset"], r_cut),
                                              space.canonicalize_displacement_or_metric(
                                                  displacement))
        for dtype in (jnp.float32, jnp.float64):
            pos = jnp.asarray(np.random.default_rng(0).uniform(0, box, (n, 3)), dtype)
            moved = jnp.mod(pos + 0.5 * SKIN, box)       # every atom past skin/2: a rebuild
            kw = dict(species=jnp.asarray(system["species"], jnp.int32),
                      sigma=jnp.asarray(system["sigma"], dtype),
                      epsilon=jnp.asarray(system["epsilon"], dtype))
            force = jax.jit(jax.grad(lambda r, nb: pair_energy(r, neighbor=nb, **kw)))
            for kind in KINDS:
                if kind == "jax" and n > BRUTE_FORCE_MAX_ATOMS:
                    continue
                ggd.NEIGHBOUR_LIST = kind
                neighbour_fn = ggd.neighbor_list_fn(box, r_cut, SKIN)
                nbrs = ggd.allocate_neighbors(neighbour_fn, pos)
                rebuild = jax.jit(neighbour_fn.update)
                assert not bool(rebuild(moved, nbrs).did_buffer_overflow)
                print(f"{n:6d} {jnp.dtype(dtype).name:>8} {kind:>7} "
                      f"{median_ms(rebuild, moved, nbrs):11.2f} {median_ms(force, pos, nbrs):9.2f}"
                      f" {int(nbrs.max_occupancy):9d}", flush=True)


if __name__ == "__main__":
    main()
