"""Run from the repository root:
    python experiments/stamp_legacy_events.py runs/yield_n500_models/events

One-off: copy the N = 500 runs' legacy event files (written before results named
their glass's sha256) into a new run folder, stamped with the sha256 of the data/n500 glass file
they will be scored with, after checking that glass is array-equal to the one each result names
(positions, species, eigenvalues, labels, energy: the files differ only in their timings)."""
import os
import sys
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from softglass.files import load_glass, safe_load_pickle, atomic_write_pickle, file_sha256
src_dirs = ["runs/yield_n500_18/events"]
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
n = 0
checked = {}
for d in src_dirs:
    for f in sorted(os.listdir(d)):
        res = safe_load_pickle(os.path.join(d, f))
        glass = res["glass"]
        new = os.path.join("data/n500", f"{glass}.pkl")
        if glass not in checked:
            a, b = load_glass(new), load_glass(res["path"])
            same = all(np.array_equal(a[k], b[k]) for k in
                       ("positions", "species", "eigenvalues", "softness_score")) \
                and a["energy"] == b["energy"] and a["box_size"] == b["box_size"]
            if not same:
                raise SystemExit(f"{new} differs from {res['path']}")
            checked[glass] = file_sha256(new)
        if os.path.exists(os.path.join(out, f)):
            raise SystemExit(f"two results for {f}")
        atomic_write_pickle(os.path.join(out, f), dict(res, glass_sha256=checked[glass],
                                                       path=new))
        n += 1
print(f"stamped {n} results of {len(checked)} glasses into {out}")
