"""What a reader looks at after train.py: training curves, predicted vs true softness over the test
atoms, a slice through one test glass coloured by true and by predicted softness, and that glass
as extended XYZ (OVITO reads the cell, species and both softness columns). Every file is written
atomically."""
import io
import os

import numpy as np

from . import files
from .files import atomic_write_bytes
from .pairs import wrapped_fractional


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(history, path):
    """Loss, validation R and learning rate per epoch (the seed's training_curves.png)."""
    plt = _pyplot()
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(ep, [h["train_loss"] for h in history], label="train")
    ax[0].plot(ep, [h["val_loss"] for h in history], label="validation")
    ax[0].set(xlabel="epoch", ylabel="L1 loss (standardized)", title="loss")
    ax[0].legend()
    ax[1].plot(ep, [h["val_R"] for h in history])
    ax[1].set(xlabel="epoch", ylabel="Pearson R", title="validation R")
    ax[2].semilogy(ep, [h["lr"] for h in history])
    ax[2].set(xlabel="epoch", ylabel="learning rate", title="learning rate")
    fig.tight_layout()
    _save(fig, path)


def plot_hexbin(pred, true, r, path):
    """Predicted vs true softness of every test atom, log-density hexbin, y = x for reference."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    hb = ax.hexbin(true, pred, gridsize=60, bins="log", mincnt=1, cmap="viridis")
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "w--", lw=1)
    ax.set(xlabel="true softness S", ylabel="predicted softness",
           title=f"test atoms (n = {len(true)}), R = {r:.3f}")
    fig.colorbar(hb, ax=ax, label="atoms")
    fig.tight_layout()
    _save(fig, path)


def slab(snap, thickness=1.5):
    """Atoms whose fractional coordinate along the third cell vector lies in a slab of
    `thickness` (sigma) through the middle of the box; in-plane coordinates in the cell's own
    frame, so a rotated copy gives the same picture as its base."""
    cell = np.asarray(snap["cell"])
    box = float(np.linalg.norm(cell[0]))
    frac = wrapped_fractional(np.asarray(snap["positions"]), cell)
    keep = np.abs(frac[:, 2] - 0.5) * box < thickness / 2
    return keep, frac[:, 0] * box, frac[:, 1] * box


def plot_slice(snap, pred, true, path, title=""):
    """One slab of a glass, atoms as discs (A large, B small), coloured by the true and by the
    predicted softness on the same colour scale (the predicted one alone when true is None)."""
    plt = _pyplot()
    keep, x, y = slab(snap)
    size = np.where(np.asarray(snap["species"])[keep] == 0, 90, 45)
    panels = ([] if true is None else [(true, "true")]) + [(pred, "predicted")]
    lo, hi = np.percentile(np.concatenate([v for v, _ in panels]), [2, 98])
    fig, ax = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.8), squeeze=False)
    for a, (values, name) in zip(ax[0], panels):
        sc = a.scatter(x[keep], y[keep], c=values[keep], s=size, cmap="coolwarm", vmin=lo,
                       vmax=hi, edgecolors="k", linewidths=0.3)
        a.set(aspect="equal", title=f"{name} softness", xlabel="x (sigma)", ylabel="y (sigma)")
    fig.colorbar(sc, ax=ax, label="softness S")
    fig.suptitle(title)
    _save(fig, path)


def potential_info(params):
    """The pair potential as extended-XYZ header keys (absolute cut-offs, sigma_AA units), so that
    predict.py relaxes the file with the potential the glass was made with."""
    return dict(sigma=np.ravel(params["sigma"]), epsilon=np.ravel(params["epsilon"]),
                r_onset=float(params["r_onset"]), r_cutoff=float(params["r_cutoff"]))


def write_extxyz(path, positions, species, cell, columns, comment="", potential=None,
                 names=("Ni", "P")):
    """Extended XYZ through ASE (OVITO and ase.io.read open it without options): species as
    element symbols, A -> names[0] and B -> names[1] (Kob-Andersen's A80B20 is a model of
    Ni80P20), the mapping recorded in the header (species_A, species_B); positions wrapped into
    the (possibly rotated) cell; each named per-atom column (1 or 3 numbers per atom); and the
    potential when given (potential_info's keys)."""
    cell = np.asarray(cell, dtype=float)
    pos = wrapped_fractional(np.asarray(positions), cell) @ cell
    info = dict(species_A=names[0], species_B=names[1])
    info.update(potential_info(potential) if potential else {})
    info["comment"] = comment
    files.write_extxyz(path, np.asarray(names)[np.asarray(species)], pos, cell, columns, info)


def test_figures(test_set, pairs, s, out_dir, load_copy):
    """Hexbin of predicted vs true softness over the test atoms (one copy per base), and the
    test glass with the median per-glass R as a slice figure and as extended XYZ, in out_dir.
    pairs: standardized (prediction, target) per graph, s: the scaling that undoes it;
    load_copy(path): augment_data.py's reader of the glass's copy."""
    from .training import pearson
    first = {}
    for k, g in enumerate(test_set):
        first.setdefault(g.base, k)
    unit = lambda t: (t * s["y_std"] + s["y_mean"]).numpy()  # noqa: E731
    pred = np.concatenate([unit(pairs[k][0]) for k in first.values()])
    true = np.concatenate([unit(pairs[k][1]) for k in first.values()])
    plot_hexbin(pred, true, float(np.corrcoef(pred, true)[0, 1]),
                os.path.join(out_dir, "test_predicted_vs_true.png"))
    per_glass = sorted((pearson(*pairs[k]), k) for k in first.values())
    r, k = per_glass[len(per_glass) // 2]
    g = test_set[k]
    snap = load_copy(g.path)
    title = f"test glass {g.base} ({os.path.basename(g.path)}): median per-glass R = {r:.3f}"
    plot_slice(snap, unit(pairs[k][0]), unit(pairs[k][1]),
               os.path.join(out_dir, "test_glass_slice.png"), title)
    former = snap["parameters"].get("potential")      # another former's: its elements, no LJ
    write_extxyz(os.path.join(out_dir, "test_glass.xyz"), snap["positions"], snap["species"],
                 snap["cell"], dict(softness_true=unit(pairs[k][1]),
                                    softness_pred=unit(pairs[k][0])),
                 title, potential=None if former else snap["parameters"],
                 **(dict(names=(former["elements"][0], former["elements"][-1])) if former else {}))
