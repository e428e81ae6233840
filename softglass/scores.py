"""How well a per-atom indicator locates an event: the percentile rank of the event's hit, whether
the hit is in the indicator's top share, the ROC AUC of the atoms that moved most, and means over
events with a bootstrap interval that resamples glasses (a glass's six shear directions often
trigger the same atom, so its events are not independent)."""
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
