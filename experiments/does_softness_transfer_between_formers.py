"""Does a model trained on one glass former predict the softness of another?

The R table of the glass-formers issue: former x label x training former. Each former has a
diverse set (generate_diverse_data.py, --POTENTIAL=<former> for another than Kob-Andersen) and
two models trained on it by train.py, on softness over 10 modes (the seed's label) and over 100.
On the test glasses of each former (its training runs' test split), each model predicts:
  - a model of the same former: the in-former R;
  - a model of another former: a transfer (softglass.prediction.transfer_scales: lengths scaled
    to the model's mean training density, local stiffnesses to its mean; the features made
    dimensionless), scored against the tested former's own label over the model's modes.
R is Pearson's, pooled over the test atoms (train.py's test R), and per glass (mean +- std).
The baselines (lambda_1, least squares, trees) are the in-former runs' own, from results.json.
The transfer share is transfer R / in-former R, the issue's goal being >= 70% on Cu-Zr.
A transfer is scored twice: species 0 and 1 given to the model as its own 0 and 1 (Cu -> A, the
majority), and swapped (Zr -> A): Kob-Andersen's A is the larger atom (sigma_AA 1 against
sigma_BB 0.88), and in Cu-Zr the larger is Zr (the minority), so the swap maps atoms by size.

    python experiments/does_softness_transfer_between_formers.py
        [--SETS=ka=data,cuzr=data/cuzr] [--MODELS=...] [--RUNS=...]
        [--OUT_FILE=runs/transfer_between_formers/transfer.json]
"""
import json
import os
import sys
import time

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides                              # noqa: E402
from softglass.files import GlassFileError, atomic_write_bytes, load_glass   # noqa: E402

# ================================ constants ====================================================
SETS = "ka=data,cuzr=data/cuzr"     # former=folder of its diverse set (metadata.pkl, glasses)
# former_sN=model file: the model trained on that former's set, on softness over N modes
MODELS = ("ka_s10=models/default_s10.pth,ka_s100=models/s100.pth,"
          "cuzr_s10=models/cuzr_s10.pth,cuzr_s100=models/cuzr_s100.pth")
# the same names=the training runs' records (results.json: the test split and the baselines)
RUNS = ("ka_s10=runs/model_default_s10,ka_s100=runs/model_s100,"
        "cuzr_s10=runs/model_cuzr_s10,cuzr_s100=runs/model_cuzr_s100")
LABELS_SUBDIR = "labels"            # train.py's cache of the labels over n modes, in each set
OUT_FILE = "runs/transfer_between_formers/transfer.json"


# ================================ inputs =========================================================
def named(text, flag):
    """{name: path} of a comma list name=path, paths from the repository root; a malformed
    entry or a missing path is an error naming `flag`."""
    from softglass.indicators import named_models
    return named_models(text, flag, lambda path: os.path.join(_ROOT, path))


def test_glasses(folder, results):
    """{base index: path} of a set's test glasses: the split its training run recorded, the
    files its metadata.pkl lists."""
    import augment_data
    files = dict(augment_data.base_files(folder))
    return {b: files[b] for b in results["split"]["test"]}


def label_over_modes(n_modes, glasses, folder):
    """{base: softness over n_modes} of the glasses: the stored label (n_modes = its modes) or
    train.py's cached label over n modes (computed and cached where missing)."""
    import generate_glass_data as ggd
    from softglass import dataset
    if n_modes == ggd.N_SOFT_MODES:
        return {b: np.asarray(load_glass(p)["softness_score"]) for b, p in glasses.items()}
    labels = dataset.label_over_modes(
        n_modes, glasses, "softness", os.path.join(folder, LABELS_SUBDIR),
        dataset.Modes(ggd.lowest_modes_of_snapshot, ggd.N_ZERO_MODES, ggd.N_SOFT_MODES))
    return {b: new for b, (_, new) in labels.items()}


# ================================ predictions and scores =========================================
def prediction(loaded, path, swap_species=False):
    """A model's softness per atom for a stored glass; a transfer when the glass is another
    former's (lengths and local stiffnesses rescaled: softglass.prediction.describe_snapshot).
    swap_species: the glass's species 0 and 1 given to the model as its 1 and 0."""
    import torch
    from softglass.files import former_of
    from softglass.prediction import describe_snapshot, predicted_softness
    model, scaling, card = loaded
    snap = load_glass(path)
    species = np.asarray(snap["species"])
    glass = dict(snapshot=snap, species=1 - species if swap_species else species,
                 former=former_of(snap), box=float(snap["box_size"]),
                 positions=np.asarray(snap["positions"], float))
    return predicted_softness(model, scaling, card, glass, describe_snapshot(glass, card),
                              torch.device("cpu"))


