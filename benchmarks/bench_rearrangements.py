"""Benchmark of validate_rearrangements.py: one N = 1000 glass sheared in the 6 directions to
its first event, in one process (the compiled FIRE reused after the first direction).

Reports per direction the event strain, energy drop, relaxations (coarse steps + bisection),
FIRE steps per relaxation and seconds; then seconds per event and where they go. The glass is
GLASS, else the first data/glass_data_NNN.pkl, else one made now with generate_glass_data's
defaults (~40-50 s) into a temporary folder.

    python benchmarks/bench_rearrangements.py [--GLASS=path.pkl] [--DIRECTIONS=+xy,-xy]
        [--NEWTON_FORCE=0 (plain FIRE, the path before the Newton polish)]

Measured (one core each: OPENBLAS_NUM_THREADS=1 taskset -c 0|1, the two runs side by side on
this 2-core machine; 1000-atom glass data/glass_data_001.pkl of generate_diverse_data.py):
    direction          +xy      -xy      +xz      -xz      +yz      -yz
    event strain     0.01034  0.01254  0.03053  0.00077  0.00171  0.00287   (both paths)
    hit atom           881      464      226      387       31       56     (both paths)
    relaxations         19       21       40       10       10       12     (both paths)
    plain FIRE, s     103.0    172.9    221.3     79.1     71.9     87.7    median 87.7 s/event
    Newton, s          43.0     98.1     79.8     56.2     40.5     37.4    median 56.2 s/event
Newton (NEWTON_FORCE 1e-2, retry 1e-4) makes an elastic relaxation ~0.6 s (one Cholesky of
the pinned 2997 x 2997 Hessian ~0.3 s, ~14 chord solves, no FIRE) instead of ~5 s; what is
left is FIRE through the events: every relaxation past the fold (about half the bisection
trials and the final post-event one, 1-2 fallbacks and ~1000-4000 FIRE steps each) still runs
the avalanche with FIRE to 1e-4 before Newton takes over again.
"""
import glob
import json
import os
import statistics
import sys
import tempfile
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides  # noqa: E402
from softglass.files import atomic_write_pickle, load_glass  # noqa: E402

GLASS = ""                                  # .pkl glass; "" = data/ or a new one
N_ATOMS = 1000                              # atoms of a glass made here
DIRECTIONS = "+xy,-xy,+xz,-xz,+yz,-yz"
OUTPUT = ""                                 # optional JSON of the numbers
FORCE_KERNEL = ""                            # validate_rearrangements.FORCE_KERNEL ("" = its
                                            # default, "dense"; "grad" = the kernel before)
NEWTON_FACTOR = ""                          # validate_rearrangements.NEWTON_FACTOR ("" = its
                                            # default, "multifrontal"; "dense" = LAPACK potrf)
NEWTON_FORCE = -1.0                         # validate_rearrangements.NEWTON_FORCE; 0 = plain FIRE
                                            # (the path before the Newton polish), <0 = its default


def the_glass(tmp):
    if GLASS:
        return GLASS
    found = sorted(glob.glob(os.path.join(_ROOT, "data", "glass_data_[0-9][0-9][0-9].pkl")))
    if found:
        return found[0]
    import generate_glass_data as ggd
    t0 = time.perf_counter()
    path = os.path.join(tmp, f"glass_{N_ATOMS}.pkl")
    atomic_write_pickle(path, ggd.make_glass(n_atoms=N_ATOMS, log=lambda *a: None))
    print(f"made a {N_ATOMS}-atom glass in {time.perf_counter() - t0:.1f} s")
    return path


def main():
    apply_overrides(globals())
    import dataclasses
    from softglass import shear
    import validate_rearrangements as vr
    protocol = vr.shear_protocol()          # validate_rearrangements' defaults, then ours on top
    protocol = dataclasses.replace(
        protocol, newton_force=NEWTON_FORCE if NEWTON_FORCE >= 0 else protocol.newton_force,
        force_kernel=FORCE_KERNEL or protocol.force_kernel,
        newton_factor=NEWTON_FACTOR or protocol.newton_factor)
    with tempfile.TemporaryDirectory() as tmp:
        path = the_glass(tmp)
        snap = load_glass(path)
        print(f"{path}: {len(snap['species'])} atoms")
        rows = []
        for d in DIRECTIONS.split(","):
            res = shear.shear_to_first_event(snap, d.strip(), protocol,
                                                 relaxation=vr.relaxation())
            row = dict(direction=d, status=res["status"], strain=res.get("event_strain"),
                       energy_drop=res.get("energy_drop"), coarse=res.get("coarse_steps"),
                       bisection=res.get("bisection_steps"), relaxations=res["relaxations"],
                       fire_steps=res["fire_steps"], seconds=round(res["seconds"], 1),
                       noise=res["elastic_dissipation_max"], false_alarms=res.get("false_alarms"),
                       hit=res.get("hit"), newton_solves=res.get("newton_solves"),
                       newton_fallbacks=res.get("newton_fallbacks"),
                       checked_minima=res.get("checked_minima"), factors=res.get("factors"),
                       seconds_fire=round(res["seconds_fire"], 1),
                       seconds_factor=round(res["seconds_factor"], 1))
            rows.append(row)
            print(f"{d}: {res['status']}"
                  + (f" at strain {row['strain']:.5f}, energy drop {row['energy_drop']:.2e}, hit "
                     f"{res['hit']} moved {res['max_displacement']:.3f}" if row["strain"] else "")
                  + f"; {row['relaxations']} relaxations ({row['coarse']} coarse + "
                  f"{row['bisection']} bisection), {row['fire_steps'] / row['relaxations']:.0f} "
                  f"FIRE steps each, {row['newton_solves']} Newton solves, "
                  f"{row['newton_fallbacks']} fallbacks to FIRE, {row['factors']} factors; "
                  f"{row['seconds']:.1f} s ({row['seconds_fire']:.1f} FIRE, "
                  f"{row['seconds_factor']:.1f} factors); elastic "
                  f"|dissipation| <= {row['noise']:.1e}", flush=True)
    later = rows[1:] or rows            # the first direction includes compilation
    fire_rate = sum(r["seconds"] for r in later) / sum(r["fire_steps"] for r in later)
    summary = dict(
        glass=path, newton_force=protocol.newton_force, force_kernel=protocol.force_kernel,
        newton_factor=protocol.newton_factor, n_atoms=len(snap["species"]), rows=rows,
        median_seconds_per_event=statistics.median(r["seconds"] for r in later),
        median_relaxations_per_event=statistics.median(r["relaxations"] for r in rows),
        median_fire_steps_per_relaxation=statistics.median(r["fire_steps"] / r["relaxations"]
                                                           for r in rows),
        ms_per_fire_step=1e3 * fire_rate,
        share_fire=sum(r["seconds_fire"] for r in later) / sum(r["seconds"] for r in later),
        share_factor=sum(r["seconds_factor"] for r in later) / sum(r["seconds"] for r in later))
    print(f"median over directions 2..6: {summary['median_seconds_per_event']:.1f} s per event; "
          f"{summary['median_relaxations_per_event']} relaxations per event, "
          f"{summary['median_fire_steps_per_relaxation']:.0f} FIRE steps per relaxation, "
          f"{summary['ms_per_fire_step']:.2f} ms per FIRE step (all costs included); time in "
          f"FIRE {100 * summary['share_fire']:.0f}%, in Hessian factors "
          f"{100 * summary['share_factor']:.0f}%")
    if OUTPUT:
        with open(OUTPUT, "w") as fh:
            json.dump(summary, fh, indent=2)


if __name__ == "__main__":
    main()
