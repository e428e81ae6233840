"""README's yield tables, printed from the committed rearrangements.json files (nothing typed in).

Which indicator of the unstrained glass best locates where it yields? Each RUNS entry is one set
of 18 test glasses sheared by validate_rearrangements.py (6 directions, 108 events); the first is
the headline, printed with its intervals, the others beside it. The first table ranks the
indicators by the hit's mean percentile; the second gives the models' differences to the other
indicators paired by event (by-glass bootstrap 95%), in bold where the interval excludes 0.

    python experiments/which_indicator_finds_the_yield.py
        [--RUNS=dense_r2=runs/yield_dense_r2_18/rearrangements.json,...]

tests/test_docs.py checks that README.md holds this output as printed (line breaks aside).
"""
import json
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from softglass.cli import apply_overrides  # noqa: E402

RUNS = ("dense_r2=runs/yield_dense_r2_18/rearrangements.json,"     # name=rearrangements.json;
        "former=runs/yield_grad_18/rearrangements.json,"      # the first is the headline
        "dense=runs/yield_dense_18/rearrangements.json")

LABELS = {              # indicator -> its row in the table
    "vibrality": "vibrality over 100 modes (Hessian)",
    "S100": "softness over 100 modes (Hessian)",
    "S30": "softness over 30 modes (Hessian)",
    "S10": "softness over 10 modes (Hessian; the seed's label)",
    "model_s100": "**model trained on S over 100 modes** (structure alone)",
    "model": "**default model** (trained on S10, structure alone)",
    "gbt": "trees on the local-Hessian features (train.py's baseline)",
    "-lambda_1": "-lambda_1 of the local Hessian (a model input)",
    "random": "random",
}
PAIRS = (               # (paired_differences key, its row)
    ("model_s100 - model", "model trained on S100 minus the default model"),
    ("model_s100 - vibrality", "model trained on S100 minus vibrality"),
    ("model_s100 - S100", "model trained on S100 minus S100, its label"),
    ("model - vibrality", "default model minus vibrality"),
    ("model - S10", "default model minus S10, its label"),
    ("model - -lambda_1", "default model minus -lambda_1, its input"),
    ("model - gbt", "default model minus the trees"),
)


def read_runs(runs):
    """[(name, path, summary)] of the RUNS entries; a missing or unreadable file is an error
    naming it."""
    out = []
    for item in filter(None, (x.strip() for x in runs.split(","))):
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"error: RUNS entry {item!r} is not name=path")
        try:
            with open(path) as fh:
                out.append((name, path, json.load(fh)))
        except (OSError, ValueError) as err:
            raise SystemExit(f"error: {path}: not a readable rearrangements.json ({err})")
    return out


def interval(t, signed=False):
    s = "+.3f" if signed else ".3f"
    return f"{t[0]:{s}} [{t[1]:{s}}, {t[2]:{s}}]"


def ranking_table(runs):
    """Markdown lines: one row per indicator of the headline run, by its mean hit percentile."""
    (name0, _, head), others = runs[0], runs[1:]
    lines = [f"| indicator (of the unstrained glass) | {name0} set: hit percentile [95%] "
             "| hit in its top 5% | AUC, top-1% movers | "
             + " | ".join(f"{n} set" for n, _, _ in others) + " |",
             "|---" * (4 + len(others)) + "|"]
    scores = head["scores"]
    for ind in sorted(scores, key=lambda k: -scores[k]["hit_percentile"][0]):
        row = scores[ind]
        top = row["hit_in_top"]
        cells = [LABELS.get(ind, ind), interval(row["hit_percentile"]),
                 f"{100 * top[0]:.0f}% [{100 * top[1]:.0f}, {100 * top[2]:.0f}]",
                 "—" if row["top_movers_auc"] is None else f"{row['top_movers_auc'][0]:.3f}"]
        cells += [f"{s['scores'][ind]['hit_percentile'][0]:.3f}" if ind in s["scores"] else "—"
                  for _, _, s in others]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def paired_table(runs):
    """Markdown lines: the models' paired differences in each run (bold: 0 outside the 95%)."""
    lines = ["| hit percentile, paired by event | " + " | ".join(f"{n} set" for n, _, _ in runs)
             + " |", "|---" * (1 + len(runs)) + "|"]
    for key, label in PAIRS:
        cells = []
        for _, _, s in runs:
            t = (s.get("paired_differences") or {}).get(key)
            text = "—" if t is None else interval(t, signed=True)
            cells.append(f"**{text}**" if t is not None and (t[1] > 0 or t[2] < 0) else text)
        if any(c != "—" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def events_line(runs):
    """Markdown: each run's yielded events and glasses, and its file."""
    return "Events: " + "; ".join(
        f"{n}, {s['statuses']['yielded']} of {sum(s['statuses'].values())} directions yielded "
        f"on {s['n_glasses']} glasses (`{p}`)" for n, p, s in runs) + "."


def main(argv=None):
    apply_overrides(globals(), argv)
    runs = read_runs(RUNS)
    text = "\n".join(ranking_table(runs) + [""] + paired_table(runs) + ["", events_line(runs)])
    print(text)
    return text


if __name__ == "__main__":
    main()
