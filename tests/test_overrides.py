"""Every --NAME=value override takes effect: nothing reads a constant once, at import.

(a) Static: in every script and benchmark that applies overrides, no function default names an
    UPPER_CASE constant (a default is evaluated once, when the module is imported, so an override
    applied later never reaches it), no code run at import derives a value from one of the
    module's constants, and no constant is copied from another module with `from x import NAME`.
(b) Behavioural, a table of (script, constant, override, observable): the override, applied the
    way that script applies it, changes what it must. "generate_glass_data" rows call the
    functions after apply_overrides on the module; "generate_glass_data.py" rows run its main();
    "generate_diverse_data.py" rows run the script on one 200-atom glass (short protocol), which
    forwards the override to its worker.
"""
import ast
import glob
import os
import pickle
from collections import namedtuple

import numpy as np
import pytest

import softglass.cli
from conftest import ROOT, TINY, TINY_PROTOCOL
from softglass.cli import apply_overrides
from softglass.files import load_glass


# ================================ (a) static ====================================================
def _applies_overrides(tree):
    return any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None))
               == "apply_overrides" for n in ast.walk(tree))


def _scripts():
    """Top-level scripts, benchmarks and experiments whose constants can be overridden."""
    paths = sorted(glob.glob(os.path.join(ROOT, "*.py"))
                   + glob.glob(os.path.join(ROOT, "benchmarks", "*.py"))
                   + glob.glob(os.path.join(ROOT, "experiments", "*.py")))
    return [os.path.relpath(p, ROOT) for p in paths
            if _applies_overrides(ast.parse(open(p, encoding="utf-8").read()))]


def _is_constant(name):
    return name.isupper() and not name.startswith("_")


def _module_constants(tree):
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        names |= {t.id for t in targets if isinstance(t, ast.Name) and _is_constant(t.id)}
    return names


def _names_read(nodes):
    return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Load)}


def _run_at_import(statements):
    """The expressions evaluated when the module is imported: everything but function and
    lambda bodies. Yields (node, what it is: 'default' or 'code')."""
    for node in statements:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from ((d, "default") for d in node.args.defaults + node.args.kw_defaults if d)
            yield from ((d, "code") for d in node.decorator_list)
        elif isinstance(node, ast.ClassDef):
            yield from ((d, "code") for d in node.bases + node.decorator_list)
            yield from _run_at_import(node.body)
        else:
            for sub in ast.walk(node):        # lambdas inside: their defaults only
                if isinstance(sub, ast.Lambda):
                    yield from ((d, "default") for d in sub.args.defaults + sub.args.kw_defaults
                                if d)
            yield node, "code"


def _inside_lambdas(node):
    """Nodes of the lambdas in `node`: a body runs when called, defaults are checked apart."""
    return {id(n) for lam in ast.walk(node) if isinstance(lam, ast.Lambda)
            for n in ast.walk(lam) if n is not lam}


def frozen_constants(source):
    """['line N: what'] for each place a module constant is read once, at import."""
    tree = ast.parse(source)
    constants = _module_constants(tree)
    problems = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            problems += [f"line {node.lineno}: `from {node.module} import {a.name}` copies a "
                         "constant: an override of the original never reaches the copy"
                         for a in node.names if _is_constant(a.name)]
    for node, kind in _run_at_import(tree.body):
        if kind == "default":
            upper = sorted(n for n in _names_read([node]) if n.isupper())
            problems += [f"line {node.lineno}: default argument reads {upper}"] if upper else []
            continue
        in_lambdas = _inside_lambdas(node)
        read = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(
            n.ctx, ast.Load) and n.id in constants and id(n) not in in_lambdas}
        if read:
            problems.append(f"line {node.lineno}: computed at import from {sorted(read)}")
    return problems


@pytest.mark.parametrize("script", _scripts())
def test_no_constant_is_frozen_at_import(script):
    with open(os.path.join(ROOT, script), encoding="utf-8") as fh:
        problems = frozen_constants(fh.read())
    assert not problems, (f"{script}: an override of these constants would not take effect "
                          "(default None + or_constants, or read it inside the function):\n  "
                          + "\n  ".join(problems))


