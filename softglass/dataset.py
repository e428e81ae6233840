"""What the model learns from: augment_data.py's rotated copies of each base glass as graphs,
grouped by base glass, checked against the data set's manifest; the label (the stored softness,
or S_i or the vibrality over the n softest modes of each base glass's Hessian, cached); a
fingerprint of what the model sees; the split by base glass; the scaling fitted on the training
atoms.

Every setting is an argument (DataSettings: train.py's data constants); the scripts' own readers
(augment_data's manifest and copies, generate_glass_data's Hessian path) come in as functions.
"""
import copy
import dataclasses
import glob
import hashlib
import json
import os

import numpy as np
import torch

from .files import (GlassFileError, atomic_write_pickle, file_sha256, former_of, load_glass,
                    safe_load_pickle)
from .graphs import glass_graph

LABEL_LETTERS = {"softness": "S", "vibrality": "V"}     # label -> its cache files' letter


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """train.py's data constants (the names in capitals are theirs)."""
    data_dir: str               # DATA_DIR: metadata.pkl, the base glasses, AUG_SUBDIR
    aug_subdir: str             # AUG_SUBDIR: augment_data.py's copies and their manifest
    labels_subdir: str          # LABELS_SUBDIR: the cache of labels over LABEL_MODES modes
    n_rotations: int            # N_ROTATIONS: rotated copies used per base glass
    rotation_shortcut: bool     # ROTATION_SHORTCUT: one graph stands for a base's copies
    label_modes: int            # LABEL_MODES: 0, the stored label; n, over n modes
    label: str                  # LABEL: "softness" or "vibrality"
    cutoff: float               # CUTOFF: graph edges, sigma_AA

    @property
    def aug_dir(self):
        return os.path.join(self.data_dir, self.aug_subdir)


@dataclasses.dataclass(frozen=True)
class Modes:
    """How a base glass's modes are computed (generate_glass_data's Hessian path)."""
    lowest: object              # (snapshot, k) -> its Hessian's k lowest (values, vectors), checked
    n_zero: int                 # N_ZERO_MODES: the translations skipped
    n_stored: int               # N_SOFT_MODES: of a stored label that does not record its modes


# ================================ the copies the manifest lists ===============================
def copies_used(manifest, settings):
    """{base: the file names of its first N_ROTATIONS copies} of augment_data.py's manifest;
    files in the folder that it does not list are reported and left unused."""
    aug_dir, n_rotations = settings.aug_dir, settings.n_rotations
    if n_rotations > manifest["n_rotations"]:
        raise SystemExit(f"error: N_ROTATIONS={n_rotations} but augment_data.py wrote "
                         f"{manifest['n_rotations']} rotations per glass in {aug_dir}")
    used = {int(b): names[:n_rotations] for b, names in manifest["files"].items()}
    listed = {n for names in manifest["files"].values() for n in names}
    strays = sorted(set(map(os.path.basename, glob.glob(os.path.join(aug_dir, "aug_*.pkl"))))
                    - listed)
    if strays:
        print(f"note: {len(strays)} files in {aug_dir} are not in its manifest and are not used "
              f"({', '.join(strays[:3])}{', ...' if len(strays) > 3 else ''})")
    return used


# ================================ the label over n modes =======================================
def bases_to_relabel(used, base_files, settings):
    """{base: path} of the base glasses `used` to label over LABEL_MODES modes, {} to train on
    the stored label. base_files: {base: path} of the data set's base glasses (None: not read)."""
    if not settings.label_modes:
        if settings.label != "softness":
            raise SystemExit(f"error: LABEL={settings.label} needs LABEL_MODES > 0 (the modes it "
                             "sums over)")
        return {}
    missing = sorted(set(used) - set(base_files))
    if missing:
        raise SystemExit(f"error: LABEL_MODES={settings.label_modes} needs the base glasses of "
                         f"{settings.aug_dir}, but {settings.data_dir} lacks bases {missing[:5]}")
    return {b: base_files[b] for b in used}


