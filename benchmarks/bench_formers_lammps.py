"""Side-by-side speed of our MD and LAMMPS for the other glass formers: ms per Nose-Hoover NVT
step of the melt (Cu64Zr36 with Mendelev's EAM, amorphous Si with Stillinger-Weber), one core
each, at each size of N_ATOMS. Prints a table (ours, LAMMPS, ratio) and writes OUT_FILE.

    python benchmarks/bench_formers_lammps.py [--FORMERS=cuzr,sw] [--N_ATOMS=1000,10000]
        [--STEPS=300] [--REPEATS=3] [--OUT_FILE=runs/formers_speed/formers_speed.json]

Both engines start from the same state: generate_glass_data's grid start for the former, melted
for PREP_STEPS steps by our MD at the former's melt temperature (LAMMPS reads it from a data file
at full precision, its velocities drawn afresh at that temperature). What each runs, per step:
  ours    softglass.molecular_dynamics.nvt (jax-md's Nose-Hoover chain, forces by reverse-mode
          autodiff of the potential's energy on a Dense k-d tree list rebuilt on the host)
  LAMMPS  fix nvt (Nose-Hoover chain of 3) at the same temperature, Tdamp = the same period,
          pair_style eam/fs or sw with the same parameters (softglass.reference_lammps)
Both: the former's time step and skin (generate_glass_data's CUZR_/SW_ constants), the list
rebuilt when an atom has moved half the skin (LAMMPS: neigh_modify every 1 delay 0 check yes).
Times are wall clock of STEPS steps after a warm-up run (ours compiles there), median of REPEATS.
One core: the process is pinned to core CPU before JAX is imported (bench_lammps.pin_threads).
"""
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
sys.path.insert(0, os.path.join(_ROOT, "benchmarks"))

from softglass.cli import apply_overrides, constants_of  # noqa: E402
from softglass.files import atomic_write_bytes  # noqa: E402

FORMERS = "cuzr,sw"             # generate_glass_data.py's --POTENTIAL values
N_ATOMS = "1000"                # sizes, comma-separated (10000 takes ~10 min per former)
STEPS = 300                     # NVT steps timed per run
PREP_STEPS = 300                # steps of our melt building the starting state
WARMUP_STEPS = 20               # steps run before timing (ours: compiles)
REPEATS = 3                     # timed runs per engine; the median is reported
CPU = 0                         # the core both engines are pinned to
SEED = 0
OUT_FILE = ""                   # JSON of the numbers ("" writes none)


def ours(md, potential, start, box, species, steps, settings, t_melt):
    """Seconds for `steps` NVT steps from the state `start` (compiled beforehand)."""
    t0 = time.perf_counter()
    state = md.nvt(potential, None, box, species, None, t_melt, t_melt, steps, "bench",
                   settings=settings, state=start)
    state.position.block_until_ready()
    return time.perf_counter() - t0


def lammps_seconds(reference_lammps, potential, positions, box, species, settings, t_melt):
    """Seconds for STEPS steps of LAMMPS's fix nvt from the same positions, REPEATS times."""
    lammps = reference_lammps.load_lammps()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "start.data")
        reference_lammps.write_data_file(data, positions, species + 1, box, potential.masses)
        lmp = lammps(cmdargs=["-nocite", "-log", "none", "-screen", "none"])
        lmp.commands_list(["units metal", "atom_style atomic", "atom_modify map array",
                           "boundary p p p", f"read_data {data}"]
                          + reference_lammps.pair_commands(potential.record(), tmp)
                          + [f"neighbor {settings.skin!r} bin",
                             "neigh_modify every 1 delay 0 check yes", f"timestep {settings.dt!r}",
                             f"velocity all create {t_melt!r} {SEED + 1} dist gaussian",
                             f"fix nvt all nvt temp {t_melt!r} {t_melt!r} {settings.tau!r}",
                             "thermo 0", f"run {WARMUP_STEPS}"])
        times = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            lmp.command(f"run {STEPS}")
            times.append(time.perf_counter() - t0)
        lmp.close()
    return times


def main(argv=None):
    apply_overrides(globals(), argv)
    from bench_lammps import pin_threads
    pin_threads(1, CPU)
    import jax
    import generate_glass_data as ggd
    from softglass import former_glass, formers, molecular_dynamics as md, reference_lammps
    from softglass import system as systems
    ggd.SHOW_PROGRESS = False
    rows = []
    for former in FORMERS.split(","):
        ggd.POTENTIAL = former
        potential = formers.make_potential(former)
        protocol = ggd.former_protocol()
        density, t_melt, fraction = protocol.density, protocol.t_melt, protocol.fraction
        settings, dt = protocol.md, protocol.md.dt
        for n in (int(x) for x in str(N_ATOMS).split(",")):
            box = systems.box_length(n, density)
            rng = np.random.default_rng(SEED)
            species = systems.assign_species(n, fraction, rng)
            state = md.nvt(potential, former_glass.grid_start(n, box, rng), box, species,
                           jax.random.PRNGKey(SEED), t_melt, t_melt, PREP_STEPS, "prep",
                           settings=settings)
            ours(md, potential, state, box, species, WARMUP_STEPS, settings, t_melt)
            mine = [ours(md, potential, state, box, species, STEPS, settings, t_melt)
                    for _ in range(REPEATS)]
            positions = np.mod(np.asarray(state.position, np.float64), box)
            theirs = lammps_seconds(reference_lammps, potential, positions, box, species,
                                    settings, t_melt)
            row = dict(former=former, n_atoms=n, dt_ps=dt, skin=settings.skin,
                       ours_ms=1e3 * statistics.median(mine) / STEPS,
                       lammps_ms=1e3 * statistics.median(theirs) / STEPS,
                       ours_runs_s=mine, lammps_runs_s=theirs)
            row["ratio"] = row["ours_ms"] / row["lammps_ms"]
            rows.append(row)
            print(f"{former:5s} N={n:6d}: ours {row['ours_ms']:8.2f} ms/step, LAMMPS "
                  f"{row['lammps_ms']:8.2f} ms/step, ours/LAMMPS {row['ratio']:.2f}", flush=True)
    if OUT_FILE:
        out = os.path.join(_ROOT, OUT_FILE) if not os.path.isabs(OUT_FILE) else OUT_FILE
        os.makedirs(os.path.dirname(out), exist_ok=True)
        import platform
        record = dict(rows=rows, constants=constants_of(globals()), cpu=platform.processor()
                      or open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0]
                      .strip(" :\t"))
        atomic_write_bytes(out, json.dumps(record, indent=2).encode())
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
