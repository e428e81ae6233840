"""A run's first plastic events, from the shear to the scores it keeps.

  result files    one per (glass, direction): the engine's result (softglass.shear) with the
                  glass's name, file and sha256 and the protocol that made it, written
                  atomically, so a killed run resumes where it stopped
  event records   one yielded event scored by every indicator of its glass, with its hit and top
                  movers: rearrangements.json keeps them, so runs can be pooled and a model
                  trained later scored on a run's events after its folders are gone
  kept records    a finished run's records, refused unless scored under the same protocol
  rescoring       kept records scored again with new indicators, checked to be of the same
                  glasses and model files

Every setting is an argument: `protocol` is the dict of the constants that shape a result (a
result made with other values is made again), `top_hit_fraction` the share of atoms whose top an
event's hit must be in.
"""
import json
import os
import re

import numpy as np

from . import shear
from .files import (GlassFileError, atomic_write_pickle, file_sha256, load_glass,
                    safe_load_pickle, same_value)
from .scores import in_top, percentile_rank, roc_auc


# ================================ result files ===================================================
def named_glasses(paths):
    """[(name, path)]: each glass named by its file name less .pkl; two of one name are refused
    (their result files would collide)."""
    names = [re.sub(r"\.pkl$", "", os.path.basename(p)) for p in paths]
    if len(set(names)) != len(names):
        raise GlassFileError(f"GLASSES: two glasses share a file name ({', '.join(paths)})")
    return list(zip(names, paths))


def result_path(out_dir, name, direction):
    """out_dir/events/<glass>_<p|m><axes>.pkl, e.g. glass_007_pxy.pkl for +xy."""
    sign = "p" if direction.strip()[0] == "+" else "m"
    return os.path.join(out_dir, "events", f"{name}_{sign}{direction.strip()[1:]}.pkl")


def existing_result(path, protocol, glass_sha256=None):
    """A finished result of `protocol`, or None (missing, unreadable, other protocol). With
    glass_sha256, also None unless the result was sheared from a glass file of that content: a
    data set regenerated in place (same names, other glasses) must not inherit the old events.
    Results written before they named their glass (no glass_sha256) are made again."""
    if not os.path.exists(path):
        return None
    try:
        res = safe_load_pickle(path)
    except GlassFileError:
        return None
    if not (isinstance(res, dict) and res.get("status") and same_value(res.get("protocol"),
                                                                       protocol)):
        return None
    if glass_sha256 is not None and res.get("glass_sha256") != glass_sha256:
        return None
    return res


def shear_and_write(name, path, direction, out, shear_protocol, relaxation, protocol):
    """Shear the glass file `path` in `direction` to its first event (softglass.shear) and write
    its result file `out` (atomic). Returns (name, direction, status, event strain, seconds)."""
    snap = load_glass(path)
    res = shear.shear_to_first_event(snap, direction, shear_protocol, where=path,
                                     relaxation=relaxation)
    res.update(glass=name, path=path, glass_sha256=file_sha256(path), protocol=protocol)
    atomic_write_pickle(out, res)
    return name, direction, res["status"], res.get("event_strain"), res["seconds"]


def check_boxes(glasses, max_strain):
    """Refuse a glass ((name, path) in `glasses`) whose box is too small for its minimum image
    when sheared up to max_strain (softglass.shear.check_sheared_minimum_image), before any work."""
    for _, path in glasses:
        snap = load_glass(path)
        shear.check_sheared_minimum_image(float(snap["box_size"]),
                                          float(snap["parameters"]["r_cutoff"]), max_strain, path)


def finished_results(glasses, directions, out_dir, protocol):
    """{(glass, direction): result} of every (name, path) in `glasses` and direction; the glass
    files are hashed again (a glass rewritten during the shear has no results). Some missing is
    an error."""
    sha = {g: file_sha256(p) for g, p in glasses}
    results = {(g, d): existing_result(result_path(out_dir, g, d), protocol, sha[g])
               for g, _ in glasses for d in directions}
    missing = [f"{g} {d}" for (g, d), r in results.items() if r is None]
    if missing:
        raise RuntimeError(f"results missing for {missing[:5]}; run again to finish them")
    return results


def shear_summary(results, n_glasses, directions):
    """What a run's summary says of its shear: how many glasses and directions, how many
    yielded, did not yield or failed (and which), the event strains, the time per direction."""
    strains = np.array([r["event_strain"] for r in results.values() if r["status"] == "yielded"])
    statuses = {s: sum(r["status"] == s for r in results.values())
                for s in ("yielded", "no_yield", "fire_failed")}
    return dict(
        n_glasses=n_glasses, directions=directions, statuses=statuses,
        not_yielded=[f"{g} {d}: {r['status']} ({r['message']})" for (g, d), r in results.items()
                     if r["status"] != "yielded"],
        event_strain=dict(median=float(np.median(strains)) if len(strains) else None,
                          min=float(strains.min()) if len(strains) else None,
                          max=float(strains.max()) if len(strains) else None),
        seconds_per_direction=float(np.mean([r["seconds"] for r in results.values()])))


