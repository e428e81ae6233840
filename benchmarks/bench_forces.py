"""The force kernels of generate_glass_data (FORCE_KERNEL): "grad", -jax.grad of the pair energy on
a half (OrderedSparse) list, whose backward pass is a scatter-add, against "dense", explicit pair
forces summed along the rows of a Dense list (every pair twice, no scatter), and "dense_r2" (the
default), the same sums with the pair term in closed form in r^2. One core; per precision, ms per
force evaluation (on the FIRE list, skin SKIN_MINIMIZE, and on the Brownian list, skin
SKIN_DYNAMICS), ms per Brownian step at T = TEMPERATURE and ms per FIRE step, each the median of
REPEATS, and each kernel's ratio to the first of KERNELS (below 1: faster). Also one host rebuild of
each list (k-d tree and sort, the same for either precision).

    python benchmarks/bench_forces.py [--N_ATOMS=1000] [--STEPS=500] [--FIRE_STEPS=500]
        [--REPEATS=3] [--DTYPES=float32,float64] [--OUT_FILE=forces_1k.json]

The starting state is bench_lammps.py's: generate_glass_data's make_system and
quenched_configuration at N_ATOMS with shorter heat and quench (PREP_HEAT_STEPS,
PREP_QUENCH_STEPS), made with FORCE_KERNEL = "grad"; only the cost per step is measured. Steps
are timed as the pipeline runs them (run_phase over the compiled chunks: neighbour-list
allocation and rebuilds included, compilation excluded: a WARMUP_STEPS run compiles first);
Brownian and FIRE run in both precisions here (the pipeline: Brownian float32, FIRE float64).
FIRE runs a fixed FIRE_STEPS (tolerance 0), so both kernels time the same number of steps.
One core as in bench_lammps.py (THREADS, CPU: every thread pinned, XLA told to use one thread).
"""
import json
import os
import statistics
import sys
import time
from functools import partial

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from softglass.cli import apply_overrides, constants_of  # noqa: E402
from softglass.files import atomic_write_bytes  # noqa: E402
from bench_lammps import pin_threads  # noqa: E402

N_ATOMS = 1000          # atoms (KA 80:20 at generate_glass_data's density 1.2); 10000 works too
SEED = 0                # seeds the glass (positions, species) and the Brownian noise
PREP_HEAT_STEPS = 500   # Brownian steps at T = 0.44 building the starting state (pipeline: 2000)
PREP_QUENCH_STEPS = 1000    # Brownian steps of the ramp to T = 0 ending it (pipeline: 7000)
FORCE_CALLS = 20        # force evaluations per timed run (one compiled call each)
STEPS = 500             # Brownian steps per timed run
FIRE_STEPS = 500        # FIRE steps per timed run
WARMUP_STEPS = 20       # steps run before timing, not counted (compiles)
REPEATS = 3             # timed runs per measurement; the median is reported
KERNELS = "grad,dense,dense_r2"  # FORCE_KERNEL values compared, comma-separated (the first is
                        # the reference)
DTYPES = "float32,float64"  # precisions, comma-separated
THREADS = 1             # cores: 1 pins the process to core CPU and XLA to one thread
CPU = 0                 # first core pinned to
OUT_FILE = ""           # JSON of the numbers ("" writes none)


def median_ms(run, per):
    """run() REPEATS times; the median ms per unit (`per` units a run) and every run's."""
    runs = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        run()
        runs.append(1e3 * (time.perf_counter() - t0) / per)
    return dict(ms=statistics.median(runs), runs_ms=runs)


