"""How well a per-atom indicator locates an event: the percentile rank of the event's hit, whether
the hit is in the indicator's top share, the ROC AUC of the atoms that moved most, and means over
events with a bootstrap interval that resamples glasses (a glass's six shear directions often
trigger the same atom, so its events are not independent); a table of every indicator over a
run's event records, and each model's difference to every other indicator paired by event."""
import numpy as np


def percentile_rank(values, atom):
    """Share of the other atoms whose indicator is below the atom's (ties count half):
    1 = the highest, 0.5 on average for a random indicator."""
    others = np.delete(values, atom)
    v = values[atom]
    return float((np.sum(others < v) + 0.5 * np.sum(others == v)) / len(others))


def in_top(values, atom, fraction):
    """Whether the atom is among the ceil(fraction N) highest (fewer than that above it)."""
    return bool(np.sum(values > values[atom]) < int(np.ceil(fraction * len(values))))


def roc_auc(values, positive):
    """Probability that a positive atom outranks a negative one, ties counted half: the area
    under the ROC curve (scikit-learn's roc_auc_score; the Mann-Whitney U / (n_pos n_neg))."""
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(np.asarray(positive, bool), values))


def bootstrap_by_glass(values, glass_ids, n_boot, rng):
    """Mean over events and its 95% interval, resampling glasses (with all their events): the
    directions of one glass often trigger the same atom, so events are not independent."""
    values, glass_ids = np.asarray(values, float), np.asarray(glass_ids)
    glasses = np.unique(glass_ids)
    sums = np.array([values[glass_ids == g].sum() for g in glasses])
    counts = np.array([np.sum(glass_ids == g) for g in glasses])
    pick = rng.integers(0, len(glasses), size=(n_boot, len(glasses)))
    means = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(lo), float(hi)


def score_records(records, n_boot, seed):
    """records: event records (softglass.events.event_record). Returns {indicator: scores}: the
    mean over events of each measure (hit percentile, hit in the top share, AUC of the top
    movers) with its by-glass bootstrap 95% interval (n_boot resamples, each measure drawn from a
    generator seeded with `seed`), and the per-event percentiles with their glasses (the figure,
    paired_differences)."""
    table = {}
    for name in sorted({k for r in records for k in r["scores"]}):
        rows = [r for r in records if name in r["scores"]]
        gid = [r["glass"] for r in rows]
        pct, top, auc = zip(*(r["scores"][name] for r in rows))
        rng = np.random.default_rng(seed)
        # an AUC is None for an event kept without its movers and scored again (RESCORE)
        with_auc = [(a, g) for a, g in zip(auc, gid) if a is not None]
        table[name] = dict(
            n_events=len(rows), n_glasses=len(set(gid)),
            hit_percentile=bootstrap_by_glass(pct, gid, n_boot, rng),
            hit_in_top=bootstrap_by_glass(top, gid, n_boot, rng),
            top_movers_auc=(bootstrap_by_glass(*zip(*with_auc), n_boot, rng) if with_auc
                            else None),
            n_events_auc=len(with_auc),
            per_event_percentile=[float(p) for p in pct], glass_of_event=gid)
        table[name].update(trigger_scores(rows, name, n_boot, seed))
    return table


def trigger_scores(records, name, n_boot, seed):
    """The same measures for the events' triggers (the critical mode's most-participating atom,
    softglass.events.trigger_record), over the records that have one: the trigger's mean
    percentile and share in the top, and the mean R with the critical mode's participation."""
    rows = [r for r in records if name in r.get("trigger_scores", {})]
    if not rows:
        return {}
    gid = [r["glass"] for r in rows]
    pct, top, r_mode = zip(*(r["trigger_scores"][name] for r in rows))
    rng = np.random.default_rng(seed)
    # R with the mode is None for an event scored again without the mode kept (RESCORE)
    with_mode = [(r, g) for r, g in zip(r_mode, gid) if r is not None]
    return dict(n_events_trigger=len(rows),
                trigger_percentile=bootstrap_by_glass(pct, gid, n_boot, rng),
                trigger_in_top=bootstrap_by_glass(top, gid, n_boot, rng),
                critical_mode_r=(bootstrap_by_glass(*zip(*with_mode), n_boot, rng)
                                 if with_mode else None))


def paired_differences(table, n_boot, seed):
    """Each model's ("model", "model_<name>") hit percentile minus every other indicator's,
    event by event (the same events), mean and by-glass bootstrap 95% interval: intervals of two
    indicators overlap more than their difference is uncertain, since both see the same hard
    and easy events."""
    out = {}
    for m in sorted(k for k in table if k == "model" or k.startswith("model_")):
        for other in sorted(table):
            a, b = table[m], table[other]
            if other == m or a["glass_of_event"] != b["glass_of_event"]:
                continue
            diff = np.subtract(a["per_event_percentile"], b["per_event_percentile"])
            out[f"{m} - {other}"] = bootstrap_by_glass(
                diff, a["glass_of_event"], n_boot, np.random.default_rng(seed))
    return out
