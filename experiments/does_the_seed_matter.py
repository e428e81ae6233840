"""train.py over several split/initialisation seeds, and their mean and spread (issue 6).

    python experiments/does_the_seed_matter.py [--SEEDS=0,1,2] [--RUNS_DIR=runs/train_seeds] [-- train.py overrides]

Runs `train.py --SEED=s --OUT_DIR=RUNS_DIR/seed_s` for every seed (one after the other; each run
resumes from its own checkpoint when interrupted, and a seed whose results.json exists is not run
again), then writes RUNS_DIR/seeds.json with each seed's test metrics and baselines and their mean
and standard deviation, and copies that summary under "seeds" into OUT_JSON (the root
results.json) when it exists. Anything after `--` is passed to train.py (e.g. --TIME_LIMIT_MIN=0).
"""
import json
import os
import subprocess
import sys

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides  # noqa: E402
from softglass.files import atomic_write_bytes  # noqa: E402

SEEDS = "0,1,2"                  # comma-separated split/initialisation seeds
RUNS_DIR = os.path.join(_ROOT, "runs", "train_seeds")
OUT_JSON = os.path.join(_ROOT, "results.json")     # gets the summary under "seeds" if present
METRICS = ("test_R", "test_R2", "test_MAE")


def run_seed(seed, extra):
    out = os.path.join(RUNS_DIR, f"seed_{seed}")
    path = os.path.join(out, "results.json")
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(_ROOT, "train.py"), f"--SEED={seed}",
                        f"--OUT_DIR={out}", *extra], check=True, cwd=_ROOT)
    with open(path) as fh:
        return json.load(fh)


def summary(per_seed):
    rows = {s: {**{m: r[m] for m in METRICS}, "per_glass_R_mean": r["per_glass_R"]["mean"],
                **{f"baseline_{k}": v for k, v in r["baselines"].items()},
                "epochs": r["epochs"], "stopped_by": r.get("stopped_by")}
            for s, r in per_seed.items()}
    keys = [k for k in next(iter(rows.values())) if k not in ("epochs", "stopped_by")]
    stats = {k: dict(mean=float(np.mean([r[k] for r in rows.values()])),
                     std=float(np.std([r[k] for r in rows.values()], ddof=1))
                     if len(rows) > 1 else 0.0) for k in keys}
    return dict(seeds=list(rows), per_seed=rows, mean_std=stats)


def main():
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    apply_overrides(globals(), argv[:argv.index("--")] if "--" in argv else argv)
    seeds = [int(s) for s in SEEDS.split(",")]
    result = summary({s: run_seed(s, extra) for s in seeds})
    atomic_write_bytes(os.path.join(RUNS_DIR, "seeds.json"), json.dumps(result, indent=2).encode())
    if os.path.exists(OUT_JSON):
        with open(OUT_JSON) as fh:
            root = json.load(fh)
        root["seeds"] = result
        atomic_write_bytes(OUT_JSON, json.dumps(root, indent=2).encode())
    for k, v in result["mean_std"].items():
        print(f"{k:32s} {v['mean']:.4f} +- {v['std']:.4f}")


if __name__ == "__main__":
    main()