def force_timing(ggd, positions, system, dtype, skin):
    """ms per force evaluation on the list FORCE_KERNEL allocates, and the list's size."""
    import jax
    import jax.numpy as jnp
    from jax_md import quantity
    p = dynamics.params(system, dtype, r_list=system["r_cutoff"])
    r = jnp.asarray(positions, dtype)
    nbrs = neighbours.allocate_neighbors(ggd.engine().neighbour_list_fn(system["box"], system["r_cutoff"], skin), r)

    @jax.jit
    def forces(r, nbrs, p):
        _, _, energy_or_forces = forces.pair_system(p["box"], p["r_list"], skin,
                                             potentials.smoothed_lj(p["r_onset"], p["r_cutoff"]),
                                             **ggd.engine().statics(len(r)))
        return quantity.canonicalize_force(energy_or_forces)(
            r, neighbor=nbrs, species=p["species"], sigma=p["sigma"], epsilon=p["epsilon"])

    jax.block_until_ready(forces(r, nbrs, p))                 # compile

    def run():
        for _ in range(FORCE_CALLS):
            out = forces(r, nbrs, p)
        jax.block_until_ready(out)

    used = np.asarray(nbrs.idx) < len(positions)
    return dict(median_ms(run, FORCE_CALLS), buffer=list(nbrs.idx.shape),
                pairs=int(used.sum()) // 2,   # OrderedSparse: two indices a pair; Dense: two rows
                filled=float(used.mean()))    # of the slots, each evaluated whether used or not


def brownian_run(ggd, positions, system, dtype, steps):
    """generate_glass_data.brownian at constant T, in `dtype` (the pipeline's is float32)."""
    import jax
    import jax.numpy as jnp
    from jax_md import simulate
    T = ggd.TEMPERATURE
    p = dynamics.params(system, dtype, r_list=system["r_cutoff"], dt=ggd.DT, gamma=ggd.GAMMA,
                    kT_start=T, kT_end=T, total=max(steps, 1))
    state = simulate.BrownianState(jnp.asarray(positions, dtype), jnp.asarray(1, dtype),
                                   jax.random.PRNGKey(SEED))
    chunk = partial(dynamics._brownian_chunk, params=p, skin=ggd.SKIN_DYNAMICS,
                    **ggd.engine().statics(len(positions)))
    state, _ = dynamics.run_phase(chunk, state, system, system["r_cutoff"], ggd.SKIN_DYNAMICS,
                                  steps, "bench", engine=ggd.engine())
    jax.block_until_ready(state.position)


def fire_run(ggd, positions, system, dtype, steps, mass):
    """generate_glass_data.inherent_structure's FIRE for `steps` steps (tolerance 0), in `dtype`
    (the pipeline's is float64)."""
    import jax
    import jax.numpy as jnp
    p = dynamics.params(system, dtype, r_list=system["r_cutoff"], tol=0.0, mass=mass)
    r = jnp.asarray(positions, dtype)
    static = dict(skin=ggd.SKIN_MINIMIZE, dt_start=ggd.FIRE_DT_START, dt_max=ggd.FIRE_DT_MAX,
                  **ggd.engine().statics(len(positions)))
    neighbor_fn = ggd.engine().neighbour_list_fn(system["box"], system["r_cutoff"], ggd.SKIN_MINIMIZE)
    state = dynamics._fire_init(r, neighbours.allocate_neighbors(neighbor_fn, r), p, **static)
    state, _ = dynamics.run_phase(partial(dynamics._fire_chunk, params=p, **static), state,
                                  system, system["r_cutoff"], ggd.SKIN_MINIMIZE, steps, "bench",
                                  engine=ggd.engine())
    jax.block_until_ready(state.position)