def test_the_static_check_sees_the_scripts_and_the_patterns():
    scripts = _scripts()
    for name in ("generate_glass_data.py", "generate_diverse_data.py", "augment_data.py",
                 "train.py", os.path.join("experiments", "what_drives_r.py")):
        assert name in scripts
    bad = ("from augment_data import BASE_PATTERN\nN_SOFT = 10\nROOT = '/x'\n"
           "DATA_DIR = ROOT + '/data'\n_derived = N_SOFT * 3\n"
           "def f(n=N_SOFT, m=(1, OTHER)):\n    return N_SOFT\n"
           "g = lambda k=N_SOFT: k\nh = lambda: N_SOFT\n")
    problems = frozen_constants(bad)
    assert [p.split(":")[0] for p in problems] == [
        "line 1", "line 4", "line 5", "line 6", "line 6", "line 8"], problems
    assert frozen_constants("N = 3\ndef f(n=None):\n    return N\n") == []


# ================================ (b) behavioural ===============================================
Row = namedtuple("Row", "script constant override observe expected")
CHANGED = "any value other than before"     # expected, where the exact value is not known
# An orthonormal 3N x K matrix: columns as unit eigenvectors of a 50-atom system.
_VECS = np.linalg.qr(np.random.default_rng(0).standard_normal((150, 60)))[0]
_VALS = np.linspace(-0.1, 5.0, 60)
_UNIT = np.eye(150)[:, :60]     # mode k lives on coordinate k, so on atom k // 3


def _solver(ggd, tiny_glass):
    """Which eigensolver lowest_modes uses on the 200-atom glass's Hessian."""
    p = tiny_glass["parameters"]
    system = ggd.make_system(p["n_atoms"], p["density"], p["species_ratio"], p["sigma"],
                             p["epsilon"], p["seed"])
    h, _ = ggd.hessian(tiny_glass["positions"], system)
    import scipy.sparse.linalg
    calls, eigsh = [], scipy.sparse.linalg.eigsh
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scipy.sparse.linalg, "eigsh", lambda *a, **k: calls.append(1) or
                   eigsh(*a, **k))
        ggd.lowest_modes(h, 13)
    return "eigsh" if calls else "eigh"


def _label(snap):
    return round(float(snap["softness_score"].sum()), 6), snap["parameters"]["n_soft_modes"]


def _heat(snap):
    p = snap["parameters"]
    return p["heat_steps"], p.get("protocol", {}).get("generate_glass_data.py", {}).get(
        "HEAT_STEPS")


def _force_tol(snap):
    p = snap["parameters"]
    return p["force_tol"], p["max_force"] < p["force_tol"]


ROWS = [
    Row("generate_glass_data", "N_SOFT_MODES", "30",
        lambda ggd, _: round(ggd.softness_from_modes(_VECS).sum(), 9), 30.0),
    Row("generate_glass_data", "N_SOFT_MODES", "30",
        lambda ggd, _: round(ggd.softness_of_any_configuration(_VALS, _VECS).sum(), 9), 30.0),
    Row("generate_glass_data", "N_ZERO_MODES", "4",     # modes 5..14: atom 1 loses coordinate 3
        lambda ggd, _: tuple(np.round(ggd.softness_from_modes(_UNIT)[:6], 9)), (0, 2, 3, 3, 2, 0)),
    Row("generate_glass_data", "N_ZERO_MODES", "4",
        lambda ggd, _: len(ggd.vibrational_modes(_VALS, _VECS)), 56),
    Row("generate_glass_data", "DENSE_EIGH_MAX_ATOMS", "100", _solver, "eigsh"),
    Row("generate_glass_data.py", "N_SOFT_MODES", "30", _label, (30.0, 30)),
    Row("generate_glass_data.py", "FORCE_TOL", "1e-9", _force_tol, (1e-9, True)),
    Row("generate_glass_data.py", "HEAT_STEPS", "200", _heat, (200, None)),
    # read inside jit-compiled FIRE: the override must reach the program, not a cached one
    Row("generate_glass_data.py", "FIRE_DT_MAX", "0.01",
        lambda snap: snap["parameters"]["n_fire_steps"], CHANGED),
    Row("generate_diverse_data.py", "N_SOFT_MODES", "30", _label, (30.0, 30)),
    Row("generate_diverse_data.py", "FORCE_TOL", "1e-9", _force_tol, (1e-9, True)),
    Row("generate_diverse_data.py", "HEAT_STEPS", "200", _heat, (200, 200)),
]


