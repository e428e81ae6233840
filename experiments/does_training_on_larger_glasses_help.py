"""The table of report 13.5, "Models trained at 10^4": mean R of several models on the glasses
none of them trained on, from the JSON files does_r_hold_across_sizes.py wrote for each model.

    python experiments/does_training_on_larger_glasses_help.py [--RUNS=name=path.json,...]

R is averaged over the 1000-atom glasses of each file except EXCLUDE_1000 (a training glass of
the small models) and over the 10^4-atom glasses TEST_10K (held out by the models trained at
10^4), per label; -lambda_1 from the first file.
"""
import json
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides  # noqa: E402

_T = "runs/scaling/trained_at_10k/"
RUNS = (f"default=runs/scaling/softness_across_sizes_8x10k_s1000.json,"
        f"1000x5_S10={_T}train_1k8_s10/softness_across_sizes.json,"
        f"10kx5_S10={_T}train_10k_s10/softness_across_sizes.json,"
        f"10kx5_S100={_T}train_10k_s100/softness_across_sizes.json")   # name=file, comma list
EXCLUDE_1000 = "glass_data_001.pkl"         # 1000-atom glasses left out (comma list)
TEST_10K = "n10k/glass_data_002.pkl,n10k/glass_data_004.pkl"   # 10^4 glasses averaged over
COLUMNS = "1000:S10,10000:S10,10000:S100,10000:S1000"          # atoms:label per column


def mean_r(glasses, n_atoms, label, key):
    excluded, test = EXCLUDE_1000.split(","), TEST_10K.split(",")
    chosen = [g for g in glasses if g["n_atoms"] == n_atoms and (
        not any(g["glass"].endswith(x) for x in excluded) if n_atoms == 1000
        else any(g["glass"].endswith(x) for x in test))]
    return sum(g[key][label] for g in chosen) / len(chosen), len(chosen)


def main():
    apply_overrides(globals())
    runs = [r.split("=", 1) for r in RUNS.split(",")]
    columns = [(int(c.split(":")[0]), c.split(":")[1]) for c in COLUMNS.split(",")]
    print(f"{'model':>12} " + " ".join(f"{f'N={n} {lab}':>14}" for n, lab in columns))
    for i, (name, path) in enumerate(runs):
        with open(path) as fh:
            glasses = json.load(fh)["glasses"]
        rows = [(name, "R_model")] + ([("-lambda_1", "R_lambda1")] if i == 0 else [])
        for label, key in rows:
            cells = [mean_r(glasses, n, lab, key) for n, lab in columns]
            print(f"{label:>12} " + " ".join(f"{m:9.3f} (n={k:2d})" for m, k in cells))


if __name__ == "__main__":
    main()