def kept_shear_summary(kept):
    """A kept run's shear_summary (its statuses and strains stand for a rescored run's)."""
    return {k: kept.get(k) for k in ("n_glasses", "directions", "statuses", "not_yielded",
                                     "event_strain", "seconds_per_direction")}


# ================================ event records ==================================================
def event_record(glass, res, indicators, top_hit_fraction):
    """One yielded event scored by every indicator of its glass: {name: [percentile rank of the
    hit, hit in the top top_hit_fraction, ROC AUC of the top movers]}, with the event's glass,
    its atom count (sets of other sizes pooled or compared), direction, strain and hit, its top
    movers and the glass file's sha256 (a model trained later is scored on them: rescored_record)."""
    scores = {}
    for name, x in indicators.items():
        positive = np.zeros(len(x), bool)
        positive[res["top_movers"]] = True
        scores[name] = [percentile_rank(x, res["hit"]), in_top(x, res["hit"], top_hit_fraction),
                        roc_auc(x, positive)]
    strain = res.get("event_strain")
    record = dict(glass=glass, n_atoms=len(next(iter(indicators.values()))),
                  direction=res.get("direction"), hit=int(res["hit"]),
                  top_movers=[int(i) for i in res["top_movers"]],
                  glass_sha256=res.get("glass_sha256"),
                  event_strain=None if strain is None else float(strain), scores=scores)
    if res.get("trigger") is not None:      # (a result made before the critical mode: none)
        record.update(trigger_record(res, indicators, top_hit_fraction))
    return record


def trigger_record(res, indicators, top_hit_fraction):
    """The event's critical mode (softglass.shear): its trigger (most-participating atom), its
    eigenvalue, where hit and trigger agree, and each indicator's [percentile rank of the
    trigger, trigger in the top top_hit_fraction, the indicator's Pearson R with the mode's
    participation per atom]."""
    trigger, participation = int(res["trigger"]), np.asarray(res["critical_participation"])
    return dict(
        trigger=trigger, critical_eigenvalue=float(res["critical_eigenvalue"]),
        trigger_is_hit=trigger == int(res["hit"]),
        trigger_in_top_movers=trigger in set(int(i) for i in res["top_movers"]),
        hit_participation_rank=float(percentile_rank(participation, int(res["hit"]))),
        trigger_scores={name: [percentile_rank(x, trigger), in_top(x, trigger, top_hit_fraction),
                               float(np.corrcoef(x, participation)[0, 1])]
                        for name, x in indicators.items()})


def kept_run(path, protocol, top_hit_fraction):
    """A run's rearrangements.json, refused with an error naming the file when its event records
    cannot be scored beside this code's: no records (written before they were kept), another
    shear protocol, or another top_hit_fraction (its top-5% column)."""
    try:
        with open(path) as fh:
            summary = json.load(fh)
    except (OSError, ValueError) as err:
        raise GlassFileError(f"{path}: not a readable rearrangements.json ({err})")
    if "events" not in summary:
        raise GlassFileError(f"{path}: no per-event records (written before they were kept; "
                             "score its run's events/ and indicators/ folders instead)")
    if summary.get("protocol") != protocol:
        raise GlassFileError(f"{path}: shear protocol {summary.get('protocol')} is not the "
                             f"current {protocol}")
    kept = summary.get("constants", {}).get("TOP_HIT_FRACTION")
    if kept != top_hit_fraction:
        raise GlassFileError(f"{path}: its events were scored with TOP_HIT_FRACTION = {kept}, "
                             f"not the current {top_hit_fraction}")
    return summary


def kept_records(path, protocol, top_hit_fraction):
    """The event records a run's rearrangements.json keeps (event_record), checked (kept_run)."""
    return kept_run(path, protocol, top_hit_fraction)["events"]


# ================================ rescoring ======================================================
def check_rescore(kept_path, kept, out_dir, glass_paths):
    """Refuse to score a kept run again when it would overwrite itself (rearrangements.json in
    out_dir) or when its glasses are not among glass_paths ({name: path}) or not the files it
    sheared (another sha256)."""
    records = kept["events"]
    out = os.path.join(out_dir, "rearrangements.json")
    if os.path.exists(out) and os.path.samefile(out, kept_path):
        raise GlassFileError(f"{kept_path}: RESCORE would overwrite the run it reads; give "
                             "another OUT_DIR")
    missing = sorted({r["glass"] for r in records} - set(glass_paths))
    if missing:
        raise GlassFileError(f"{kept_path}: its events are of glasses {missing[:5]}, not among "
                             "this run's (RESULTS_FILE's test glasses in DATA_DIR, or GLASSES)")
    glass_sha = {g: file_sha256(glass_paths[g]) for g in {r["glass"] for r in records}}
    for r in records:
        if r.get("glass_sha256") and r["glass_sha256"] != glass_sha[r["glass"]]:
            raise GlassFileError(f"{glass_paths[r['glass']]}: not the glass file {kept_path} "
                                 "sheared (another sha256)")


