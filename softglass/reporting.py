"""What a validation run (validate_rearrangements.py) writes and prints: rearrangements.json (the
summary, every indicator's scores, the models' paired differences, the event records), the
cumulative distribution of the hit's percentile per indicator, the first event as extended XYZ
(OVITO reads it) and the printed table. Every file is written atomically."""
import json
import os
import re

import numpy as np

from .files import atomic_write_bytes


def write_event_xyz(path, res, snap, indicators):
    """The pre-event minimum in its sheared cell with the non-affine displacement, D2min, true
    softness (the glass's label), the critical mode's participation (when the result has it)
    and every indicator as columns (OVITO reads it)."""
    cell = res["cell_before"]
    positions = np.mod(res["frac_before"], 1.0) @ cell.T
    names = np.array(["A", "B"])[np.asarray(snap["species"])]
    norm = np.linalg.norm(res["displacement"], axis=1)
    cols = [("nonaffine", res["displacement"]), ("displacement", norm[:, None]),
            ("d2min", res["d2min"][:, None]),
            ("softness_true", np.asarray(snap["softness_score"])[:, None])]
    if res.get("critical_participation") is not None:
        cols.append(("critical_mode", np.asarray(res["critical_participation"])[:, None]))
    cols += [(re.sub(r"[^A-Za-z0-9_]", "_", k), v[:, None]) for k, v in indicators.items()]
    if "model" in indicators:
        cols.append(("softness_pred", indicators["model"][:, None]))
    props = "species:S:1:pos:R:3" + "".join(f":{k}:R:{v.shape[1]}" for k, v in cols)
    lattice = " ".join(f"{x:.10f}" for x in cell.T.ravel())      # rows: the cell vectors
    values = np.concatenate([positions] + [v for _, v in cols], axis=1)
    lines = [str(len(names)), f'Lattice="{lattice}" Properties={props} pbc="T T T" '
             f'comment="first event of {res["glass"]} sheared {res["direction"]} at strain '
             f'{res["event_strain"]:.5f}; hit atom {res["hit"]}'
             + (f'; trigger atom {res["trigger"]}' if res.get("trigger") is not None else "")
             + '"']
    lines += [f"{s} " + " ".join(f"{v:.10g}" for v in row) for s, row in zip(names, values)]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def plot_hit_percentiles(table, path):
    """Each indicator's cumulative distribution of the hit's percentile rank (softglass.scores
    .score_records' table), best first, its mean and interval in the legend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, row in sorted(table.items(), key=lambda kv: -kv[1]["hit_percentile"][0]):
        p = np.sort(row["per_event_percentile"])
        m, lo, hi = row["hit_percentile"]
        ax.step(p, np.arange(1, len(p) + 1) / len(p), where="post",
                label=f"{name}: {m:.2f} [{lo:.2f}, {hi:.2f}]")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("percentile rank of the indicator at the hit atom")
    ax.set_ylabel("cumulative share of events")
    ax.set_title("Which indicator finds the first rearrangement?")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def model_files(model, more, models, kept=None):
    """The summary's model files: `model` (the file of "model") and `more` ({name: path}) as
    scored here (models: {indicator name: (model, sha256)}), over a kept run's (rescoring)."""
    kept = kept or {}
    more_models = dict(kept.get("more_models") or {})
    more_models.update({k: dict(file=v, sha256=models[f"model_{k}"][1]) for k, v in more.items()})
    return dict(model=model if "model" in models else kept.get("model"),
                model_sha256=models["model"][1] if "model" in models else kept.get("model_sha256"),
                more_models=more_models)


def write_scored_run(out_dir, summary, table, records, paired, protocol, constants):
    """Write out_dir/rearrangements.json (summary with the table's scores, the models' paired
    differences, the protocol, the script's constants and the event records) and the figure. An
    older run's figure and event.xyz are removed first, so a run without events (or a rescored
    one, which has no displacements) does not leave them beside its rearrangements.json. Returns
    the event.xyz path for the caller."""
    triggered = [r for r in records if "trigger" in r]
    if triggered:       # how often the minimiser-free trigger is the hit (docs/report.md 12)
        summary["hit_and_trigger"] = dict(
            n_events=len(triggered), trigger_is_hit=sum(r["trigger_is_hit"] for r in triggered),
            trigger_in_top_movers=sum(r["trigger_in_top_movers"] for r in triggered),
            median_hit_participation_rank=float(np.median(
                [r["hit_participation_rank"] for r in triggered])))
    summary.update(
        scores={k: {kk: vv for kk, vv in v.items()
                    if kk not in ("per_event_percentile", "glass_of_event")}
                for k, v in table.items()},
        paired_differences=paired, protocol=protocol, constants=constants, events=records)
    atomic_write_bytes(os.path.join(out_dir, "rearrangements.json"),
                       json.dumps(summary, indent=2).encode())
    figure, xyz = (os.path.join(out_dir, f) for f in ("hit_percentile_cdf.png", "event.xyz"))
    for path in (figure, xyz):
        if os.path.exists(path):
            os.remove(path)
    if table:
        plot_hit_percentiles(table, figure)
    return xyz


def print_table(summary):
    """The summary's statuses, then each indicator's scores (best first) and the paired
    differences."""
    print(f"{summary['statuses']} over {summary['n_glasses']} glasses; median event strain "
          f"{summary['event_strain']['median']}")
    print(f"{'indicator':<12} {'hit percentile [95%]':<24} {'hit in top 5%':<22} "
          f"{'AUC top 1%':<22}")
    for name, row in sorted(summary["scores"].items(), key=lambda kv: -kv[1]["hit_percentile"][0]):
        f = lambda t: "not kept" if t is None else f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"  # noqa
        auc = f(row["top_movers_auc"])
        if row.get("n_events_auc", row["n_events"]) < row["n_events"] and row["top_movers_auc"]:
            auc += f" ({row['n_events_auc']} of {row['n_events']} events)"
        print(f"{name:<12} {f(row['hit_percentile']):<24} {f(row['hit_in_top']):<22} {auc}")
    triggered = {k: v for k, v in summary["scores"].items() if v.get("n_events_trigger")}
    if triggered:
        agree = summary.get("hit_and_trigger", {})
        print(f"the trigger (critical mode's most-participating atom) over "
              f"{agree.get('n_events')} events: the hit itself in {agree.get('trigger_is_hit')}, "
              f"among the top movers in {agree.get('trigger_in_top_movers')}")
        print(f"{'indicator':<12} {'trigger percentile':<24} {'trigger in top 5%':<22} "
              f"{'R with the critical mode':<22}")
        f = lambda t: "not kept" if t is None else f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"  # noqa
        for name, row in sorted(triggered.items(), key=lambda kv: -kv[1]["trigger_percentile"][0]):
            print(f"{name:<12} {f(row['trigger_percentile']):<24} {f(row['trigger_in_top']):<22} "
                  f"{f(row['critical_mode_r'])}")
    if summary.get("paired_differences"):
        print("hit percentile, paired by event (model minus indicator) [by-glass 95%]:")
        for name, t in summary["paired_differences"].items():
            print(f"  {name:<24} {t[0]:+.3f} [{t[1]:+.3f}, {t[2]:+.3f}]")