def _in_process(row, ggd, tiny_glass):
    saved = softglass.cli.constants_of(vars(ggd))
    try:
        before = row.observe(ggd, tiny_glass)
        apply_overrides(vars(ggd), [f"--{row.constant}={row.override}"])
        return before, row.observe(ggd, tiny_glass)
    finally:
        vars(ggd).update(saved)


def _by_main(row, ggd, tiny_glass, tmp_path):
    """The script run as a user does, on the tiny glass's settings plus the override."""
    saved = softglass.cli.constants_of(vars(ggd))
    args = [f"--{k}={v}" for k, v in TINY_PROTOCOL.items()] + [
        f"--DATA_DIR={tmp_path}", f"--N_ATOMS={TINY['n_atoms']}", f"--DENSITY={TINY['density']}",
        f"--TEMPERATURE={TINY['temperature']}", f"--QUENCH_STEPS={TINY['quench_steps']}",
        f"--SEED={TINY['seed']}",
        f"--{row.constant}={row.override}"]
    try:
        ggd.main(args)
    finally:
        vars(ggd).update(saved)
    written = tmp_path / ggd.output_file(TINY["n_atoms"])
    return row.observe(tiny_glass), row.observe(load_glass(str(written)))


@pytest.fixture(scope="module")
def forwarded_glass(tmp_path_factory, ggd):
    """One 200-atom glass from generate_diverse_data.py given every override of its rows (a
    density and sigma range narrow enough for 200 atoms; the short protocol of the tests). Its
    main() runs in this process (no second interpreter importing jax, ~8 s); the glass is made,
    as always, by a Dask worker process, which gets the overrides only by their forwarding: what
    these rows test. The constants of both scripts and the environment are restored after."""
    import generate_diverse_data as gdd
    d = tmp_path_factory.mktemp("diverse")
    overrides = [f"--{r.constant}={r.override}" for r in ROWS
                 if r.script == "generate_diverse_data.py"]
    args = (["--N_CONFIGS=1",
             "--N_ATOMS=200", "--N_WORKERS=1", f"--DATA_DIR={d}", "--DENSITY_RANGE=(1.2, 1.2)",
             "--SIGMA_SCALE_RANGE=(1.0, 1.0)", "--QUENCH_STEPS_RANGE=(600, 600)"]
            + [f"--{k}={v}" for k, v in TINY_PROTOCOL.items()] + overrides)
    saved = [(module, softglass.cli.constants_of(vars(module))) for module in (gdd, ggd)]
    environ = dict(os.environ)
    try:
        gdd.main(args)
    finally:
        for module, constants in saved:
            vars(module).update(constants)
        os.environ.clear()
        os.environ.update(environ)
    meta = pickle.loads((d / "metadata.pkl").read_bytes())
    return load_glass(str(d / meta["records"][0]["file"]), n_atoms=200)


def _by_forwarding(row, tiny_glass, request):
    return row.observe(tiny_glass), row.observe(request.getfixturevalue("forwarded_glass"))


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.script}:{r.constant}={r.override}")
def test_override_changes_its_observable(row, ggd, tiny_glass, tmp_path, request):
    if row.script == "generate_glass_data":
        before, after = _in_process(row, ggd, tiny_glass)
    elif row.script == "generate_glass_data.py":
        before, after = _by_main(row, ggd, tiny_glass, tmp_path)
    else:
        before, after = _by_forwarding(row, tiny_glass, request)
    if row.expected is CHANGED:
        assert after != before, (before, after)
    else:
        assert after == row.expected and before != row.expected, (before, after)