def label_over_modes(n_modes, bases, label, cache_dir, modes):
    """The label (S_i, or vibrality V_i) over the n_modes softest non-trivial modes of each base
    glass {index: path}: the sparse Hessian of its inherent structure, its lowest modes (the zero
    modes checked) and softness_from_modes (vibrality_from_modes), generate_glass_data's path. As
    a check that a file is the glass its copies were made from, the stored label is recomputed
    from the same modes (to 1e-8). Returns {index: (stored label, new label)}, each glass file
    read at most once. Cached per glass in cache_dir, keyed by the glass file's content, n_modes
    and the label."""
    from tqdm import tqdm
    if label not in LABEL_LETTERS:
        raise SystemExit(f"error: LABEL={label!r}: expected one of {tuple(LABEL_LETTERS)}")
    out = {}
    for b, path in tqdm(sorted(bases.items()), desc=f"{label} over {n_modes} modes",
                        unit="glass", disable=os.environ.get("RANK", "0") != "0"):
        name = os.path.basename(path).replace(".pkl", "")
        cache = os.path.join(cache_dir, f"{name}_{LABEL_LETTERS[label]}{n_modes}.pkl")
        made_from = dict(glass=file_sha256(path), n_modes=n_modes)
        if label != "softness":             # (softness caches from before LABEL stay valid)
            made_from["label"] = label
        stored = safe_load_pickle(cache) if os.path.exists(cache) else None
        if (isinstance(stored, dict) and stored.get("made_from") == made_from
                and "stored_label" in stored):         # (an older cache lacks it: recomputed)
            out[b] = stored["stored_label"], stored["softness"]
            continue
        out[b] = _labels_of_base(path, n_modes, label, modes)
        atomic_write_pickle(cache, dict(stored_label=out[b][0], softness=out[b][1],
                                        made_from=made_from))
    return out


def _labels_of_base(path, n_modes, label, modes):
    """(stored label, label over n_modes) of one base glass, its stored S checked."""
    from . import hessian
    snap = load_glass(path)
    n_stored = int(snap["parameters"].get("n_soft_modes") or modes.n_stored)
    vals, vecs = modes.lowest(snap, modes.n_zero + max(n_modes, n_stored))
    stored_label = np.asarray(snap["softness_score"])
    deviation = np.abs(hessian.softness_from_modes(vecs, modes.n_zero, n_stored)
                       - stored_label).max()
    if deviation > 1e-8:
        raise SystemExit(f"error: {path}: its stored softness_score is not S over its "
                         f"{n_stored} softest modes (max deviation {deviation:.2e}); "
                         "regenerate it")
    return stored_label, (hessian.softness_from_modes(vecs, modes.n_zero, n_modes)
                          if label == "softness" else
                          hessian.vibrality_from_modes(vals, vecs, modes.n_zero, n_modes))


# ================================ the graphs ===================================================
def graphs_by_base(used, n_atoms, relabelled, base_files, load_copy, settings):
    """The copies `used` as graphs grouped by base glass, and what the data say about
    themselves: the atom count, the label (modes summed in S), the former, the density range
    and a fingerprint of the data per base glass (a checkpoint of other data is never resumed).
    load_copy(path, n_atoms): augment_data.py's checked reader of one copy."""
    from tqdm import tqdm
    by_base, content, seen = {}, {}, dict(labels=set(), formers=set(), densities=[])
    for b, names in tqdm(sorted(used.items()), desc="graphs", unit="glass",
                         disable=os.environ.get("RANK", "0") != "0"):     # rank 0 under torchrun
        by_base[b], content[str(b)] = _graphs_of_base(b, names, n_atoms, relabelled, base_files,
                                                      load_copy, settings, seen)
    aug_dir = settings.aug_dir
    if len(seen["formers"]) > 1:
        raise SystemExit(f"error: the glasses of {aug_dir} mix glass formers "
                         f"({sorted(seen['formers'])}): a model learns one (their features are "
                         "in different units)")
    if len(seen["labels"]) > 1:
        raise SystemExit(f"error: the glasses of {aug_dir} mix softness labels (n_soft_modes "
                         f"{sorted(seen['labels'], key=str)}); regenerate them with one "
                         "N_SOFT_MODES")
    if settings.rotation_shortcut:    # the same graph object stands for every copy of its base
        by_base = {b: graphs * settings.n_rotations for b, graphs in by_base.items()}
    # the fingerprint is of what the model sees (coordinates, cell, labels, features), not of
    # the files' bytes: a glass remade identically (other timings recorded) is the same data
    fingerprint = hashlib.sha256(json.dumps(sorted(content.items())).encode()).hexdigest()
    info = dict(n_atoms=n_atoms, n_soft_modes=settings.label_modes or seen["labels"].pop(),
                label=settings.label, former=seen["formers"].pop(), data_fingerprint=fingerprint,
                n_bases=len(by_base), n_rotations=settings.n_rotations,
                density_range=[min(seen["densities"]), max(seen["densities"])], glasses=content)
    return dict(sorted(by_base.items())), info


