"""Isoconfigurational ensembles and dynamic propensity.

From one equilibrated liquid configuration, R runs start with new random velocities; the dynamic
propensity of atom i at time t is its mean squared displacement over the runs,
p_i(t) = < |r_i(t) - r_i(0)|^2 >_R (Widmer-Cooper, Harrowell and Fynewever, PRL 93, 135701
(2004)). What stays the same across the runs is the structure, so p_i is what the structure
alone can say about where the liquid relaxes.

Ensembles are read in the format of the BOTAN repository (Shiba et al., J. Chem. Phys. 158,
084503 (2023); the data of the roadmap's benchmark, Jung et al., arXiv:2311.14752): an .npz with
`types` (N), `initial_positions` (N x 3) and `positions` (R x N x 3, unwrapped, at one time).
"""
import numpy as np

from .files import GlassFileError, atomic_write_bytes
from .pairs import pair_list

ENSEMBLE_KEYS = ("types", "initial_positions", "positions")


def read_ensemble(path, density):
    """One isoconfigurational ensemble: dict(species, positions (the initial configuration,
    wrapped into the box), box, replicas, propensity, squared=the per-replica |dr|^2). The files
    carry no box: it is (N / density)^(1/3), and the initial positions must lie in it (else the
    density is wrong, or the file is another system's). Every problem is an error naming the
    file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ENSEMBLE_KEYS if k not in data.files]
            if missing:
                raise GlassFileError(f"{path}: missing {', '.join(missing)} (an ensemble holds "
                                     f"{', '.join(ENSEMBLE_KEYS)}; it has "
                                     f"{', '.join(data.files) or 'nothing'})")
            types, x0, runs = (np.asarray(data[k]) for k in ENSEMBLE_KEYS)
    except (OSError, ValueError, EOFError) as err:
        if isinstance(err, GlassFileError):
            raise
        raise GlassFileError(f"{path}: not a readable .npz ensemble ({type(err).__name__}: "
                             f"{err})") from None
    n = len(types)
    if types.ndim != 1 or n < 2:
        raise GlassFileError(f"{path}: types has shape {types.shape}; expected one integer per "
                             "atom")
    if x0.shape != (n, 3):
        raise GlassFileError(f"{path}: initial_positions has shape {x0.shape}; types says "
                             f"{n} atoms, so ({n}, 3) was expected")
    if runs.ndim != 3 or runs.shape[1:] != (n, 3):
        raise GlassFileError(f"{path}: positions has shape {runs.shape}; expected (replicas, "
                             f"{n}, 3): every replica must hold the same {n} atoms as types")
    if len(runs) < 2:
        raise GlassFileError(f"{path}: {len(runs)} replica: a propensity averages over several")
    species = types.astype(np.int64)
    if not np.array_equal(species, types) or set(np.unique(species)) != {0, 1}:
        raise GlassFileError(f"{path}: types holds {sorted(np.unique(types).tolist())}; expected "
                             "the two species 0 (A) and 1 (B)")
    for name, values in (("initial_positions", x0), ("positions", runs)):
        bad = np.argwhere(~np.isfinite(values))
        if len(bad):
            where = tuple(int(v) for v in bad[0])
            raise GlassFileError(f"{path}: {name} is not finite at index {where}")
    box = (n / density) ** (1 / 3)
    slack = 1e-6 * box
    if x0.min() < -slack or x0.max() > box + slack:
        raise GlassFileError(f"{path}: initial positions span {x0.min():.4f}..{x0.max():.4f}, "
                             f"outside the box of side {box:.5f} that {n} atoms at density "
                             f"{density} fill: wrong DENSITY, or not a configuration in the box")
    squared = np.sum((runs - x0[None]) ** 2, axis=-1)
    return dict(species=species, positions=np.mod(x0, box), box=box, replicas=len(runs),
                propensity=squared.mean(axis=0), squared=squared)


def per_atom_energy(phi, i, j, n_atoms):
    """e_i = 1/2 sum_j phi(r_ij): each pair's energy shared equally by its two atoms, so that
    sum_i e_i is the total energy."""
    e = np.zeros(n_atoms)
    np.add.at(e, i, 0.5 * phi)
    np.add.at(e, j, 0.5 * phi)
    return e


def coarse_grained(values, positions, box, length, cutoff):
    """x_i averaged over the atoms around i with weights exp(-r_ij / length) out to `cutoff`
    (i itself included with weight 1): the coarse-graining of structural descriptors that lets
    them predict dynamics over the length of a rearrangement (Tong and Tanaka, PRX 8, 011041
    (2018); Boattini et al., PRL 127, 088007 (2021)). length 0: the values themselves."""
    values = np.asarray(values, np.float64)
    if length <= 0:
        return values
    i, j, rij = pair_list(np.mod(positions, box), box, cutoff)
    w = np.exp(-np.linalg.norm(rij, axis=1) / length)
    n = len(values)
    total = values + np.bincount(i, w * values[j], n) + np.bincount(j, w * values[i], n)
    weight = 1.0 + np.bincount(i, w, n) + np.bincount(j, w, n)
    return total / weight


def correlations(pred, target, mask):
    """Pearson and Spearman R of pred with target over the atoms in mask."""
    from scipy.stats import spearmanr
    p, t = np.asarray(pred, np.float64)[mask], np.asarray(target, np.float64)[mask]
    return dict(pearson=float(np.corrcoef(p, t)[0, 1]), spearman=float(spearmanr(p, t)[0]))


def summary(per_config):
    """mean and std over configurations of each score in per_config ({config: {name: value}})."""
    names = next(iter(per_config.values())).keys()
    out = {}
    for name in names:
        v = np.array([c[name] for c in per_config.values()])
        out[name] = dict(mean=float(v.mean()), std=float(v.std()))
    return out


def score_table(indicators, targets, species, scored_species):
    """Pearson and Spearman R of every indicator with propensity over the atoms of
    scored_species: ({configuration: {indicator: R}}, {indicator: mean +- std over
    configurations and pooled over all of them}). Arguments are {configuration: ...}."""
    per = {}
    for c, values in indicators.items():
        mask = species[c] == scored_species
        per[c] = {name: correlations(v, targets[c], mask) for name, v in values.items()}
    names = next(iter(per.values())).keys()
    table = {}
    for name in names:
        rows = {c: per[c][name] for c in per}
        mask = np.concatenate([species[c] == scored_species for c in per])
        pooled = correlations(np.concatenate([indicators[c][name] for c in per]),
                              np.concatenate([targets[c] for c in per]), mask)
        table[name] = dict(summary(rows), pooled=pooled, n_configurations=len(rows))
    return per, table


# ================================ propensity.py's table and figure ==============================
def write_table(path, table, learned):
    """table.md: every indicator's R (mean +- std over configurations, pooled), best first."""
    lines = ["| indicator | Pearson R | Spearman R | pooled Pearson |", "|---|---|---|---|"]
    rows = sorted(table.items(), key=lambda kv: -kv[1]["pearson"]["mean"])
    for name, t in rows + sorted(learned.items()):
        lines.append(f"| {name} | {t['pearson']['mean']:.3f} +- {t['pearson']['std']:.3f} | "
                     f"{t['spearman']['mean']:.3f} +- {t['spearman']['std']:.3f} | "
                     f"{t['pooled']['pearson']:.3f} |")
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def plot_scores(path, table, learned):
    """Mean Pearson R (+- std over configurations) of each indicator, best first."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = sorted(table.items(), key=lambda kv: kv[1]["pearson"]["mean"]) + \
        sorted(learned.items())
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(rows) + 1.2))
    y = np.arange(len(rows))
    ax.barh(y, [t["pearson"]["mean"] for _, t in rows],
            xerr=[t["pearson"]["std"] for _, t in rows],
            color=["C1" if n in learned else "C0" for n, _ in rows])
    ax.set_yticks(y, [n for n, _ in rows], fontsize=7)
    ax.set_xlabel("Pearson R with propensity (A atoms)")
    ax.set_title("structure alone (blue); trained on propensity, validation (orange)",
                 fontsize=8)
    fig.tight_layout()
    from io import BytesIO
    buf = BytesIO()
    fig.savefig(buf, dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
