"""Does a model trained on Kob-Andersen glasses predict the softness of other glass formers?

For each former of FORMERS, N_GLASSES glasses of N_ATOMS atoms (generate_glass_data.py
--POTENTIAL=<former>, seeds 0, 1, ..., quench rate QUENCH_RATE, made once and kept in
DATA_DIR/<former>/), each scored with:
  - each model of MODELS (trained on Kob-Andersen) through predict.py --ANY_FORMER=True: lengths
    scaled to the model's mean density and local stiffnesses to its mean (the features made
    dimensionless, softglass.prediction.transfer_scales);
  - lambda_1, the smallest local-Hessian eigenvalue (no training; a dimensionless ranking);
  - least squares on the features (species one-hot, the three local eigenvalues over their mean)
    fitted on the other glasses of the same former (leave one glass out): a model trained on the
    former itself, the simplest one.
Pearson R over all atoms of a glass, against its own softness over N_SOFT_MODES modes; mean and
std over glasses. Writes OUT_FILE (JSON) and prints a table.

    python experiments/does_a_kob_andersen_model_transfer.py [--FORMERS=cuzr,sw]
        [--N_GLASSES=6] [--N_ATOMS=1000] [--QUENCH_RATE=1e14]
        [--OUT_FILE=runs/transfer_ka_to_formers/transfer.json]
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides                          # noqa: E402
from softglass.files import atomic_write_bytes, load_glass        # noqa: E402

FORMERS = "cuzr,sw"             # generate_glass_data.py's --POTENTIAL values to test
N_GLASSES = 6                   # glasses per former (seeds 0 .. N_GLASSES - 1)
N_ATOMS = 1000                  # atoms per glass (the Kob-Andersen models learnt 1000-atom glasses)
QUENCH_RATE = 1e14              # K/s, for both formers (10x the scripts' default: two cores)
MELT_TIME = 20.0                # ps at the melt temperature
MODELS = "models/default_s10.pth,models/s100.pth"   # Kob-Andersen models (missing ones skipped)
DATA_DIR = "data/transfer"      # the glasses, made once: DATA_DIR/<former>/<former>_glass_NNN.pkl
OUT_FILE = "runs/transfer_ka_to_formers/transfer.json"


def make_glasses(former):
    """The former's glasses, made by generate_glass_data.py in a subprocess each (resumable:
    a glass already there is kept)."""
    folder = os.path.join(_ROOT, DATA_DIR, former)
    paths = []
    for seed in range(N_GLASSES):
        path = os.path.join(folder, f"{former}_glass_{seed:03d}.pkl")
        if not os.path.exists(path):
            rate = "CUZR_QUENCH_RATE" if former == "cuzr" else "SW_QUENCH_RATE"
            subprocess.run([sys.executable, os.path.join(_ROOT, "generate_glass_data.py"),
                            f"--POTENTIAL={former}", f"--N_ATOMS={N_ATOMS}", f"--SEED={seed}",
                            f"--{rate}={QUENCH_RATE}", f"--MD_MELT_TIME={MELT_TIME}",
                            f"--DATA_DIR={folder}", f"--OUTPUT_FILE=glass_{seed:03d}.pkl",
                            "--SHOW_PROGRESS=False"], check=True, cwd=_ROOT)
        paths.append(path)
    return paths


def features(snap):
    """Species one-hot and the local eigenvalues over their glass mean (dimensionless)."""
    eig = np.asarray(snap["eigenvalues"], float)
    onehot = np.eye(2)[np.asarray(snap["species"])]
    return np.hstack([onehot, eig / eig.mean()])


def least_squares_r(snaps):
    """Leave-one-glass-out least squares on `features`: R on each held-out glass."""
    out = []
    for k, test in enumerate(snaps):
        train = [s for i, s in enumerate(snaps) if i != k]
        x = np.vstack([features(s) for s in train])
        y = np.concatenate([s["softness_score"] for s in train])
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        out.append(float(np.corrcoef(features(test) @ coef, test["softness_score"])[0, 1]))
    return out


def model_r(model, paths, out_dir):
    """predict.py --ANY_FORMER=True on each glass: R against its own labels."""
    import predict
    from softglass.cli import constants_of
    rs = []
    saved = constants_of(vars(predict))             # main() sets the module's constants
    for path in paths:
        try:
            summary = predict.main([f"--INPUT={path}", f"--MODEL={model}", "--ANY_FORMER=True",
                                    f"--OUTPUT_DIR={out_dir}"])
        finally:
            vars(predict).update(saved)
        rs.append(summary["R"])
    return rs


def summary_of(rs):
    return dict(per_glass=rs, mean=float(np.mean(rs)), std=float(np.std(rs, ddof=1))
                if len(rs) > 1 else None)


def main(argv=None):
    apply_overrides(globals(), argv)
    t0 = time.perf_counter()
    results = {}
    for former in FORMERS.split(","):
        paths = make_glasses(former)
        snaps = [load_glass(p) for p in paths]
        row = dict(n_glasses=len(snaps), n_atoms=N_ATOMS, quench_rate=QUENCH_RATE,
                   potential=snaps[0]["parameters"]["potential"],
                   lambda_1=summary_of([float(np.corrcoef(s["eigenvalues"][:, 0],
                                                          s["softness_score"])[0, 1])
                                        for s in snaps]),
                   least_squares_in_former=summary_of(least_squares_r(snaps)))
        for model in MODELS.split(","):
            if os.path.exists(os.path.join(_ROOT, model)):
                row[os.path.basename(model)] = summary_of(model_r(
                    os.path.join(_ROOT, model), paths, os.path.join(_ROOT, DATA_DIR, "predicted")))
        results[former] = row
    results["seconds"] = time.perf_counter() - t0
    out = os.path.join(_ROOT, OUT_FILE)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    atomic_write_bytes(out, json.dumps(results, indent=2, default=str).encode())
    scored = [k for k, v in results[FORMERS.split(",")[0]].items()
              if isinstance(v, dict) and "mean" in v]          # the indicators' columns
    print("former | " + " | ".join(scored))
    for former in FORMERS.split(","):
        row = results[former]
        print(f"{former} | " + " | ".join(f"{row[k]['mean']:.3f} +- {row[k]['std'] or 0:.3f}"
                                          for k in scored))
    print(f"wrote {out} in {results['seconds']:.0f}s")


if __name__ == "__main__":
    main()
