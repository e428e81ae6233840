"""Benchmark of validate_rearrangements.py: one N = 1000 glass sheared in the 6 directions to
its first event, in one process (the compiled FIRE reused after the first direction).

Reports per direction the event strain, energy drop, relaxations (coarse steps + bisection),
FIRE steps per relaxation and seconds; then seconds per event and where they go. The glass is
GLASS, else the first data/glass_data_NNN.pkl, else one made now with generate_glass_data's
defaults (~40-50 s) into a temporary folder.

    python tests/benchmarks/bench_rearrangements.py [--GLASS=path.pkl] [--DIRECTIONS=+xy,-xy]
"""
import glob
import json
import os
import statistics
import sys
import tempfile
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, _ROOT)

from glass_io import apply_overrides, atomic_write_pickle, load_glass  # noqa: E402

GLASS = ""                                  # .pkl glass; "" = data/ or a new one
N_ATOMS = 1000                              # atoms of a glass made here
DIRECTIONS = "+xy,-xy,+xz,-xz,+yz,-yz"
OUTPUT = ""                                 # optional JSON of the numbers


def the_glass(tmp):
    if GLASS:
        return GLASS
    found = sorted(glob.glob(os.path.join(_ROOT, "data", "glass_data_[0-9][0-9][0-9].pkl")))
    if found:
        return found[0]
    import generate_glass_data as ggd
    t0 = time.perf_counter()
    path = os.path.join(tmp, "glass_1000.pkl")
    atomic_write_pickle(path, ggd.make_glass(n_atoms=N_ATOMS, log=lambda *a: None))
    print(f"made a {N_ATOMS}-atom glass in {time.perf_counter() - t0:.1f} s")
    return path


def main():
    apply_overrides(globals())
    import validate_rearrangements as vr
    with tempfile.TemporaryDirectory() as tmp:
        path = the_glass(tmp)
        snap = load_glass(path)
        print(f"{path}: {len(snap['species'])} atoms")
        rows = []
        for d in DIRECTIONS.split(","):
            res = vr.shear_to_first_event(snap, d.strip())
            row = dict(direction=d, status=res["status"], strain=res.get("event_strain"),
                       energy_drop=res.get("energy_drop"), coarse=res.get("coarse_steps"),
                       bisection=res.get("bisection_steps"), relaxations=res["relaxations"],
                       fire_steps=res["fire_steps"], seconds=round(res["seconds"], 1),
                       noise=res["elastic_dissipation_max"], false_alarms=res.get("false_alarms"))
            rows.append(row)
            print(f"{d}: {res['status']}"
                  + (f" at strain {row['strain']:.5f}, energy drop {row['energy_drop']:.2e}, hit "
                     f"{res['hit']} moved {res['max_displacement']:.3f}" if row["strain"] else "")
                  + f"; {row['relaxations']} relaxations ({row['coarse']} coarse + "
                  f"{row['bisection']} bisection), {row['fire_steps'] / row['relaxations']:.0f} "
                  f"FIRE steps each, {row['seconds']:.1f} s; elastic |dissipation| <= "
                  f"{row['noise']:.1e}", flush=True)
    later = rows[1:] or rows            # the first direction includes compilation
    fire_rate = sum(r["seconds"] for r in later) / sum(r["fire_steps"] for r in later)
    summary = dict(
        glass=path, n_atoms=len(snap["species"]), rows=rows,
        median_seconds_per_event=statistics.median(r["seconds"] for r in later),
        median_relaxations_per_event=statistics.median(r["relaxations"] for r in rows),
        median_fire_steps_per_relaxation=statistics.median(r["fire_steps"] / r["relaxations"]
                                                           for r in rows),
        ms_per_fire_step=1e3 * fire_rate)
    print(f"median over directions 2..6: {summary['median_seconds_per_event']:.1f} s per event; "
          f"{summary['median_relaxations_per_event']} relaxations per event, "
          f"{summary['median_fire_steps_per_relaxation']:.0f} FIRE steps per relaxation, "
          f"{summary['ms_per_fire_step']:.2f} ms per FIRE step (all costs included)")
    if OUTPUT:
        with open(OUTPUT, "w") as fh:
            json.dump(summary, fh, indent=2)


if __name__ == "__main__":
    main()
