"""How cleanly does the event criterion separate plastic from elastic strain steps? (issue 13)

    python experiments/how_clean_is_the_event_criterion.py [--EVENTS_DIR=rearrangements/events]
        [--OUT_FILE=event_criterion.json]

Reads the result files validate_rearrangements.py wrote (one per glass and direction) and, on
the coarse scan's steps of STRAIN_STEP (the steps the criterion is applied to first), compares
the dissipation D of the step that triggered each first event with D of every elastic step
(the coarse trial at each grid strain against the stable minimum one step below it, the false
alarms included: flagged, bisected and found elastic), in three normalisations:
  absolute      D (epsilon): the criterion in use, D > DISSIPATION_TOL
  per work      D / |W|, W = V (tau_a + tau_b) h / 2 the stress's work over the step: "the drop
                against the step's work" (report 12); W vanishes where tau changes sign
  per elastic   D / (V |tau_b - tau_a| h), the energy scale of the step's elastic loading
                (|dtau| h V ~ G V h^2); vanishes only where the modulus does
For each: the smallest event value, the largest elastic value, their ratio (above 1: one
threshold separates every event from every elastic step, with that margin) and how many events
and elastic steps lie on the wrong side of the best threshold (the geometric mean of the two).
"""
import glob
import json
import os
import sys

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides  # noqa: E402
from softglass.files import atomic_write_bytes, load_glass, safe_load_pickle  # noqa: E402

EVENTS_DIR = "rearrangements/events"    # validate_rearrangements.py's OUT_DIR/events
OUT_FILE = ""                           # JSON of the numbers ("" writes none)


def cell_volume(res):
    """V of a result's glass: from its event's sheared cell (simple shear keeps the volume), or,
    for a direction that did not yield, from the glass file it names."""
    if "cell_before" in res:
        return abs(float(np.linalg.det(res["cell_before"])))
    return float(load_glass(res["path"])["box_size"]) ** 3


def coarse_steps(res):
    """([elastic (D, W, dtau-scale)], event (D, W, dtau-scale) or None, V) of one result."""
    c = res["curve"]
    h = float(res["protocol"]["STRAIN_STEP"])
    volume = cell_volume(res)
    strain, stress = np.asarray(c["strain"]), np.asarray(c["stress"])
    diss, stable = np.asarray(c["dissipation"]), np.asarray(c["stable"]).astype(bool)
    on_grid = np.abs(strain / h - np.round(strain / h)) < 1e-6
    k = np.round(strain / h).astype(int)
    rows_at = {}
    for i in np.flatnonzero(on_grid):
        rows_at.setdefault(k[i], []).append(i)
    trigger = (int(np.ceil(res["strain_after"] / h - 1e-9)) if res["status"] == "yielded"
               else None)
    elastic, event = [], None
    for g, rows in rows_at.items():
        ref = [j for j in rows_at.get(g - 1, []) if stable[j]]
        if not ref:
            continue
        i, j = rows[0], ref[-1]          # the coarse trial (first computed at g) and its minimum
        step = (diss[i], 0.5 * (stress[i] + stress[j]) * h, abs(stress[i] - stress[j]) * h)
        if g == trigger:
            event = step
        else:                           # elastic, or a false alarm bisected and found elastic
            elastic.append(step)
    return elastic, event, volume


def separation(events, elastic):
    """Smallest event, largest elastic value (signed: the criterion is one-sided, a negative D is
    the quadrature's error and triggers nothing), their ratio, and the errors of the best cut."""
    ev, el = np.asarray(events), np.asarray(elastic)
    cuts = np.sort(np.concatenate([ev, el]))
    errors = [int(np.sum(ev <= t) + np.sum(el > t)) for t in cuts]
    best = int(np.argmin(errors))
    return dict(smallest_event=float(ev.min()), largest_elastic=float(el.max()),
                margin=float(ev.min() / el.max()), best_threshold=float(cuts[best]),
                errors_at_best=errors[best], n_events=len(ev), n_elastic=len(el))


def main():
    apply_overrides(globals())
    files = sorted(glob.glob(os.path.join(EVENTS_DIR, "*.pkl")))
    if not files:
        raise SystemExit(f"error: no result files in {EVENTS_DIR} (run validate_rearrangements.py)")
    kinds = ("absolute", "per work", "per elastic")
    el, ev = {k: [] for k in kinds}, {k: [] for k in kinds}
    for f in files:
        res = safe_load_pickle(f)
        elastic, event, v = coarse_steps(res)
        for d, w, s in elastic:
            el["absolute"].append(d)
            el["per work"].append(d / (v * abs(w)))
            el["per elastic"].append(d / (v * s))
        if event is not None:
            d, w, s = event
            ev["absolute"].append(d)
            ev["per work"].append(d / (v * abs(w)))
            ev["per elastic"].append(d / (v * s))
    out = {k: separation(ev[k], el[k]) for k in el}
    print(f"{len(files)} results in {EVENTS_DIR}: {len(ev['absolute'])} triggering coarse steps, "
          f"{len(el['absolute'])} elastic coarse steps")
    for k, s in out.items():
        print(f"{k:12s} smallest event {s['smallest_event']:.3g}, largest elastic "
              f"{s['largest_elastic']:.3g}, margin {s['margin']:.3g}; best threshold "
              f"{s['best_threshold']:.3g} misclassifies {s['errors_at_best']}")
    if OUT_FILE:
        atomic_write_bytes(OUT_FILE, json.dumps(dict(events_dir=EVENTS_DIR, files=len(files),
                                                     criteria=out), indent=2).encode())
        print(f"wrote {OUT_FILE}")


if __name__ == "__main__":
    main()