def scores(predicted, true):
    """Pearson R pooled over all atoms, and per glass (mean, std)."""
    bases = sorted(true)
    pooled = np.corrcoef(np.concatenate([predicted[b] for b in bases]),
                         np.concatenate([true[b] for b in bases]))[0, 1]
    per_glass = [float(np.corrcoef(predicted[b], true[b])[0, 1]) for b in bases]
    return dict(R=float(pooled), per_glass_mean=float(np.mean(per_glass)),
                per_glass_std=float(np.std(per_glass, ddof=1)), per_glass=per_glass)


def score_former(former, folder, models, runs):
    """Every model on `former`'s test glasses, each against the label over its own modes."""
    from softglass.checkpoints import load_trained_model
    import torch
    own = [name for name in models if name.startswith(former + "_")]
    results = {name: json.load(open(os.path.join(runs[name], "results.json"))) for name in own}
    splits = {tuple(r["split"]["test"]) for r in results.values()}
    if len(splits) != 1:
        raise SystemExit(f"error: the runs of {former} ({', '.join(own)}) test different glasses")
    glasses = test_glasses(folder, next(iter(results.values())))
    out = dict(n_glasses=len(glasses), set=os.path.relpath(folder, _ROOT), rows={})
    for name, path in models.items():
        loaded = load_trained_model(path, torch.device("cpu"), True, "hybrid_physics_best.pth")
        card = loaded[2]
        n_modes = int(card["n_soft_modes"])
        true = label_over_modes(n_modes, glasses, folder)
        row = out["rows"].setdefault(f"S{n_modes}", {})
        trained_on = card.get("former", "ka")
        for swap in (False, True) if trained_on != former else (False,):
            predicted = {b: prediction(loaded, p, swap) for b, p in glasses.items()}
            key = f"trained on {trained_on}" + (", species swapped" if swap else "")
            row[key] = dict(model=os.path.relpath(path, _ROOT), **scores(predicted, true))
        if trained_on == former:
            row["baselines"] = results[name]["baselines"]
            row["test_R_of_its_run"] = results[name]["test_R"]
    return out


def transfer_shares(table):
    """Transfer R over in-former R, per tested former and label."""
    for former, block in table.items():
        for label, row in block["rows"].items():
            own = row.get(f"trained on {former}", {}).get("R")
            for key, cell in row.items():
                if key.startswith("trained on ") and key != f"trained on {former}" and own:
                    cell["share_of_in_former_R"] = cell["R"] / own


def print_table(table):
    print("tested | label | trained on | R (pooled) | per glass | share | lambda_1 | LSQ | trees")
    for former, block in table.items():
        for label, row in block["rows"].items():
            b = row.get("baselines", {})
            for key, cell in row.items():
                if not key.startswith("trained on "):
                    continue
                share = cell.get("share_of_in_former_R")
                print(f"{former} | {label} | {key[11:]} | {cell['R']:.4f} | "
                      f"{cell['per_glass_mean']:.3f} +- {cell['per_glass_std']:.3f} | "
                      f"{'' if share is None else f'{share:.0%}'} | "
                      f"{b.get('lambda1_R', np.nan):.3f} | {b.get('least_squares_R', np.nan):.3f}"
                      f" | {b.get('gbt_neighbours_R', np.nan):.3f}")


# ================================ main ===========================================================
def main(argv=None):
    apply_overrides(globals(), argv)
    t0 = time.perf_counter()
    try:
        sets = {k: os.path.join(_ROOT, v) for k, v in
                (item.split("=", 1) for item in filter(None, SETS.split(",")))}
        models, runs = named(MODELS, "MODELS"), named(RUNS, "RUNS")
    except (GlassFileError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    if set(models) != set(runs):
        raise SystemExit(f"error: MODELS and RUNS name different models: {sorted(models)} "
                         f"against {sorted(runs)}")
    table = {former: score_former(former, folder, models, runs) for former, folder in sets.items()}
    transfer_shares(table)
    print_table(table)
    out = os.path.join(_ROOT, OUT_FILE)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    atomic_write_bytes(out, json.dumps(dict(table=table, seconds=time.perf_counter() - t0),
                                       indent=1).encode())
    print(f"wrote {out} in {time.perf_counter() - t0:.0f}s")
    return table


if __name__ == "__main__":
    main()
