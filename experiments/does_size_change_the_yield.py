"""Does the hit's percentile depend on the size of the glass? The same glass draws at another N
(issue 13).

The independent measurement behind issue 13's bar (vibrality 0.95, S over 50 modes 0.94, S10
0.91 on 8 glasses of 500 atoms) used half our atom count; our 1000-atom sets rank the hit at
0.87-0.92 with vibrality. This script remakes the glasses of a reference run of
validate_rearrangements.py at N_ATOMS with the same draw (generate_diverse_data.py's parameters
of glass k: density, temperature, quench length, composition, sigma and epsilon scales, SEED),
shears them with validate_rearrangements.py's protocol (no model and no trees: the Hessian's
indicators and random, which need no training), and compares, per indicator, the mean hit
percentile and the share of hits in the top 5% at both sizes, and their difference paired by
glass draw (each glass's mean over its directions at N_ATOMS minus the same glass's at the
reference size; bootstrap over glasses). S over n modes is compared at the same n, so S100 at
N = 500 spans twice the reference's share of the spectrum (S30 at 500 ~ S60 at 1000).

    python experiments/does_size_change_the_yield.py [--N_ATOMS=500] [--OUT_DIR=runs/yield_n500_18]
        [--REFERENCE=runs/yield_dense_r2_18/rearrangements.json] [--N_WORKERS=2]
    python experiments/does_size_change_the_yield.py --REFERENCE= --INDICES=0,1,2,3,4,5,6,7 --OUT_DIR=...

Resumable: glasses already made (right index, size and protocol) and directions already sheared
are kept. Writes OUT_DIR/glasses/, OUT_DIR's validate_rearrangements.py outputs and
OUT_DIR/by_size.json.
"""
import json
import os
import re
import sys
import time

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides  # noqa: E402
from softglass.files import GlassFileError, atomic_write_bytes  # noqa: E402

N_ATOMS = 500                   # atoms per glass of the new set (the independent measurement's)
REFERENCE = "runs/yield_dense_r2_18/rearrangements.json"  # a run whose records name glasses
                                # glass_data_<k> of generate_diverse_data.py's default draw
OUT_DIR = "runs/yield_n500_18"    # glasses/, the shear's outputs, by_size.json
INDICES = ""                    # comma list of glass indices k; "" = the reference's glasses.
                                # With REFERENCE="" the glasses are sheared and scored, not compared
N_WORKERS = os.cpu_count() or 1     # processes for the glasses and the shear
N_BOOTSTRAP = 10000             # resamples of the glasses
SEED = 0                        # of the bootstrap


def reference_records():
    """The reference run's event records (validate_rearrangements.kept_records: refused unless
    sheared with today's protocol and scored with today's TOP_HIT_FRACTION, so that the two sizes
    differ by N alone)."""
    import validate_rearrangements as vr
    try:
        return vr.kept_records(REFERENCE)
    except GlassFileError as err:
        raise SystemExit(f"error: {err}")


def atoms_of_records(records):
    """The atom count of the reference's glasses (their files may be gone): recorded per event
    (n_atoms) by newer runs, else read from the percentiles themselves, which are
    (atoms below the hit) / (N - 1) for the random indicator (no ties): the smallest N - 1 that
    makes every one an integer."""
    counts = {r["n_atoms"] for r in records if "n_atoms" in r}
    if counts:
        return sorted(counts) if len(counts) > 1 else counts.pop()
    p = np.array([r["scores"]["random"][0] for r in records if "random" in r["scores"]])
    for m in range(199, 10**6):
        if np.all(np.abs(p * m - np.round(p * m)) < 1e-6):
            return m + 1
    return None


def glass_indices(records):
    """k of every glass_data_<k> the reference sheared (its names are generate_diverse_data's)."""
    out = set()
    for r in records:
        m = re.fullmatch(r"glass_data_(\d+)", r["glass"])
        if m is None:
            raise SystemExit(f"error: {REFERENCE}: glass {r['glass']!r} is not named like a "
                             "glass of generate_diverse_data.py (glass_data_<k>)")
        out.add(int(m[1]))
    return sorted(out)


def make_glasses_at_size(indices):
    """generate_diverse_data.py's glass k at N_ATOMS in OUT_DIR/glasses, on its Dask pool of
    N_WORKERS; a file already there for (k, SEED, N_ATOMS, protocol) is kept. Returns paths."""
    import generate_diverse_data as gdd
    import generate_glass_data as ggd
    from softglass import glass_set
    own = dict(N_ATOMS=N_ATOMS, DATA_DIR=os.path.join(OUT_DIR, "glasses"), N_WORKERS=N_WORKERS)
    vars(gdd).update(own)
    try:
        gdd.check_densest_box(ggd)
    except ValueError as err:
        raise SystemExit(f"error: {err}")
    os.makedirs(gdd.DATA_DIR, exist_ok=True)
    protocol, digest = gdd.glass_protocol(ggd)
    todo = []
    for k in indices:
        keep, why = glass_set.existing_glass_status(gdd.glass_path(k), k, gdd.SEED, N_ATOMS,
                                                    protocol, digest)
        if why:
            raise SystemExit(f"error: {why}; remove it or use another --OUT_DIR")
        if not keep:
            todo.append(k)
    print(f"{len(indices)} glasses of {N_ATOMS} atoms in {gdd.DATA_DIR}: "
          f"{len(indices) - len(todo)} done, {len(todo)} to make", flush=True)
    if todo:
        failed = gdd.make_glasses(todo, digest, own, {})
        if failed:
            raise SystemExit(f"error: glasses {sorted(failed)} failed every attempt")
    return [gdd.glass_path(k) for k in indices]


