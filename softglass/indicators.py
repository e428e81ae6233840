"""The indicators of a glass: per-atom guesses of where its first plastic event happens, each
higher = predicted softer, computed from the unstrained inherent structure.

  S_n        softness over the n lowest non-trivial modes of the Hessian, sum_k |e_k(i)|^2
             (the seed's label is S_10)
  vibrality  sum_k |e_k(i)|^2 / lambda_k over the same (largest) set of modes
  -lambda_1  minus the lowest eigenvalue of the atom's local 3x3 Hessian block (stored)
  random     a uniform draw: the chance level
  predictors any per-atom prediction passed in (a trained model, gradient-boosted trees)

The indicators of a glass are cached beside a run's events under a key naming everything that
made them (glass file, mode counts, seed, model files, the trees' training glasses), so a
retrained model or another split recomputes them instead of scoring stale values.
"""
import dataclasses
import hashlib
import os
import re

import numpy as np

from . import hessian as hs
from .files import (GlassFileError, atomic_write_pickle, file_sha256, load_glass,
                    safe_load_pickle, same_value, system_of)


@dataclasses.dataclass(frozen=True)
class Spectrum:
    """How the Hessian's lowest modes are found and checked: generate_glass_data.py's constants of
    these names in upper case (the glass's labels were made with them)."""
    n_zero_modes: int                # global translations of a periodic box
    zero_mode_tol: float             # epsilon/sigma^2; |lambda| below this is a zero mode
    dense_eigh_max_atoms: int        # up to this N dense eigh, above it shift-invert eigsh
    eigsh_shift: float               # shift-invert target below the spectrum
    nd_leaf_atoms: int               # atoms; nested dissection stops cutting pieces this small


def indicators_of(snap, mode_counts, spectrum, seed=0, predictors=None):
    """{name: per-atom values} of the inherent structure `snap`: S_n for n in mode_counts,
    vibrality over max(mode_counts) modes, -lambda_1, random (drawn with `seed`), then each of
    `predictors` ({name: f(snap) -> per-atom values}) in its order."""
    system = system_of(snap)
    positions = np.asarray(snap["positions"], np.float64)
    h, _ = hs.hessian(positions, system)
    out, _ = modal_indicators(h, positions, float(snap["box_size"]), mode_counts, spectrum)
    out["-lambda_1"] = -np.asarray(snap["eigenvalues"], np.float64)[:, 0]
    out["random"] = np.random.default_rng(seed).random(len(positions))
    for name, predict in (predictors or {}).items():
        out[name] = predict(snap)
    return out


def modal_indicators(h, positions, box, mode_counts, spectrum):
    """From the Hessian h: S_n for n in mode_counts and vibrality over the largest n, its lowest
    modes found and checked (three zero modes, then positive) as spectrum says. Returns
    ({"S<n>": ..., "vibrality": ...}, the eigenvalues)."""
    n_zero, n_modes = spectrum.n_zero_modes, max(mode_counts)
    vals, vecs = hs.lowest_modes(h, n_zero + n_modes, positions, box,
                                 dense_max_atoms=spectrum.dense_eigh_max_atoms,
                                 shift=spectrum.eigsh_shift, leaf_atoms=spectrum.nd_leaf_atoms)
    hs.check_modes(vals, n_zero, spectrum.zero_mode_tol)
    out = {f"S{m}": hs.softness_from_modes(vecs, n_zero, m) for m in mode_counts}
    out["vibrality"] = hs.vibrality_from_modes(vals, vecs, n_zero, n_modes)
    return out, vals


def glass_indicators(name, path, cache_dir, mode_counts, seed, made_by, compute):
    """compute(snap, seed) -> the indicators of the glass file `path` (named `name`), cached in
    cache_dir/<name>.pkl. Its random indicator is drawn with seed * 100003 + the glass's number
    (the digits ending its name), so glasses get different draws. The cache's key names what made
    the values: mode_counts, seed, the glass file's sha256 and made_by (e.g. {"models": {name:
    sha256 of the file}, "gbt": the trees' key}); a cache of another key is computed again."""
    cache = os.path.join(cache_dir, f"{name}.pkl")
    stored = safe_load_pickle(cache) if os.path.exists(cache) else None
    made_from = dict(mode_counts=list(mode_counts), seed=seed, glass=file_sha256(path),
                     **made_by)
    if isinstance(stored, dict) and same_value(stored.get("made_from"), made_from):
        return stored["values"]
    snap = load_glass(path)
    number = re.search(r"(\d+)$", name)
    values = compute(snap, seed * 100003 + (int(number[1]) if number else 0))
    atomic_write_pickle(cache, dict(values=values, made_from=made_from))
    return values


def scored_models(model, more, load):
    """{indicator name: (model, sha256 of its file)}: the file `model` as "model" (skipped with a
    note when absent), each of `more` ({name: path}, checked present: named_models) as
    "model_<name>"; load(path) reads a model file."""
    models = {}
    if not os.path.exists(model):
        print(f"note: {model} not found: the model's prediction is not scored (train.py writes "
              "it)")
    else:
        models["model"] = (load(model), file_sha256(model))   # hashed once, not per glass
    for name, path in more.items():
        models[f"model_{name}"] = (load(path), file_sha256(path))
    return models


def named_models(text, flag="MORE_MODELS", resolve=None):
    """A comma list of name=path (e.g. "s100=s100/hybrid_physics_best.pth") as {name: path}; a
    malformed entry or a missing file is an error naming `flag`. resolve(path): where a given
    path is (e.g. from the repository root when not from the working folder)."""
    out = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, sep, path = (t.strip() for t in item.partition("="))
        if not sep or not re.fullmatch(r"[A-Za-z0-9_]+", name) or not path:
            raise GlassFileError(f"{flag}: {item!r} is not name=path (name: letters, "
                                 "digits, _)")
        found = resolve(path) if resolve else path
        if not os.path.exists(found):
            raise GlassFileError(f"{path}: model file not found ({flag} {name})")
        out[name] = found
    return out


def fitted_on(paths, features, fit):
    """A per-atom regressor fitted on the glass files `paths` (features(snap) -> (rows, labels);
    fit(rows, labels)), and a key naming its training set by content (sha256 over the files'
    sha256s): (regressor, key)."""
    digest = hashlib.sha256()
    xs, ys = [], []
    for path in paths:
        digest.update(file_sha256(path).encode())
        x, y = features(load_glass(path))
        xs.append(x)
        ys.append(y)
    return fit(np.concatenate(xs), np.concatenate(ys)), digest.hexdigest()
