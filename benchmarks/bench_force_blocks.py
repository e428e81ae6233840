"""Why the dense force kernel slows down at N = 10^4, and what the blocked sum buys (issue 14).

    python benchmarks/bench_force_blocks.py [--GLASS=data/glass_data_10k.pkl]
        [--BLOCKS=0,64,128,256,1000] [--ORDERS=stored,random,cells,morton] [--OUT_FILE=...]

One glass's inherent structure (GLASS, any size; `python generate_glass_data.py --N_ATOMS=10000`
writes the default), THREADS cores (bench_lammps.pin_threads), float32 and float64: ms per force
call of generate_glass_data.dense_pair_forces on the pipeline's FIRE list (skin SKIN_MINIMIZE), the
median of CALLS calls after one that compiles,
  - per block size (BLOCKS; 0 = one block, the whole list at once, the kernel up to
    FORCE_ONE_BLOCK_MAX_ATOMS atoms), with the largest force difference to one block;
  - per atom order (ORDERS, one block): the stored order, a random permutation, atoms sorted by
    cells of CELL_WIDTH sigma (row-major) and by a Morton (Z-order) code, as LAMMPS sorts its
    atoms in space every 1000 steps. The same forces, permuted.
With FIRE_REPEATS > 0, also the pipeline's FIRE phase (generate_glass_data.inherent_structure)
from one quenched state of FIRE_N_ATOMS atoms (make_system, PREP_HEAT_STEPS + PREP_QUENCH_STEPS
Brownian steps), alternately with one block and with generate_glass_data's blocks: seconds, steps,
ms per step (compilation included once) and the minimum's energy.
Measured (runs/scaling/force_blocks/): the order does not matter (random memory
order is not the cost), the block size does (the (3, N, M) planes of one block stay in cache).
"""
import json
import os
import statistics
import sys
import time

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from softglass.cli import apply_overrides, constants_of  # noqa: E402
from softglass.files import atomic_write_bytes  # noqa: E402
from bench_lammps import pin_threads  # noqa: E402

GLASS = "data/glass_data_10k.pkl"    # a glass of generate_glass_data.py (any size)
BLOCKS = "0,64,128,256,1000"         # rows per block (0: one block), comma-separated
ORDERS = "stored,random,cells,morton"    # atom orders timed with one block
CELL_WIDTH = 1.4                     # sigma; cells of the "cells" order (~ first-shell radius)
CALLS = 15                           # timed force calls per measurement (median)
DTYPES = "float32,float64"           # precisions
THREADS = 1                          # cores (bench_lammps.pin_threads: 1 = XLA on one thread)
CPU = 0                              # the first core pinned to
FIRE_REPEATS = 0                     # FIRE phase A/B runs per variant (0: none)
FIRE_N_ATOMS = 10000                 # atoms of the FIRE A/B's glass
PREP_HEAT_STEPS = 500                # Brownian steps at T = 0.44 before its quench
PREP_QUENCH_STEPS = 1000             # Brownian steps of its quench to T = 0
OUT_FILE = ""                        # JSON of the numbers ("" writes none)


