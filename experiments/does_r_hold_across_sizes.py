"""Prediction across sizes and the share-of-spectrum account (issue 14, part 2).

    python experiments/does_r_hold_across_sizes.py [--MODEL=hybrid_physics_best.pth]
        [--EXTRA_GLASSES=data/n10k/glass_data_000.pkl,...] [--MODE_COUNTS=10,30,100,300,1000]

The model train.py wrote (trained on 1000-atom glasses) predicts every glass given: by default
the test glasses of train.py's split (RESULTS_FILE, DATA_DIR) and EXTRA_GLASSES, e.g. glasses of
10^4 atoms from `generate_diverse_data.py --N_ATOMS=10000 --N_CONFIGS=8 --DATA_DIR=data/n10k`
(glass k gets the same drawn parameters as glass k of the default set) or the default glass of
`generate_glass_data.py --N_ATOMS=10000`. For each glass the Hessian of the stored inherent
structure is rebuilt and its lowest 3 + max(MODE_COUNTS) modes found (dense eigh up to
DENSE_MAX_ATOMS, else generate_glass_data's shift-invert eigsh with the nested-dissection
Cholesky factor); S_n, the participation in the n lowest non-trivial modes, is the label for each
n. The stored label must come back (S_N_SOFT_MODES to 1e-8): the Hessian is the glass's own.

The account to test (docs/report.md, "what drives R"): R depends on the share of the spectrum S
sums, n / (3N - 3), not on n. Then S100 at N = 10^4 should be predicted like S10 at N = 1000,
and S1000 at 10^4 like S100 at 1000. The table prints R(model, S_n) and R(-lambda_1, S_n) (the
local-Hessian baseline) per size with that share beside it. Spectra are cached in CACHE_DIR
(resumable; keyed by the glass file's bytes), and the prediction's time and the process's peak
memory are recorded per glass.
"""
import json
import os
import resource
import sys
import time

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides
from softglass.files import (atomic_write_bytes, atomic_write_pickle, file_sha256, load_glass,
                             safe_load_pickle, system_of)

MODEL = "hybrid_physics_best.pth"   # train.py's model ("" or missing: labels and baselines only)
RESULTS_FILE = "results.json"   # train.py's results: its split names the test glasses
DATA_DIR = "data"               # the data set those test glasses come from
USE_TEST_SPLIT = True           # include the test glasses of RESULTS_FILE
EXTRA_GLASSES = ""              # comma list of further .pkl glasses (any size)
MODE_COUNTS = "10,30,100,300,1000"  # labels S_n, n lowest non-trivial modes (n < 3N - 3 kept)
DENSE_MAX_ATOMS = 2000          # dense eigh up to this N (3N x 3N, 0.3 GB at 2000), eigsh above
CACHE_DIR = "runs/scaling/spectra"  # per-glass labels S_n (resume)
OUT_FILE = "runs/scaling/softness_across_sizes.json"


def glass_paths():
    paths = []
    if USE_TEST_SPLIT:
        import augment_data
        with open(RESULTS_FILE) as fh:
            test = json.load(fh)["split"]["test"]
        bases = dict(augment_data.base_files(DATA_DIR))
        paths += [bases[k] for k in test]
    paths += [p.strip() for p in EXTRA_GLASSES.split(",") if p.strip()]
    if not paths:
        raise SystemExit("error: no glasses (USE_TEST_SPLIT=False and EXTRA_GLASSES empty)")
    return paths


def mode_counts():
    return sorted({int(x) for x in MODE_COUNTS.split(",") if x.strip()})


def labels_by_mode_count(path, snap, counts):
    """{n: S_n} for the counts below 3N - 3, from the rebuilt Hessian (cached by file content)."""
    import generate_glass_data as ggd
    n_atoms = len(snap["positions"])
    counts = [n for n in counts if n < 3 * n_atoms - 3]
    key = file_sha256(path)[:16]
    cache = os.path.join(CACHE_DIR, f"{os.path.splitext(os.path.basename(path))[0]}_{key}.pkl")
    if os.path.exists(cache):
        stored = safe_load_pickle(cache)
        if all(n in stored["labels"] for n in counts):
            return stored["labels"], stored["seconds"]
    t0 = time.perf_counter()
    positions = np.asarray(snap["positions"], np.float64)
    h, _ = ggd.hessian(positions, system_of(snap))
    n_modes = ggd.N_ZERO_MODES + max(counts)
    if n_atoms <= DENSE_MAX_ATOMS:
        vals, vecs = np.linalg.eigh(h.toarray())
        vals, vecs = vals[:n_modes], vecs[:, :n_modes]
    else:
        vals, vecs = ggd.lowest_modes(h, n_modes, positions, float(snap["box_size"]))
    ggd.check_modes(vals)
    labels = {n: ggd.softness_from_modes(vecs, n_zero=ggd.N_ZERO_MODES, n_soft=n)
              for n in counts}
    n_seed = int(snap["parameters"].get("n_soft_modes", ggd.N_SOFT_MODES))
    if n_seed in labels and not np.allclose(labels[n_seed], snap["softness_score"], atol=1e-8):
        raise SystemExit(f"error: {path}: the rebuilt Hessian does not give the stored label "
                         f"(max diff {np.abs(labels[n_seed] - snap['softness_score']).max():.2e})")
    seconds = time.perf_counter() - t0
    atomic_write_pickle(cache, dict(labels=labels, seconds=seconds, eigenvalues=vals))
    return labels, seconds