def per_glass_means(records, column):
    """{indicator: {glass: mean over its events of score column (0 percentile, 1 in top)}}."""
    out = {}
    for r in records:
        for name, scores in r["scores"].items():
            out.setdefault(name, {}).setdefault(r["glass"], []).append(float(scores[column]))
    return {name: {g: float(np.mean(v)) for g, v in by.items()} for name, by in out.items()}


def compare_sizes(new, reference, n_boot, seed):
    """Per indicator scored in both: the mean over events at each size (the scripts' own
    measure), and the paired difference new - reference of the per-glass means over the glasses
    in both, mean over glasses with its bootstrap 95% interval (resampling glasses)."""
    rows = {}
    for column, measure in ((0, "hit_percentile"), (1, "hit_in_top")):
        a, b = per_glass_means(new, column), per_glass_means(reference, column)
        for name in sorted(set(a) & set(b)):
            glasses = sorted(set(a[name]) & set(b[name]))
            diff = np.array([a[name][g] - b[name][g] for g in glasses])
            pick = np.random.default_rng(seed).integers(0, len(diff), (n_boot, len(diff)))
            lo, hi = np.percentile(diff[pick].mean(axis=1), [2.5, 97.5])
            mean_of = lambda recs: float(np.mean([float(r["scores"][name][column])  # noqa: E731
                                                  for r in recs if name in r["scores"]]))
            rows.setdefault(name, {})[measure] = dict(
                new=mean_of(new), reference=mean_of(reference), n_glasses_paired=len(glasses),
                paired_difference=[float(diff.mean()), float(lo), float(hi)])
    return rows


def print_comparison(rows, n_new, n_ref):
    print(f"\n{'indicator':<12} {'hit pct N=' + str(n_new):>14} {'N=' + str(n_ref):>8} "
          f"{'paired diff [95%]':>26}   {'top5% N=' + str(n_new):>12} {'N=' + str(n_ref):>8}")
    for name, row in sorted(rows.items(), key=lambda kv: -kv[1]["hit_percentile"]["new"]):
        p, t = row["hit_percentile"], row["hit_in_top"]
        d = p["paired_difference"]
        print(f"{name:<12} {p['new']:>14.3f} {p['reference']:>8.3f} "
              f"{d[0]:>+9.3f} [{d[1]:+.3f}, {d[2]:+.3f}]   {t['new']:>12.2f} {t['reference']:>8.2f}")


def main(argv=None):
    apply_overrides(globals(), argv)
    import validate_rearrangements as vr
    t0 = time.perf_counter()
    reference = reference_records() if REFERENCE else None
    if INDICES.strip():
        try:
            indices = sorted({int(k) for k in INDICES.split(",") if k.strip()})
        except ValueError:
            raise SystemExit(f"error: --INDICES={INDICES!r} is not a comma list of glass indices")
    elif reference is None:
        raise SystemExit("error: name the glasses with --INDICES=0,1,... or a --REFERENCE run")
    else:
        indices = glass_indices(reference)
    paths = make_glasses_at_size(indices)
    t_glasses = time.perf_counter() - t0
    # validate_rearrangements.py as a user would run it on named glasses: no model (MODEL set to
    # a file that cannot exist), no trees (no split is read with GLASSES)
    vr.main([f"--GLASSES={','.join(paths)}", f"--OUT_DIR={OUT_DIR}",
             f"--MODEL={os.path.join(OUT_DIR, 'no_model.pth')}", f"--N_WORKERS={N_WORKERS}"])
    new = json.load(open(os.path.join(OUT_DIR, "rearrangements.json")))
    if reference is None:
        return
    ref_atoms = atoms_of_records(reference)
    rows = compare_sizes(new["events"], reference, N_BOOTSTRAP, SEED)
    print_comparison(rows, N_ATOMS, ref_atoms)
    out = dict(n_atoms=N_ATOMS, reference=REFERENCE, reference_n_atoms=ref_atoms, glasses=indices,
               statuses=new["statuses"], event_strain=new["event_strain"],
               reference_event_strain=json.load(open(REFERENCE))["event_strain"],
               seconds_glasses=round(t_glasses, 1),
               seconds_total=round(time.perf_counter() - t0, 1), by_indicator=rows)
    atomic_write_bytes(os.path.join(OUT_DIR, "by_size.json"),
                       json.dumps(out, indent=1).encode())
    print(f"wrote {os.path.join(OUT_DIR, 'by_size.json')} ({out['seconds_total']:.0f} s)")


if __name__ == "__main__":
    try:
        main()
    except GlassFileError as err:
        raise SystemExit(f"error: {err}")
