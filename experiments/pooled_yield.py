"""The shear validation of several glass sets scored together: the events of each run's
validate_rearrangements.py (nothing re-sheared) pooled, each set's glasses kept apart in the
by-glass bootstrap. Sets drawn with the same parameters (e.g. the glasses of FORCE_KERNEL "grad",
"dense" and "dense_r2", which differ by round-off and so are other realisations) multiply the
events and show how much one set's ranking of the indicators is that set's.

    python experiments/pooled_yield.py --RUNS=grad=/path/run1,dense=/path/run2
        [--OUT_FILE=pooled.json]

Each RUNS entry is name=source: a run's rearrangements.json (newer ones keep every event's
scores), or a checkout where `python validate_rearrangements.py` ran on train.py's split
(source/results.json names the test glasses, source/rearrangements holds the events and the
indicator cache, scored afresh). Prints, per set and pooled, each indicator's hit percentile and
share of hits in the top 5% with by-glass 95% intervals, and the pooled paired differences of the
models; an indicator missing from a set (a model scored in one only) is scored on the sets that
have it.
"""
import json
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides
from softglass.files import GlassFileError, atomic_write_bytes, safe_load_pickle

RUNS = ""               # comma list of name=source (rearrangements.json, or a checkout with
                        # results.json and rearrangements/)
OUT_DIR_NAME = "rearrangements"     # validate_rearrangements.py's OUT_DIR inside each directory
OUT_FILE = ""           # JSON of the tables ("" writes none)


def records_of(name, source, vr):
    """The scored events (validate_rearrangements.event_record) of one run, each glass named
    set:glass. source is a run's rearrangements.json (which keeps its records since they were
    added) or a checkout where validate_rearrangements.py ran, whose events/ and indicators/
    folders are scored afresh."""
    if os.path.isfile(source):
        try:
            events = vr.kept_records(source)
        except GlassFileError as err:
            raise SystemExit(f"error: {err}")
        return [dict(r, glass=f"{name}:{r['glass']}") for r in events]
    split = json.load(open(os.path.join(source, "results.json")))["split"]["test"]
    vr.OUT_DIR = os.path.join(source, OUT_DIR_NAME)
    records = []
    for b in split:
        glass = f"glass_data_{int(b):03d}"
        cache = os.path.join(vr.OUT_DIR, "indicators", f"{glass}.pkl")
        indicators = safe_load_pickle(cache)["values"]
        for d in vr.DIRECTIONS.split(","):
            res = vr.existing_result(vr.result_path(glass, d))
            if res is None:
                raise SystemExit(f"error: {vr.result_path(glass, d)}: no result of the current "
                                 "protocol; run validate_rearrangements.py there first")
            if res["status"] == "yielded":
                records.append(vr.event_record(f"{name}:{glass}", res, indicators))
    return records


def row(scores):
    h, t = scores["hit_percentile"], scores["hit_in_top"]
    return (f"{h[0]:.3f} [{h[1]:.3f}, {h[2]:.3f}]   {t[0]:.2f} [{t[1]:.2f}, {t[2]:.2f}]   "
            f"{scores['n_events']:>3} events, {scores['n_glasses']} glasses")


def main():
    apply_overrides(globals())
    import validate_rearrangements as vr
    runs = [r.split("=", 1) for r in RUNS.split(",") if r.strip()]
    if not runs or any(len(r) != 2 for r in runs):
        raise SystemExit("error: RUNS must be name=source[,name=source...]")
    all_records, out = [], dict(sets={})
    for name, source in runs:
        records = records_of(name, source, vr)
        all_records += records
        table = vr.score_records(records)
        out["sets"][name] = {k: {kk: v[kk] for kk in ("hit_percentile", "hit_in_top",
                                                      "n_events", "n_glasses")}
                             for k, v in table.items()}
    pooled = vr.score_records(all_records)
    out["pooled"] = {k: {kk: v[kk] for kk in ("hit_percentile", "hit_in_top", "n_events",
                                              "n_glasses")} for k, v in pooled.items()}
    common = {k: v for k, v in pooled.items() if v["n_events"] == len(all_records)}
    out["pooled_paired_differences"] = vr.paired_differences(common)
    order = sorted(pooled, key=lambda k: -pooled[k]["hit_percentile"][0])
    for name, scores in list(out["sets"].items()) + [("pooled", out["pooled"])]:
        print(f"{name}: indicator, hit percentile [by-glass 95%], hit in top 5%")
        for k in order:
            if k in scores:
                print(f"  {k:<12} {row(scores[k])}")
    print("pooled, paired by event (model minus indicator) [by-glass 95%]:")
    for k, (m, lo, hi) in out["pooled_paired_differences"].items():
        print(f"  {k:<24} {m:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    if OUT_FILE:
        atomic_write_bytes(OUT_FILE, json.dumps(out, indent=2).encode())


if __name__ == "__main__":
    main()
