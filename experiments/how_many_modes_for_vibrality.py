"""How much of vibrality's ranking comes from the modes validate_rearrangements.py leaves out?

validate_rearrangements.py sums vibrality V_i = sum_k |e_k(i)|^2 / lambda_k over the lowest
max(MODE_COUNTS) = 100 non-trivial modes, not over all 3N - 3 (issue 13's definition sums over
modes). The 1/lambda weight makes the high modes small, but there are many of them. This script
rescores the events a run already made (nothing re-sheared): for every glass of each run folder
(validate_rearrangements.py's events/ beside the glasses the run sheared), the full spectrum by
dense eigh, vibrality over each of MODE_COUNTS lowest modes ("all" = every non-trivial mode),
each event's hit percentile and top-5% membership, by-glass bootstrap intervals over the runs'
events pooled (each run's glasses kept apart), and each count's difference to the 100-mode sum
paired by event.

    python experiments/how_many_modes_for_vibrality.py
        [--RUNS=n500=runs/yield_n500_18,g0to7=runs/yield_n500_draws0to7]
        [--MODE_COUNTS=10,30,100,300,all] [--OUT_FILE=runs/vibrality_modes/vibrality_modes.json]

A run folder holds events/ (validate_rearrangements.py's OUT_DIR); its glasses are the ones
named there, read from GLASS_DIR (relative to the run folder: glasses/ in does_size_change_the_yield.py's
layout; for a run on train.py's split, --GLASS_DIR=$PWD/data); a result that names another glass
file's content (glass_sha256, in newer records) or atom count is refused. Dense eigh of
a 3N x 3N Hessian costs ~1 s at N = 500 and ~10 s at N = 1000 on one core.
"""
import json
import os
import re
import sys
import time

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides
from softglass.files import GlassFileError, atomic_write_bytes, file_sha256, load_glass

RUNS = "n500=runs/yield_n500_18,g0to7=runs/yield_n500_draws0to7"   # name=run folder
MODE_COUNTS = "10,30,100,300,all"   # lowest non-trivial modes summed; "all" = 3N - 3
REFERENCE = "100"               # the count the others are paired against (the script's sum)
GLASS_DIR = "glasses"           # the run's glass files, relative to its folder (or absolute)
N_BOOTSTRAP = 10000             # resamples of the glasses
SEED = 0                        # of the bootstrap
OUT_FILE = "runs/vibrality_modes/vibrality_modes.json"  # "" writes none


def full_spectrum(snap, ggd):
    """All eigenpairs of the glass's Hessian (dense eigh), ascending, the three translations
    checked to be the lowest."""
    from softglass.files import system_of
    positions = np.asarray(snap["positions"], np.float64)
    h, _ = ggd.hessian(positions, system_of(snap))
    vals, vecs = np.linalg.eigh(h.toarray())
    ggd.check_modes(vals)
    return vals, vecs


def vibralities(vals, vecs, counts, ggd):
    """{"vibrality_<count>": V_i over the lowest `count` non-trivial modes} ("all" = every one)."""
    n_modes = len(vals) - ggd.N_ZERO_MODES
    return {f"vibrality_{c}": ggd.vibrality_from_modes(vals, vecs, n_zero=ggd.N_ZERO_MODES,
                                                       n_modes=n_modes if c == "all" else int(c))
            for c in counts}