def main():
    apply_overrides(globals())
    kernels, dtypes = KERNELS.split(","), DTYPES.split(",")
    cores = pin_threads(THREADS, CPU)
    import jax
    import jax.numpy as jnp
    import generate_glass_data as ggd
    global dynamics, neighbours, potentials                  # imported after the threads are pinned
    from softglass import dynamics, neighbours, potentials
    ggd.SHOW_PROGRESS = False
    ggd.enable_compilation_cache("")
    print(f"N = {N_ATOMS}, cores {cores}, JAX {jax.__version__} ({jax.default_backend()})",
          flush=True)

    t0 = time.perf_counter()
    ggd.FORCE_KERNEL = "grad"
    system = ggd.make_system(n_atoms=N_ATOMS, seed=SEED)
    ggd.HEAT_STEPS = PREP_HEAT_STEPS
    r0, _, _ = ggd.quenched_configuration(system, ggd.TEMPERATURE, PREP_QUENCH_STEPS, SEED,
                                          log=lambda *a: None)
    r0 = np.mod(r0, system["box"])
    mass = dynamics.fire_mass(r0, system, ggd.fire_settings())
    print(f"starting state: {PREP_HEAT_STEPS} heat + {PREP_QUENCH_STEPS} quench steps, "
          f"{time.perf_counter() - t0:.1f} s; FIRE mass {mass:.3g}", flush=True)

    box, r_host = system["box"], system["r_cutoff"]
    host = {}
    for name, build, skin in (("ordered_pairs", neighbours.ordered_pairs, ggd.SKIN_MINIMIZE),
                              ("dense_neighbours", neighbours.dense_neighbours, ggd.SKIN_MINIMIZE)):
        host[name] = median_ms(lambda: build(r0, box, r_host + skin), 1)
        print(f"  host rebuild {name} (skin {skin}): {host[name]['ms']:.2f} ms", flush=True)

    results = {}
    for dtype_name in dtypes:
        dtype = jnp.dtype(dtype_name).type
        for kernel in kernels:
            ggd.FORCE_KERNEL = kernel
            res = results.setdefault(dtype_name, {}).setdefault(kernel, {})
            for label, skin in (("force FIRE list", ggd.SKIN_MINIMIZE),
                                ("force Brownian list", ggd.SKIN_DYNAMICS)):
                res[label] = force_timing(ggd, r0, system, dtype, skin)
            brownian_run(ggd, r0, system, dtype, WARMUP_STEPS)            # compile
            res["Brownian step"] = median_ms(
                lambda: brownian_run(ggd, r0, system, dtype, STEPS), STEPS)
            fire_run(ggd, r0, system, dtype, WARMUP_STEPS, mass)           # compile
            res["FIRE step"] = median_ms(
                lambda: fire_run(ggd, r0, system, dtype, FIRE_STEPS, mass), FIRE_STEPS)
            print(f"  {dtype_name} {kernel}: " + ", ".join(
                f"{k} {v['ms']:.3f} ms" for k, v in res.items()), flush=True)
    ggd.FORCE_KERNEL = "grad"

    ref = kernels[0]
    print(f"\nN = {N_ATOMS}, {len(cores)} core(s), median of {REPEATS}, ms; ratio = kernel / "
          f"{ref} (below 1: faster than {ref})")
    print(f"{'dtype':<8} {'measure':<20} " + " ".join(f"{k:>10}" for k in kernels)
          + " " + " ".join(f"{k + '/' + ref:>12}" for k in kernels[1:]) + "   buffers")
    for dtype_name, by_kernel in results.items():
        for measure in by_kernel[ref]:
            ms = [by_kernel[k][measure]["ms"] for k in kernels]
            buffers = "; ".join(f"{k} {b['buffer']} ({b['filled']:.0%} filled)" for k, b in
                                ((k, by_kernel[k][measure]) for k in kernels) if "buffer" in b)
            print(f"{dtype_name:<8} {measure:<20} " + " ".join(f"{m:10.3f}" for m in ms) + " "
                  + " ".join(f"{m / ms[0]:12.2f}" for m in ms[1:]) + "   " + buffers)

    if OUT_FILE:
        out = dict(constants=constants_of(globals()), cores=cores, host_rebuild=host,
                   results=results, fire_mass=mass,
                   settings=dict(skin_dynamics=ggd.SKIN_DYNAMICS, skin_minimize=ggd.SKIN_MINIMIZE,
                                 neighbour_list=ggd.NEIGHBOUR_LIST,
                                 capacity_margin=ggd.CAPACITY_MARGIN),
                   versions=dict(jax=jax.__version__, numpy=np.__version__))
        atomic_write_bytes(OUT_FILE, (json.dumps(out, indent=1, default=float) + "\n").encode())
        print(f"wrote {OUT_FILE}")


if __name__ == "__main__":
    main()