def atom_order(name, positions, box, rng):
    """Permutation of the atoms: 'stored', 'random', 'cells' (row-major cells of CELL_WIDTH) or
    'morton' (interleaved bits of the 10-bit cell coordinates)."""
    wrapped = np.mod(positions, box) / box
    if name == "stored":
        return np.arange(len(positions))
    if name == "random":
        return rng.permutation(len(positions))
    if name == "cells":
        n = max(1, int(box // CELL_WIDTH))
        c = np.minimum((wrapped * n).astype(np.int64), n - 1)
        return np.lexsort((c[:, 2], c[:, 1], c[:, 0]))
    if name == "morton":
        q = np.minimum((wrapped * 1024).astype(np.uint64), 1023)
        code = np.zeros(len(positions), np.uint64)
        for bit in range(10):
            for axis in range(3):
                code |= ((q[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit
                                                                                  + axis)
        return np.argsort(code, kind="stable")
    raise ValueError(f"ORDERS: unknown order {name!r}")


def force_ms(ggd, system, positions, dtype, block_rows):
    """(median ms per call, forces) of the dense kernel in `dtype` on the FIRE list."""
    import jax
    import jax.numpy as jnp
    p = dynamics.params(system, dtype, r_list=system["r_cutoff"])
    r = jnp.asarray(positions, dtype)
    nbrs = neighbours.allocate_neighbors(ggd.engine().neighbour_list_fn(system["box"], system["r_cutoff"],
                                                       ggd.SKIN_MINIMIZE), r)
    fn = forces.dense_pair_forces(potentials.smoothed_lj(p["r_onset"], p["r_cutoff"]), p["box"], None,
                               block_rows)
    call = jax.jit(lambda r, nb: fn(r, nb, species=p["species"], sigma=p["sigma"],
                                    epsilon=p["epsilon"]))
    out = np.asarray(call(r, nbrs))                       # compiles
    times = []
    for _ in range(CALLS):
        t0 = time.perf_counter()
        call(r, nbrs).block_until_ready()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times), out, nbrs.idx.shape


def fire_ab(ggd):
    """[(variant, seconds, FIRE steps, E/N)] of inherent_structure from one quenched state."""
    ggd.SHOW_PROGRESS = False
    system = ggd.make_system(n_atoms=FIRE_N_ATOMS)
    ggd.HEAT_STEPS = PREP_HEAT_STEPS
    r0, _, _ = ggd.quenched_configuration(system, ggd.TEMPERATURE, PREP_QUENCH_STEPS, 0,
                                          log=lambda *a: None)
    blocked_above = ggd.FORCE_ONE_BLOCK_MAX_ATOMS
    rows = []
    for _ in range(FIRE_REPEATS):
        for variant, limit in (("one block", FIRE_N_ATOMS), ("blocks", blocked_above)):
            ggd.FORCE_ONE_BLOCK_MAX_ATOMS = limit
            t0 = time.perf_counter()
            _, energy, _, steps, _ = ggd.inherent_structure(r0, system)
            seconds = time.perf_counter() - t0
            rows.append(dict(variant=variant, seconds=seconds, steps=steps,
                             ms_per_step=1e3 * seconds / steps, energy_per_atom=energy /
                             FIRE_N_ATOMS))
            print(f"FIRE {variant:9s} {seconds:7.1f} s, {steps} steps, "
                  f"{rows[-1]['ms_per_step']:.2f} ms/step, E/N {energy / FIRE_N_ATOMS:.6f}",
                  flush=True)
    ggd.FORCE_ONE_BLOCK_MAX_ATOMS = blocked_above
    return rows


def main():
    apply_overrides(globals())
    cores = pin_threads(THREADS, CPU)
    import jax
    import jax.numpy as jnp
    import generate_glass_data as ggd
    global dynamics, forces, neighbours, potentials                  # imported after the threads are pinned
    from softglass import dynamics, forces, neighbours, potentials
    from softglass.files import load_glass, system_of
    ggd.enable_compilation_cache("")
    snap = load_glass(GLASS)
    system = system_of(snap)
    positions = np.asarray(snap["positions"], np.float64)
    print(f"{GLASS}: N = {len(positions)}, cores {cores}, JAX {jax.__version__}")
    results = {}
    for dtype in (getattr(jnp, d) for d in DTYPES.split(",")):
        name = np.dtype(dtype).name
        rows = results.setdefault(name, dict(blocks={}, orders={}))
        reference = None
        for b in (int(x) for x in BLOCKS.split(",")):
            ms, forces, shape = force_ms(ggd, system, positions, dtype, b)
            reference = forces if reference is None else reference
            diff = float(np.max(np.abs(forces - reference)))
            rows["blocks"][b] = dict(ms=ms, max_diff_to_first=diff, buffer=list(shape))
            print(f"{name:8s} block {b:5d} rows  {ms:8.2f} ms   max|F - F(first)| {diff:.1e}",
                  flush=True)
        rng = np.random.default_rng(0)
        for order in ORDERS.split(","):
            o = atom_order(order, positions, system["box"], rng)
            sys_o = dict(system, species=np.asarray(system["species"])[o])
            ms, _, _ = force_ms(ggd, sys_o, positions[o], dtype, 0)
            rows["orders"][order] = dict(ms=ms)
            print(f"{name:8s} order {order:8s}   {ms:8.2f} ms (one block)", flush=True)
    fire = fire_ab(ggd) if FIRE_REPEATS > 0 else []
    if OUT_FILE:
        atomic_write_bytes(OUT_FILE, json.dumps(dict(
            glass=GLASS, n_atoms=len(positions), cores=cores, results=results, fire=fire,
            constants=constants_of(globals())), indent=2).encode())
        print(f"wrote {OUT_FILE}")


if __name__ == "__main__":
    main()