def run_records(name, folder, counts, vr, ggd):
    """The yielded events of one run scored by each vibrality (vr.event_record), glasses named
    name:glass; every (glass, direction) result file must be of today's protocol."""
    glass_dir = os.path.join(folder, GLASS_DIR)
    events = os.path.join(folder, "events")
    if not os.path.isdir(events):
        raise SystemExit(f"error: {events}: no events folder (validate_rearrangements.py's "
                         "OUT_DIR/events)")
    vr.OUT_DIR = folder
    records, statuses = [], {}
    for glass in sorted({re.sub(r"_[pm][xyz]{2}\.pkl$", "", f) for f in os.listdir(events)
                         if f.endswith(".pkl")}):
        t0 = time.perf_counter()
        path = os.path.join(glass_dir, f"{glass}.pkl")
        vals, vecs = full_spectrum(load_glass(path), ggd)
        indicators = vibralities(vals, vecs, counts, ggd)
        sha = file_sha256(path)
        for d in vr.DIRECTIONS.split(","):
            res = vr.existing_result(vr.result_path(glass, d))
            if res is None:
                raise SystemExit(f"error: {vr.result_path(glass, d)}: no result of the current "
                                 "protocol; run validate_rearrangements.py there first")
            if res.get("glass_sha256", sha) != sha or res.get("n_atoms") != len(vals) // 3:
                raise SystemExit(f"error: {vr.result_path(glass, d)} was sheared from another "
                                 f"glass than {path}")
            statuses[res["status"]] = statuses.get(res["status"], 0) + 1
            if res["status"] == "yielded":
                records.append(vr.event_record(f"{name}:{glass}", res, indicators))
        print(f"  {name}:{glass}: {len(vals)} modes in {time.perf_counter() - t0:.1f} s",
              flush=True)
    return records, statuses


def main(argv=None):
    apply_overrides(globals(), argv)
    import generate_glass_data as ggd
    import validate_rearrangements as vr
    counts = [c.strip() for c in MODE_COUNTS.split(",") if c.strip()]
    if REFERENCE not in counts:
        raise SystemExit(f"error: REFERENCE={REFERENCE!r} is not one of MODE_COUNTS {counts}")
    records, statuses = [], {}
    try:
        for item in filter(None, (x.strip() for x in RUNS.split(","))):
            name, _, folder = item.partition("=")
            got, st = run_records(name, folder, counts, vr, ggd)
            records += got
            statuses[name] = st
    except GlassFileError as err:
        raise SystemExit(f"error: {err}")
    table = vr.score_records(records, N_BOOTSTRAP, SEED)
    ref = f"vibrality_{REFERENCE}"
    paired = {}
    for c in counts:
        name = f"vibrality_{c}"
        if name != ref:
            diff = [r["scores"][name][0] - r["scores"][ref][0] for r in records]
            paired[f"{name} - {ref}"] = vr.bootstrap_by_glass(
                diff, [r["glass"] for r in records], N_BOOTSTRAP, np.random.default_rng(SEED))
    n_atoms = sorted({r["n_atoms"] for r in records})
    print(f"{len(records)} events, {len({r['glass'] for r in records})} glasses of {n_atoms} "
          f"atoms ({statuses}): vibrality over the lowest n non-trivial modes")
    print(f"  {'modes':<8} {'hit percentile [95%]':<24} {'hit in top 5%':<22} AUC top 1%")
    f = lambda t: f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"  # noqa: E731
    for c in counts:
        row = table[f"vibrality_{c}"]
        print(f"  {c:<8} {f(row['hit_percentile']):<24} {f(row['hit_in_top']):<22} "
              f"{f(row['top_movers_auc'])}")
    print("hit percentile paired by event [by-glass 95%]:")
    for k, t in paired.items():
        print(f"  {k:<30} {t[0]:+.4f} [{t[1]:+.4f}, {t[2]:+.4f}]")
    out = dict(runs=RUNS, n_atoms=n_atoms, statuses=statuses, mode_counts=counts,
               scores={k: {kk: vv for kk, vv in v.items()
                           if kk not in ("per_event_percentile", "glass_of_event")}
                       for k, v in table.items()},
               paired_differences=paired, n_bootstrap=N_BOOTSTRAP, seed=SEED)
    if OUT_FILE:
        atomic_write_bytes(OUT_FILE, json.dumps(out, indent=2).encode())
        print(f"wrote {OUT_FILE}")
    return out


if __name__ == "__main__":
    main()