def kept_model_files(kept):
    """{indicator name: sha256 of the model file} of the models a kept run scored."""
    out = {"model": kept.get("model_sha256")} if kept.get("model_sha256") else {}
    out.update({f"model_{k}": v.get("sha256") for k, v in (kept.get("more_models") or {}).items()})
    return out


def check_kept_models(kept_path, kept, model_files):
    """Refuse a model file (model_files: {indicator name: sha256}) other than the one the kept
    run scored under the same name: its row would silently stand for another model (train.py's
    default OUT_DIR rewrites MODEL's file)."""
    kept_files = kept_model_files(kept)
    for name, sha in model_files.items():
        if kept_files.get(name) not in (None, sha):
            flag = "MODEL" if name == "model" else f"MORE_MODELS {name[len('model_'):]}"
            raise GlassFileError(
                f"{kept_path}: its {name!r} row is of another model file than {flag} names now "
                "(another sha256); score the new model under a new name (--MORE_MODELS="
                "name=path)" + (", with --MODEL=none to keep the kept row" if name == "model"
                                else ""))


def glass_determined(name, kept_constants, mode_counts, seed):
    """Whether an indicator is fixed by the glass file alone under the kept run's constants:
    softness over n modes and -lambda_1 always, vibrality at the same mode_counts, random at the
    same seed. Scored again on a kept event, such an indicator must rank the hit as it did."""
    if re.fullmatch(r"S\d+", name) or name == "-lambda_1":
        return True
    if name == "vibrality":
        return list(kept_constants.get("MODE_COUNTS", [])) == list(mode_counts)
    return name == "random" and kept_constants.get("SEED") == seed


def rescored_record(record, indicators, glass_fixed, as_kept, where, top_hit_fraction):
    """A kept event record (event_record) scored again with its glass's `indicators`: the hit's
    percentile and top share from the kept hit, the AUC from the kept movers. For records kept
    before their movers were, an indicator in `as_kept` (the same values as the kept run's: the
    glass-determined ones, a model of the same file) keeps its AUC, the others get None.
    Indicators not recomputed keep their stored scores (a model whose file is gone stays in the
    table and in the paired differences). An indicator in `glass_fixed` (glass_determined)
    ranking the hit otherwise than the record did means another glass under the same name:
    refused."""
    hit, movers = record["hit"], record.get("top_movers")
    scores = dict(record["scores"])
    for name, x in indicators.items():
        if len(x) != record.get("n_atoms", len(x)):
            raise GlassFileError(f"{where}: {record['glass']} has {record['n_atoms']} atoms in "
                                 f"the kept events, {len(x)} in this run's glass file")
        auc = None
        if movers is not None:
            positive = np.zeros(len(x), bool)
            positive[movers] = True
            auc = roc_auc(x, positive)
        new = [percentile_rank(x, hit), in_top(x, hit, top_hit_fraction), auc]
        old = scores.get(name)
        if old is not None and name in glass_fixed and abs(old[0] - new[0]) > 1e-9:
            raise GlassFileError(
                f"{where}: {record['glass']} {record['direction']}: {name} ranks the hit at "
                f"{new[0]:.4f} here, {old[0]:.4f} in the kept record: this run's glass file "
                "is not the one that was sheared")
        if old is not None and name in as_kept and auc is None:
            new[2] = old[2]
        scores[name] = new
    if "trigger" not in record:
        return dict(record, scores=scores)
    # the trigger's rank is scored again; its R with the critical mode needs the mode's
    # participation, which the record does not keep: kept where the values are the kept run's
    kept_triggers = record.get("trigger_scores", {})
    trigger_scores = dict(kept_triggers)
    for name, x in indicators.items():
        r_mode = kept_triggers.get(name, [None] * 3)[2] if name in as_kept else None
        trigger_scores[name] = [percentile_rank(x, record["trigger"]),
                                in_top(x, record["trigger"], top_hit_fraction), r_mode]
    return dict(record, scores=scores, trigger_scores=trigger_scores)


def rescored_records(kept_path, kept, indicators, model_files, mode_counts, seed,
                     top_hit_fraction):
    """The kept run's records scored again (rescored_record) with `indicators` ({glass: {name:
    values}}); model_files: {indicator name: sha256} of this run's models, those of a file the
    kept run scored under the same name counting as kept."""
    constants = kept.get("constants", {})
    first = indicators[min(indicators)] if indicators else {}
    glass_fixed = {k for k in first if glass_determined(k, constants, mode_counts, seed)}
    kept_files = kept_model_files(kept)
    as_kept = glass_fixed | {k for k, sha in model_files.items() if kept_files.get(k) == sha}
    return [rescored_record(r, indicators[r["glass"]], glass_fixed, as_kept, kept_path,
                            top_hit_fraction) for r in kept["events"]]


def print_result(r):
    """One finished shear (shear_and_write's return) as a line above a tqdm bar."""
    from tqdm import tqdm
    tqdm.write(f"  {r[0]} {r[1]}: {r[2]}" + (f" at strain {r[3]:.5f}" if r[3] is not None else "")
               + f" ({r[4]:.1f}s)")