def model_prediction(model, snap):
    from validate_rearrangements import model_prediction as predict_inherent_structure
    t0 = time.perf_counter()
    pred = predict_inherent_structure(model, snap)
    return pred, time.perf_counter() - t0


def pearson(a, b):
    return float(np.corrcoef(a, b)[0, 1])


def summary_by_size(rows, counts):
    """Mean and standard deviation over the glasses of each size, per label and predictor."""
    out = {}
    for n_atoms in sorted({r["n_atoms"] for r in rows}):
        group = [r for r in rows if r["n_atoms"] == n_atoms]
        entry = dict(n_glasses=len(group), labels={})
        for n in counts:
            key = f"S{n}"
            if key not in group[0]["R_model"] and key not in group[0]["R_lambda1"]:
                continue
            cell = dict(share_of_spectrum=n / (3 * n_atoms - 3))
            for pred in ("R_model", "R_lambda1"):
                vals = [r[pred][key] for r in group if key in r[pred]]
                if vals:
                    cell[pred] = dict(mean=float(np.mean(vals)), std=float(np.std(vals)),
                                      n=len(vals))
            entry["labels"][key] = cell
        out[str(n_atoms)] = entry
    return out


def print_table(summary):
    print(f"{'N':>6} {'label':>6} {'share':>8} {'R model':>16} {'R -lambda_1':>16} glasses")
    for n_atoms, entry in summary.items():
        for key, cell in entry["labels"].items():
            f = lambda d: f"{d['mean']:.3f} +- {d['std']:.3f}" if d else "-"  # noqa: E731
            print(f"{n_atoms:>6} {key:>6} {cell['share_of_spectrum']:>8.4f} "
                  f"{f(cell.get('R_model')):>16} {f(cell.get('R_lambda1')):>16} "
                  f"{entry['n_glasses']}")


def main(argv=None):
    apply_overrides(globals(), argv)
    counts = mode_counts()
    model = None
    if MODEL and os.path.exists(MODEL):
        import torch
        import train
        model = train.load_trained_model(MODEL, torch.device("cpu"))
    else:
        print(f"note: no model at {MODEL!r}: labels and the -lambda_1 baseline only")
    rows = []
    for path in glass_paths():
        snap = load_glass(path)
        n_atoms = len(snap["positions"])
        row = dict(glass=path, n_atoms=n_atoms, R_model={}, R_lambda1={})
        if model is not None:
            pred, row["predict_seconds"] = model_prediction(model, snap)
            row["peak_rss_MB_after_predict"] = resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1024
        labels, row["label_seconds"] = labels_by_mode_count(path, snap, counts)
        minus_l1 = -np.asarray(snap["eigenvalues"], np.float64)[:, 0]
        for n, s in labels.items():
            row["R_lambda1"][f"S{n}"] = pearson(minus_l1, s)
            if model is not None:
                row["R_model"][f"S{n}"] = pearson(pred, s)
        rows.append(row)
        shown = "R_model" if model is not None else "R_lambda1"
        print(f"{path} (N = {n_atoms}), {shown}: " + ", ".join(
            f"S{n} {row[shown][f'S{n}']:.3f}" for n in labels)
            + (f"; predict {row['predict_seconds']:.1f}s" if model is not None else "")
            + f", labels {row['label_seconds']:.1f}s", flush=True)
    summary = summary_by_size(rows, counts)
    print_table(summary)
    out = dict(command="python experiments/does_r_hold_across_sizes.py " + " ".join(
        (argv if argv is not None else sys.argv[1:])), model=MODEL if model else None,
        mode_counts=counts, summary=summary, glasses=rows,
        peak_rss_MB=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    atomic_write_bytes(OUT_FILE, json.dumps(out, indent=2).encode())
    print(f"wrote {OUT_FILE}")
    return out


if __name__ == "__main__":
    main()