def _graphs_of_base(b, names, n_atoms, relabelled, base_files, load_copy, settings, seen):
    """The graphs of one base glass's copies (one, with the shortcut) and the sha256 of what
    the model sees of them; their label, former and density are added to `seen`."""
    graphs, base_hash = [], hashlib.sha256()
    for name in names:
        path = os.path.join(settings.aug_dir, name)
        try:
            snap = load_copy(path, n_atoms)
        except GlassFileError as err:
            raise SystemExit(f"error: {err}")
        if relabelled:      # a rotation keeps the atoms' order and every mode's weights
            base_label, new_label = relabelled[b]
            if not np.array_equal(snap["softness_score"], base_label):
                raise SystemExit(f"error: {path} is not a rotated copy of base glass {b} "
                                 f"({base_files[b]}): their labels differ; rerun augment_data.py")
            snap["softness_score"] = new_label
        for key in ("positions", "species", "cell", "softness_score", "eigenvalues"):
            base_hash.update(np.ascontiguousarray(snap[key]).tobytes())
        seen["labels"].add(snap["parameters"].get("n_soft_modes"))
        seen["formers"].add(former_of(snap))
        seen["densities"].append(float(snap["parameters"]["density"]))
        if settings.rotation_shortcut and graphs:
            continue
        g = glass_graph(snap, settings.cutoff)
        g.path = path                                 # to reload its atoms for the figures
        if graphs and torch.equal(g.edge_index, graphs[0].edge_index):
            g.edge_index = graphs[0].edge_index       # rotations share one edge list in memory
        graphs.append(g)
    return graphs, base_hash.hexdigest()


# ================================ split and scaling ============================================
def split_bases(bases, seed, n_test, n_val):
    """Shuffle the base glasses with `seed`; all rotations of a base stay on one side.
    Returns (train, validation, test) base indices."""
    bases = sorted(bases)
    if len(bases) < n_test + n_val + 1:
        raise SystemExit(f"error: {len(bases)} base glasses cannot give N_TEST={n_test}, "
                         f"N_VAL={n_val} and a training set")
    order = np.random.default_rng(seed).permutation(bases).tolist()
    return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]


def fit_scaling(graphs):
    """Mean and std of the eigenvalue features and the target over the training atoms."""
    x = torch.cat([g.x[:, 2:] for g in graphs])
    y = torch.cat([g.y for g in graphs])
    return dict(x_mean=x.mean(0), x_std=x.std(0).clamp_min(1e-8), y_mean=y.mean(),
                y_std=y.std().clamp_min(1e-8))


def scaled(graphs, s):
    """Shallow copies of the graphs (edges shared, not copied) with standardized eigenvalues and
    target; a graph object repeated in `graphs` stays one object."""
    done = {}
    for g in graphs:
        if id(g) not in done:
            c = copy.copy(g)
            c.x = torch.cat([g.x[:, :2], (g.x[:, 2:] - s["x_mean"]) / s["x_std"]], dim=1)
            c.y = (g.y - s["y_mean"]) / s["y_std"]
            done[id(g)] = c
    return [done[id(g)] for g in graphs]


def scaled_sets(data, split, s, rotation_shortcut):
    """(train, validation, test) graphs, standardized with s. Evaluated with the shortcut, a
    base's copies are one object, evaluated once: pooled and per-glass R and MAE are unchanged by
    repeating identical predictions."""
    train_b, val_b, test_b = split
    copies = (lambda b: data[b][:1]) if rotation_shortcut else (lambda b: data[b])  # noqa: E731
    return (scaled([g for b in train_b for g in data[b]], s),
            scaled([g for b in val_b for g in copies(b)], s),
            scaled([g for b in test_b for g in copies(b)], s))
