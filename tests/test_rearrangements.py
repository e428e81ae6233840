"""Physics of softglass/shear.py (athermal quasistatic shear) and validate_rearrangements.py (its
scores and pipeline) on the 200-atom tiny glass.

Its 5.50 sigma box stays wider than 2 r_cut = 5.0 under shear up to gamma = 0.458, so MAX_STRAIN
= 0.2 is legal there (checked below); the skin shrinks to keep listed images unique.
"""
import dataclasses
import itertools
import json
import re
import sys

import numpy as np
import scipy.sparse
import pytest

from softglass import neighbours
from softglass import pairs
from softglass import hessian as hs

from conftest import load_benchmark


@pytest.fixture(scope="module")
def vr(ggd):
    import validate_rearrangements as module
    return module


@pytest.fixture(scope="module")
def aqs(vr):
    from softglass import shear as module
    return module


@pytest.fixture(scope="module")
def relaxation(vr):
    """generate_glass_data's settings of FIRE and the factors, as validate_rearrangements reads
    them."""
    return vr.relaxation()


@pytest.fixture(scope="module")
def protocol(vr):
    """The engine's settings from validate_rearrangements' default constants."""
    return vr.shear_protocol()


@pytest.fixture(scope="module")
def event(relaxation, aqs, protocol, tiny_glass):
    """The first event of the tiny glass sheared +xz (one AQS run shared by the tests)."""
    return aqs.shear_to_first_event(tiny_glass, "+xz", protocol, relaxation=relaxation)


def brute_force_nearest(frac, cell, i, j):
    """Nearest-image distance of each pair over all 27 images of the sheared cell."""
    shifts = np.array(list(itertools.product((-1, 0, 1), repeat=3)), float)
    r = frac @ cell.T
    d = r[j] - r[i]
    images = d[:, None, :] + (shifts @ cell.T)[None, :, :]
    return np.min(np.linalg.norm(images, axis=2), axis=1)


def test_sheared_distances_equal_affinely_mapped_positions(aqs, tiny_glass):
    """The sheared cell's distances (the jitted displacement FIRE uses, and the numpy pair list)
    equal brute-force nearest images of the affinely mapped positions r = T s, every pair."""
    import jax
    import jax.numpy as jnp
    from jax_md import space
    snap = tiny_glass
    frac = snap["positions"] / snap["box_size"]
    r_cut = snap["parameters"]["r_cutoff"]
    for direction, strain in (("+xy", 0.13), ("-yz", 0.2), ("+xz", 0.0)):
        cell = aqs.sheared_cell(snap["box_size"], direction, strain)
        i, j, rij = pairs.pair_list(frac, cell, r_cut)      # the general-cell branch
        displacement, _ = aqs.sheared_space(jnp.asarray(cell))
        d_jax = np.asarray(jax.jit(space.map_bond(displacement))(jnp.asarray(frac[j]),
                                                                 jnp.asarray(frac[i])))
        brute = brute_force_nearest(frac, cell, i, j)
        np.testing.assert_allclose(np.linalg.norm(rij, axis=1), brute, rtol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(d_jax, axis=1), brute, rtol=1e-12)
        # and no pair within r_cut is missed: all pairs by brute force
        a, b = np.triu_indices(len(frac), 1)
        close = brute_force_nearest(frac, cell, a, b) < r_cut
        assert close.sum() == len(i)


@pytest.mark.parametrize("kernel", ["grad", "dense", "dense_r2"])
def test_jitted_energy_and_forces_equal_the_pair_list(relaxation, aqs, protocol, ggd, tiny_glass, kernel):
    """The compiled energy and forces FIRE minimises (neighbour list, fractional coordinates)
    equal the numpy pair-list ones in a sheared cell: -jax.grad of the energy on a half list
    ("grad"), or the explicit pair forces summed along the rows of a Dense list ("dense"; the
    pair term in closed form in r^2: "dense_r2")."""
    import jax
    import jax.numpy as jnp
    from jax_md import partition
    glass = aqs.ShearedGlass(tiny_glass, "-xz", dataclasses.replace(protocol, force_kernel=kernel),
                             relaxation=relaxation)
    s, cell = glass.system, jnp.asarray(glass.cell(0.15))
    p = {k: jnp.asarray(v, jnp.float64) for k, v in s.items() if k not in ("species", "box")}
    p.update(cell=cell, species=jnp.asarray(s["species"], jnp.int32),
             r_list=jnp.float64(s["r_cutoff"]))
    _, neighbor_fn, energy_fn = aqs._sheared_system(p, glass.skin, kernel, 0)
    frac = jnp.asarray(glass.frac0)
    neighbor_fn.force_kernel = kernel          # what ShearedGlass gives the list it allocates
    neighbor_fn.capacity_margin = relaxation.capacity_margin
    nbrs = neighbours.allocate_neighbors(neighbor_fn, frac)
    kw = dict(species=p["species"], sigma=p["sigma"], epsilon=p["epsilon"])
    e_np, f_np, _ = glass.energy_forces_stress(glass.frac0, 0.15)
    if kernel != "grad":
        assert nbrs.format is partition.Dense
        f = jax.jit(lambda r, nb: energy_fn(r, neighbor=nb, **kw))(frac, nbrs)
        nbrs = neighbor_fn.update(frac + 0.2, nbrs)      # a rebuild keeps the format
        assert nbrs.format is partition.Dense and not nbrs.did_buffer_overflow
    else:
        e = jax.jit(lambda r, nb: energy_fn(r, neighbor=nb, **kw))(frac, nbrs)
        f = jax.jit(jax.grad(lambda r, nb: -energy_fn(r, neighbor=nb, **kw)))(frac, nbrs)
        assert float(e) == pytest.approx(e_np, rel=1e-13)
    assert np.max(np.abs(np.asarray(f) - f_np)) < 1e-11


def test_too_small_a_sheared_box_is_refused(aqs):
    with pytest.raises(ValueError, match="minimum image"):
        aqs.check_sheared_minimum_image(5.5, 2.5, 0.5, "small.pkl")
    assert aqs.check_sheared_minimum_image(5.5, 2.5, 0.2) > 5.0


def test_direction_names(aqs):
    assert aqs.parse_direction("-xz") == (0, 2, -1.0)
    cell = aqs.sheared_cell(2.0, "-yz", 0.1)
    assert cell[1, 2] == pytest.approx(-0.2)
    assert np.count_nonzero(cell - np.diag(np.diag(cell))) == 1
    with pytest.raises(ValueError, match="direction"):
        aqs.parse_direction("xy")


def test_initial_slope_equals_shear_modulus_from_hessian(relaxation, aqs, protocol, tiny_glass):
    """dtau/dgamma of relaxed minima at gamma = 0 and 1e-4 equals G = Born - Xi^T H^+ Xi (the
    non-affine correction is large: dropping it would miss by tens of percent)."""
    for direction in ("+xy", "-yz"):
        glass = aqs.ShearedGlass(tiny_glass, direction, protocol, relaxation=relaxation)
        m0 = glass.relax(glass.frac0, 0.0)
        m1 = glass.relax(glass.frac0, 1e-4)          # pure affine start, FIRE does the rest
        slope = (m1["stress"] - m0["stress"]) / 1e-4
        resp = glass.response(m0["frac"], 0.0)
        assert slope == pytest.approx(resp["modulus"], rel=0.02)
        assert resp["correction"] > 0.1 * resp["born"]
        # the linear response also predicts where the atoms go
        moved = (m1["frac"] - m0["frac"]) @ glass.cell(1e-4).T
        moved -= moved.mean(axis=0)
        predicted = resp["velocity"] * 1e-4
        assert np.linalg.norm(moved - predicted) < 0.05 * np.linalg.norm(predicted)


def test_loading_then_unloading_below_the_event_returns_to_the_same_minimum(relaxation, aqs, protocol,
                                                                             tiny_glass, event):
    glass = aqs.ShearedGlass(tiny_glass, "+xz", protocol, relaxation=relaxation)
    start = glass.relax(glass.frac0, 0.0)
    top = 0.5 * event["strain_before"]
    state = start
    path = np.linspace(0.0, top, 4)[1:].tolist() + np.linspace(top, 0.0, 4)[1:].tolist()
    for strain in path:
        state = glass.relax(glass.predicted_start(state, strain), strain)
    assert state["strain"] == 0.0
    ds = state["frac"] - start["frac"]
    ds -= np.round(ds)
    assert np.max(np.linalg.norm(ds * tiny_glass["box_size"], axis=1)) < 1e-6
    assert state["energy"] == pytest.approx(start["energy"], abs=1e-9)


def test_event_is_found_with_energy_drop_and_moving_atoms(vr, event):
    assert event["status"] == "yielded", event["message"]
    assert 0.0 < event["event_strain"] <= vr.MAX_STRAIN
    assert event["strain_after"] - event["strain_before"] <= vr.STRAIN_RESOLUTION
    assert event["energy_drop"] > 10 * vr.DISSIPATION_TOL
    assert event["elastic_dissipation_max"] < 0.1 * vr.DISSIPATION_TOL
    u = np.linalg.norm(event["displacement"], axis=1)
    assert event["hit"] == int(np.argmax(u)) and u.max() > 0.05
    assert set(event["top_movers"].tolist()) == set(np.argsort(-u)[:len(event["top_movers"])])
    assert event["d2min"].shape == u.shape and event["d2min"][event["hit"]] > np.median(
        event["d2min"])
    curve = event["curve"]
    assert np.all(np.diff(curve["strain"]) >= 0) and curve["stable"][0] == 1
    # the stress falls at the event (a plastic drop), and the curve records both sides
    assert event["stress_drop"] > 0


def test_the_critical_mode_softens_to_the_event_and_names_a_trigger(relaxation, aqs, protocol,
                                                                   tiny_glass, event):
    """The critical mode at the last stable minimum: the lowest vibrational eigenvalue of the
    dense Hessian there (numpy's eigh, the translations skipped), far below the glass's own at
    zero strain, since it vanishes at the event (saddle-node: lambda_c ~ sqrt(gamma_c - gamma));
    its participation sums to 1 and the trigger is its largest. The event record keeps the
    trigger, whether it is the hit, and each indicator's rank of it."""
    from softglass import events, hessian as hs
    glass = aqs.ShearedGlass(tiny_glass, "+xz", protocol, relaxation=relaxation)
    lam_c, p = glass.critical_mode(event["frac_before"], event["strain_before"])
    i, j, rij, r, _, d1, d2 = glass._pair_terms(event["frac_before"], event["strain_before"])
    h, _ = hs.hessian_from_pairs(len(p), i, j, hs.pair_hessian_blocks(rij, r, d1, d2))
    vals, vecs = np.linalg.eigh(h.toarray())
    k = hs.vibrational_modes(vals, vecs, 3)[0]
    assert lam_c == pytest.approx(vals[k], rel=1e-8, abs=1e-12)
    assert np.allclose(p, np.sum(vecs[:, k].reshape(-1, 3) ** 2, axis=1), atol=1e-8)
    assert p.sum() == pytest.approx(1.0, rel=1e-10)
    lam_0, _ = glass.critical_mode(glass.frac0, 0.0)
    assert 0 < lam_c < 0.1 * lam_0
    assert event["critical_eigenvalue"] == lam_c and event["trigger"] == int(np.argmax(p))
    indicators = dict(participation=p, hit_first=np.arange(len(p)) == event["hit"])
    record = events.event_record("g", event, indicators, 0.05)
    assert record["trigger"] == event["trigger"]
    assert record["trigger_is_hit"] == (event["trigger"] == event["hit"])
    assert record["trigger_scores"]["participation"][:2] == [1.0, True]
    assert record["trigger_scores"]["participation"][2] == pytest.approx(1.0)


def test_no_yield_and_fire_failure_are_recorded_never_dropped(relaxation, vr, aqs, protocol, tiny_glass,
                                                              event, small_model, tmp_path,
                                                              monkeypatch):
    """The engine returns 'no_yield' for a direction still elastic at MAX_STRAIN and
    'fire_failed' when FIRE runs out of steps; the pipeline counts and names both beside the
    yielded event, scores the event alone, and exports it with the model's prediction."""
    below = np.floor(event["event_strain"] / protocol.strain_step - 1e-9) * protocol.strain_step
    assert below >= protocol.strain_step, "the tiny glass yields within one strain step"
    elastic = aqs.shear_to_first_event(tiny_glass, "+xz",
                                       dataclasses.replace(protocol, max_strain=below),
                                       relaxation=relaxation)
    assert elastic["status"] == "no_yield" and "no event up to strain" in elastic["message"]
    assert elastic["curve"]["strain"].max() == pytest.approx(below)
    assert np.all(elastic["curve"]["stable"] == 1) and "hit" not in elastic
    failed = aqs.shear_to_first_event(tiny_glass, "-xz", dataclasses.replace(
        protocol, max_fire_steps=1, newton_force=0.0), relaxation=relaxation)
    assert failed["status"] == "fire_failed" and "FIRE did not converge" in failed["message"]
    # the pipeline, on result files as run_task writes them (the three made under different
    # settings, labelled with one protocol so that one run reads them all)
    from softglass.files import atomic_write_pickle, file_sha256
    path = str(tmp_path / "glass_007.pkl")
    atomic_write_pickle(path, tiny_glass)
    for name in ("OUT_DIR", "DIRECTIONS", "MODEL", "N_BOOTSTRAP", "GLASSES", "N_WORKERS",
                 "SHOW_PROGRESS"):                  # main's overrides, restored after
        monkeypatch.setattr(vr, name, getattr(vr, name))
    vr.OUT_DIR = str(tmp_path / "out")
    for direction, res in (("+xz", event), ("+xy", elastic), ("-xz", failed)):
        atomic_write_pickle(vr.result_path("glass_007", direction), dict(
            res, direction=direction, glass="glass_007", path=path, protocol=vr.protocol(),
            glass_sha256=file_sha256(path)))
    args = [f"--GLASSES={path}", "--N_WORKERS=1", "--SHOW_PROGRESS=False", "--N_BOOTSTRAP=200",
            f"--OUT_DIR={tmp_path / 'out'}", f"--MODEL={small_model}"]
    summary = vr.main(args + ["--DIRECTIONS=+xz,+xy,-xz"])        # nothing left to shear
    assert summary["statuses"] == dict(yielded=1, no_yield=1, fire_failed=1)
    assert len(summary["not_yielded"]) == 2
    assert any(x.startswith("glass_007 +xy: no_yield (no event") for x in summary["not_yielded"])
    assert any(x.startswith("glass_007 -xz: fire_failed (FIRE") for x in summary["not_yielded"])
    assert summary["scores"]["model"]["n_events"] == 1 and len(summary["events"]) == 1
    # event.xyz carries the prediction (predict.py's path) beside the true softness
    lines = (tmp_path / "out" / "event.xyz").read_text().splitlines()
    names = re.findall(r":?([A-Za-z0-9_]+):[SR]:(\d+)", lines[1].split("Properties=")[1])
    start = np.cumsum([0] + [int(w) for _, w in names])
    table = np.array([row.split()[1:] for row in lines[2:]], float)
    col = {n: table[:, start[k] - 1] for k, (n, w) in enumerate(names) if n != "species"}
    assert "softness_pred" in col and "softness_true" in col
    np.testing.assert_allclose(col["softness_true"], tiny_glass["softness_score"], rtol=1e-8)
    indicators = vr.glass_indicators("glass_007", path, vr.scored_models(), None)
    np.testing.assert_allclose(col["softness_pred"], indicators["model"], rtol=1e-7, atol=1e-12)
    # a rerun whose directions all failed to yield leaves no older run's event or figure behind
    summary = vr.main(args + ["--DIRECTIONS=+xy,-xz"])
    assert summary["statuses"] == dict(yielded=0, no_yield=1, fire_failed=1)
    assert summary["scores"] == {} and summary["event_strain"]["median"] is None
    assert not (tmp_path / "out" / "event.xyz").exists()
    assert not (tmp_path / "out" / "hit_percentile_cdf.png").exists()


def test_vibrality_over_all_modes_is_the_harmonic_response(vr, ggd, tiny_glass):
    """experiments/how_many_modes_for_vibrality.py: vibrality over every non-trivial mode is the trace
    of each atom's 3x3 block of the Hessian's pseudo-inverse (its static response to a force,
    computed here without the eigenvectors), and over 100 modes it is the script's indicator."""
    vm = load_benchmark("how_many_modes_for_vibrality")
    vals, vecs = vm.full_spectrum(tiny_glass, ggd)
    v = vm.vibralities(vals, vecs, ["100", "all"], ggd)
    from softglass.files import system_of
    h, _ = ggd.hessian(np.asarray(tiny_glass["positions"], np.float64), system_of(tiny_glass))
    response = np.linalg.pinv(h.toarray(), rcond=1e-10, hermitian=True)
    n = len(tiny_glass["positions"])
    blocks = response.reshape(n, 3, n, 3)[np.arange(n), :, np.arange(n), :]
    np.testing.assert_allclose(v["vibrality_all"], np.trace(blocks, axis1=1, axis2=2), rtol=1e-7)
    np.testing.assert_allclose(v["vibrality_100"], vr.indicators_of(tiny_glass)["vibrality"],
                               rtol=1e-8)
    assert np.all(v["vibrality_all"] > v["vibrality_100"])


def test_scores_of_known_indicators(vr):
    rng = np.random.default_rng(1)
    x = rng.random(1000)
    hit = int(np.argmax(x))
    assert vr.percentile_rank(x, hit) == 1.0 and vr.in_top(x, hit, 0.05)
    assert vr.percentile_rank(-x, hit) == 0.0 and not vr.in_top(-x, hit, 0.05)
    positive = x > np.quantile(x, 0.99)
    assert vr.roc_auc(x, positive) == 1.0 and vr.roc_auc(-x, positive) == 0.0
    assert vr.roc_auc(np.zeros(1000), positive) == 0.5
    # the Mann-Whitney statistic, ties half, on a coarse indicator with many ties
    from scipy.stats import rankdata
    coarse = np.round(x + rng.normal(0, 0.3, 1000), 1)
    ranks = rankdata(coarse)
    n_pos = int(positive.sum())
    u = (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (1000 - n_pos))
    assert vr.roc_auc(coarse, positive) == pytest.approx(u, abs=1e-12)
    ranks = [vr.percentile_rank(rng.random(200), 7) for _ in range(400)]
    assert np.mean(ranks) == pytest.approx(0.5, abs=0.03)
    # by-glass bootstrap: one glass with all the high values widens the interval
    mean, lo, hi = vr.bootstrap_by_glass([1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], 2000,
                                         np.random.default_rng(0))
    assert mean == 0.5 and lo == 0.0 and hi == 1.0
    # paired by event: an indicator that ranks every hit 0.1 higher differs by exactly 0.1,
    # though the two indicators' own intervals overlap (both see the same hard glasses)
    events, indicators = [], {}
    for g in range(4):
        x = rng.random(300)
        y = x.copy()
        indicators[f"g{g}"] = {"model": x, "S10": y}
        for hit in rng.choice(300, size=3, replace=False):
            y[hit] = np.quantile(x, min(1.0, vr.percentile_rank(x, hit) + 0.1))
            events.append((f"g{g}", dict(hit=int(hit), top_movers=np.array([int(hit)]))))
    table = vr.score_events(events, indicators, n_boot=500)
    diff = vr.paired_differences(table, n_boot=500)
    assert set(diff) == {"model - S10"}
    mean, lo, hi = diff["model - S10"]
    assert mean == pytest.approx(-0.1, abs=0.02) and hi - lo < 0.03
    lo_s10, hi_s10 = table["S10"]["hit_percentile"][1:]
    assert hi_s10 - lo_s10 > 3 * (hi - lo)


def test_indicators_and_pipeline_resume(vr, tiny_glass, event, tmp_path, monkeypatch, capsys):
    """Indicators are per atom and sum rules hold; one (glass, direction) result is written
    (a stale one, of another glass file, replaced), scored, plotted and exported."""
    ind = vr.indicators_of(tiny_glass, seed=0)
    assert set(ind) == {"S10", "S30", "S100", "vibrality", "-lambda_1", "random"}
    np.testing.assert_allclose(ind["S10"], tiny_glass["softness_score"], atol=1e-8)
    assert ind["S30"].sum() == pytest.approx(30) and np.all(ind["vibrality"] > 0)
    from softglass.files import atomic_write_pickle, file_sha256
    path = str(tmp_path / "glass_007.pkl")
    atomic_write_pickle(path, tiny_glass)
    monkeypatch.setattr(vr, "OUT_DIR", str(tmp_path / "out"))
    monkeypatch.setattr(vr, "DIRECTIONS", "+xz")
    monkeypatch.setattr(vr, "MODEL", str(tmp_path / "no_model.pth"))
    monkeypatch.setattr(vr, "N_BOOTSTRAP", 200)
    for name in ("GLASSES", "N_WORKERS", "SHOW_PROGRESS"):      # main's overrides, restored after
        monkeypatch.setattr(vr, name, getattr(vr, name))
    # a result left by another glass file of the same name (a data set regenerated in place) is
    # sheared again, and the new result names its glass
    stale = dict(event, glass="glass_007", path=path, protocol=vr.protocol(),
                 glass_sha256="0" * 64, event_strain=0.123)
    result = vr.result_path("glass_007", "+xz")
    atomic_write_pickle(result, stale)
    summary = vr.main([f"--GLASSES={path}", "--N_WORKERS=1", "--SHOW_PROGRESS=False",
                       f"--OUT_DIR={tmp_path / 'out'}", "--DIRECTIONS=+xz",
                       f"--MODEL={tmp_path / 'no_model.pth'}", "--N_BOOTSTRAP=200"])
    assert "sheared again" in capsys.readouterr().out
    assert summary["statuses"]["yielded"] == 1 and summary["model"] is None
    res = vr.existing_result(result, file_sha256(path))
    assert res is not None and res["event_strain"] == event["event_strain"]    # deterministic
    assert vr.existing_result(result, "1" * 64) is None
    legacy = {k: v for k, v in res.items() if k != "glass_sha256"}   # before results named it
    atomic_write_pickle(result, legacy)
    assert vr.existing_result(result, file_sha256(path)) is None
    assert vr.existing_result(result) is not None       # readers of a finished run's folder
    atomic_write_pickle(result, res)
    assert summary["scores"]["random"]["n_events"] == 1
    for name in ("rearrangements.json", "hit_percentile_cdf.png", "event.xyz"):
        assert (tmp_path / "out" / name).exists()
    lines = (tmp_path / "out" / "event.xyz").read_text().splitlines()
    assert int(lines[0]) == 200 and "nonaffine:R:3" in lines[1] and "softness_true" in lines[1]
    # the critical mode beside them, its trigger named, and the run says how often it is the hit
    assert "critical_mode:R:1" in lines[1] and "trigger atom" in lines[1]
    assert summary["hit_and_trigger"]["n_events"] == 1
    # every event's scores are kept, so a run can be pooled after its folders are gone
    (record,) = summary["events"]
    assert record["glass"] == "glass_007" and record["direction"] == "+xz"
    assert record["n_atoms"] == 200     # sets of other sizes can be told apart (shear_by_size)
    assert set(record["scores"]) == set(summary["scores"])
    assert record["scores"]["S10"][0] == summary["scores"]["S10"]["hit_percentile"][0]


def _pool(monkeypatch, *args):
    """pooled_yield.py run as `python pooled_yield.py *args`, in this process (a
    fresh copy of the script: its constants at their defaults; a subprocess would import jax
    again, ~10 s each)."""
    monkeypatch.setattr(sys, "argv", ["pooled_yield.py", *args])
    load_benchmark("pooled_yield").main()


def test_pooling_reads_the_kept_records_and_refuses_another_protocol(vr, tmp_path, monkeypatch,
                                                                      capsys):
    """pooled_yield.py pools two runs' rearrangements.json: events add up, glasses stay
    apart by set, each set's scores are its own; a run of another shear protocol, or whose
    records were scored with another top share, is refused."""
    rng = np.random.default_rng(1)
    runs = []
    for k, shift in enumerate((0.0, 0.3)):
        records = []
        for g in range(3):
            x = rng.random(200)
            ind = {"S10": x, "random": rng.random(200)}
            for hit in rng.choice(200, size=2, replace=False):
                res = dict(hit=int(hit), top_movers=np.array([int(hit)]), direction="+xy",
                           event_strain=0.01 + shift)
                records.append(vr.event_record(f"glass_{g:03d}", res, ind))
        path = tmp_path / f"run{k}.json"
        path.write_text(json.dumps(dict(protocol=vr.protocol(), events=records,
                                        constants=dict(TOP_HIT_FRACTION=vr.TOP_HIT_FRACTION))))
        runs.append((f"set{k}", path, vr.score_records(records, n_boot=200)))
    out = tmp_path / "pooled.json"
    arg = ",".join(f"{name}={path}" for name, path, _ in runs)
    _pool(monkeypatch, f"--RUNS={arg}", f"--OUT_FILE={out}")
    assert "pooled: indicator, hit percentile" in capsys.readouterr().out
    pooled = json.loads(out.read_text())
    assert pooled["pooled"]["S10"]["n_events"] == 12 and pooled["pooled"]["S10"]["n_glasses"] == 6
    for name, _, table in runs:
        assert pooled["sets"][name]["S10"]["hit_percentile"][0] == pytest.approx(
            table["S10"]["hit_percentile"][0])
    bad = json.loads(runs[0][1].read_text())
    bad["protocol"]["STRAIN_STEP"] = 2e-3
    runs[0][1].write_text(json.dumps(bad))
    with pytest.raises(SystemExit, match="shear protocol") as refused:
        _pool(monkeypatch, f"--RUNS={arg}")
    assert "run0.json" in str(refused.value)
    bad = json.loads(runs[1][1].read_text())           # records scored with another top share
    bad["constants"]["TOP_HIT_FRACTION"] = 0.1
    runs[1][1].write_text(json.dumps(bad))
    with pytest.raises(SystemExit, match="TOP_HIT_FRACTION") as refused:
        _pool(monkeypatch, f"--RUNS=set1={runs[1][1]}")
    assert "run1.json" in str(refused.value)


def test_shear_by_size_pairs_glass_draws_and_reads_the_atom_count(vr):
    """does_size_change_the_yield.py's comparison: the difference paired by glass is each glass's mean at one
    size minus the same glass's at the other (a shift of 0.1 everywhere comes back as 0.1 with
    a zero-width interval), and the reference's atom count is read from its records: recorded,
    or from the random indicator's percentiles (k / (N - 1)) for records written before."""
    sbs = load_benchmark("does_size_change_the_yield")
    rng = np.random.default_rng(2)
    reference, new = [], []
    for g in range(4):
        for d in range(3):
            p = float(rng.uniform(0.5, 0.85))
            k = int(rng.integers(0, 999))
            reference.append(dict(glass=f"glass_data_{g:03d}", scores=dict(
                S10=[p, False, 0.5], random=[k / 999, False, 0.5])))
            new.append(dict(glass=f"glass_data_{g:03d}", n_atoms=500, scores=dict(
                S10=[p + 0.1, True, 0.5])))
    rows = sbs.compare_sizes(new, reference, n_boot=200, seed=0)
    assert set(rows) == {"S10"}                 # scored at both sizes only
    diff = rows["S10"]["hit_percentile"]["paired_difference"]
    assert diff == pytest.approx([0.1, 0.1, 0.1])
    assert rows["S10"]["hit_in_top"]["paired_difference"][0] == pytest.approx(1.0)
    assert rows["S10"]["hit_percentile"]["n_glasses_paired"] == 4
    assert sbs.atoms_of_records(reference) == 1000 and sbs.atoms_of_records(new) == 500
    assert sbs.glass_indices(reference) == [0, 1, 2, 3]


def test_trees_indicator_from_the_split_and_no_stale_cache(vr, tiny_glass, event, small_model,
                                                          tmp_path, monkeypatch):
    """With train.py's split in results.json, train.py's gradient-boosted trees are fitted on
    the training glasses and scored as an indicator of the test glasses. The cached indicators
    name what made them: a changed training glass remakes the trees' predictions, never scores
    stale ones."""
    import pickle
    from softglass.files import atomic_write_pickle, file_sha256, safe_load_pickle
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    for k in range(2):
        atomic_write_pickle(str(data / f"glass_data_00{k}.pkl"), tiny_glass)
    with open(data / "metadata.pkl", "wb") as fh:
        pickle.dump(dict(n_atoms=200, records=[dict(file=f"glass_data_00{k}.pkl")
                                               for k in range(2)]), fh)
    results = tmp_path / "results.json"
    results.write_text(json.dumps(dict(split=dict(train=[0], val=[], test=[1]))))
    for name in ("GLASSES", "N_WORKERS", "SHOW_PROGRESS", "OUT_DIR", "DIRECTIONS", "MODEL",
                 "N_BOOTSTRAP", "RESULTS_FILE", "DATA_DIR"):
        monkeypatch.setattr(vr, name, getattr(vr, name))
    monkeypatch.setattr(vr, "OUT_DIR", str(out))
    res = dict(event, glass="glass_data_001", path=str(data / "glass_data_001.pkl"),
               protocol=vr.protocol(), glass_sha256=file_sha256(str(data / "glass_data_001.pkl")))
    atomic_write_pickle(vr.result_path("glass_data_001", "+xz"), res)
    args = [f"--RESULTS_FILE={results}", f"--DATA_DIR={data}", "--N_WORKERS=1",
            "--SHOW_PROGRESS=False", f"--OUT_DIR={out}", "--DIRECTIONS=+xz",
            f"--MODEL={tmp_path / 'no_model.pth'}", "--N_BOOTSTRAP=200"]
    summary = vr.main(args)
    assert summary["scores"]["gbt"]["n_events"] == 1
    cache = out / "indicators" / "glass_data_001.pkl"
    first = safe_load_pickle(str(cache))
    # trained on the same glass's label: the trees reproduce much of it
    assert np.corrcoef(first["values"]["gbt"], tiny_glass["softness_score"])[0, 1] > 0.5
    shuffled = np.random.default_rng(1).permutation(tiny_glass["softness_score"])
    atomic_write_pickle(str(data / "glass_data_000.pkl"), dict(tiny_glass,
                                                               softness_score=shuffled))
    vr.main(args)
    second = safe_load_pickle(str(cache))
    assert second["made_from"]["gbt"] != first["made_from"]["gbt"]
    assert not np.allclose(second["values"]["gbt"], first["values"]["gbt"])
    # a second model (MORE_MODELS name=path) is scored beside MODEL, as predict.py sees it
    import torch
    import train
    from softglass.prediction import predicted_softness
    model_path = small_model
    monkeypatch.setattr(vr, "MORE_MODELS", "")
    summary = vr.main(args + [f"--MORE_MODELS=s100={model_path}"])
    assert summary["scores"]["model_s100"]["n_events"] == 1
    assert summary["more_models"]["s100"]["file"] == str(model_path)
    third = safe_load_pickle(str(cache))
    loaded = train.load_trained_model(str(model_path))
    expected = predicted_softness(
        *loaded, dict(species=np.asarray(tiny_glass["species"]), box=tiny_glass["box_size"]),
        dict(positions=tiny_glass["positions"], eigenvalues=tiny_glass["eigenvalues"]),
        torch.device("cpu"))
    np.testing.assert_allclose(third["values"]["model_s100"], expected, rtol=1e-6)
    with pytest.raises(SystemExit, match="MORE_MODELS"):
        vr.main(args + ["--MORE_MODELS=s100"])
    np.testing.assert_array_equal(second["values"]["S10"], first["values"]["S10"])


def test_rescore_scores_a_later_model_on_kept_events_and_refuses_another_glass(
        vr, tiny_glass, event, small_model, tmp_path, monkeypatch, capsys):
    """RESCORE scores a model trained after the shear on a run's kept events, nothing sheared:
    the Hessian indicators come back as kept, and a model scored under a new name gets exactly
    the scores the run itself gave the same model file (percentile, top share, AUC from the kept
    movers; for a record kept before its movers, no AUC, except for indicators that are the
    kept ones). Refused: another glass file under the kept name, another model file under a kept
    model's name, the kept run as OUT_DIR, a RESCORE file that is not there."""
    from softglass.files import atomic_write_pickle, file_sha256
    glass = str(tmp_path / "glass_007.pkl")
    atomic_write_pickle(glass, tiny_glass)
    for name in ("GLASSES", "N_WORKERS", "SHOW_PROGRESS", "OUT_DIR", "DIRECTIONS", "MODEL",
                 "N_BOOTSTRAP", "RESCORE", "MORE_MODELS"):
        monkeypatch.setattr(vr, name, getattr(vr, name))
    kept_dir, out = tmp_path / "kept", tmp_path / "rescored"
    monkeypatch.setattr(vr, "OUT_DIR", str(kept_dir))
    atomic_write_pickle(vr.result_path("glass_007", "+xz"),
                        dict(event, glass="glass_007", path=glass, protocol=vr.protocol(),
                             glass_sha256=file_sha256(glass)))
    args = [f"--GLASSES={glass}", "--N_WORKERS=1", "--SHOW_PROGRESS=False", "--DIRECTIONS=+xz",
            f"--MODEL={small_model}", "--N_BOOTSTRAP=200"]
    kept = vr.main(args + [f"--OUT_DIR={kept_dir}"])      # the run scores the model as "model"
    kept_file = kept_dir / "rearrangements.json"
    (record,) = kept["events"]
    assert record["top_movers"] == [int(i) for i in event["top_movers"]]
    again = args + [f"--RESCORE={kept_file}", f"--OUT_DIR={out}",
                    f"--MORE_MODELS=s100={small_model}"]
    summary = vr.main(again)
    assert "nothing sheared" in capsys.readouterr().out
    assert not (out / "events").exists() and summary["rescored_from"] == str(kept_file)
    assert summary["statuses"] == kept["statuses"]
    for name in ("S10", "S100", "vibrality", "-lambda_1", "random", "model"):
        assert summary["scores"][name] == kept["scores"][name]
    # the same model file under a new name: the scores the run gave it, AUC included
    assert summary["events"][0]["scores"]["model_s100"] == record["scores"]["model"]
    assert summary["paired_differences"]["model_s100 - model"][0] == 0.0
    assert "model_s100 - S10" in summary["paired_differences"]
    # a record kept before its movers were: no AUC for a new indicator; S10's and the same
    # model's are kept
    legacy = json.loads(kept_file.read_text())
    for r in legacy["events"]:
        del r["top_movers"], r["glass_sha256"]
    kept_file.write_text(json.dumps(legacy))
    summary = vr.main(args + [f"--RESCORE={kept_file}", f"--OUT_DIR={out}"])
    assert summary["scores"]["model"]["top_movers_auc"] == kept["scores"]["model"][
        "top_movers_auc"]
    legacy_as_s100 = json.loads(kept_file.read_text())
    legacy_as_s100["model_sha256"] = "0" * 64          # "model" was another file there
    kept_file.write_text(json.dumps(legacy_as_s100))
    with pytest.raises(SystemExit, match="another model file than MODEL"):
        vr.main(again)
    summary = vr.main(again[:4] + [f"--MODEL={tmp_path / 'none.pth'}"] + again[5:])  # kept row
    assert summary["scores"]["model"] == kept["scores"]["model"]
    assert summary["scores"]["model_s100"]["top_movers_auc"] is None
    assert summary["scores"]["S10"]["top_movers_auc"] == kept["scores"]["S10"]["top_movers_auc"]
    assert "not kept" in capsys.readouterr().out
    # the kept hit ranked otherwise by S10: another glass under the kept name
    legacy["events"][0]["scores"]["S10"][0] -= 0.1
    kept_file.write_text(json.dumps(legacy))
    with pytest.raises(SystemExit, match="not the one that was sheared"):
        vr.main(again)
    kept_file.write_text(json.dumps(kept))          # records naming their glass file's sha256
    atomic_write_pickle(glass, dict(tiny_glass, energy=tiny_glass["energy"] + 1.0))
    with pytest.raises(SystemExit, match="another sha256"):
        vr.main(again)
    with pytest.raises(SystemExit, match="would overwrite"):
        vr.main(args + [f"--RESCORE={kept_file}", f"--OUT_DIR={kept_dir}"])
    with pytest.raises(SystemExit, match="no_such.json"):
        vr.main(args + [f"--RESCORE={tmp_path / 'no_such.json'}", f"--OUT_DIR={kept_dir}"])


def test_newton_polish_finds_the_plain_fire_event_and_true_minima(relaxation, aqs, protocol, ggd, tiny_glass,
                                                                  event):
    """The fast path (linear-response start, Newton with the Hessian's multifrontal Cholesky
    factor, FIRE on the Dense list's forces only as a fallback) relaxes to the minimum plain FIRE
    finds, checks it is one (the pinned Hessian is positive definite: 3 zero modes, the next
    eigenvalue > 0), and finds the same first event (strain within STRAIN_RESOLUTION, same hit
    atom) as FIRE alone to FORCE_TOL on -jax.grad of the energy (the path before both)."""
    assert protocol.newton_factor == "multifrontal" and protocol.force_kernel == "dense_r2"
    assert protocol.newton_force > 0 and event["checked_minima"] > 0
    glass = aqs.ShearedGlass(tiny_glass, "+xz", protocol, relaxation=relaxation)
    m0 = glass.relax(glass.frac0, 0.0)
    strain = 0.5 * event["strain_before"]
    fast = glass.relax(glass.predicted_start(m0, strain), strain, m0["factor"])
    assert fast["minimum_checked"] and fast["max_force"] < protocol.force_tol
    i, j, rij, r, _, d1, d2 = glass._pair_terms(fast["frac"], strain)
    h, _ = hs.hessian_from_pairs(len(fast["frac"]), i, j,
                                  hs.pair_hessian_blocks(rij, r, d1, d2))
    vals = np.linalg.eigvalsh(h.toarray())
    assert np.all(np.abs(vals[:3]) < 1e-6) and vals[3] > 1e-4
    # the factor test itself: a shift between the 4th and 5th eigenvalues is not definite
    shifted = h.toarray()[3:, 3:] - 0.5 * (vals[3] + vals[4]) * np.eye(len(vals) - 3)
    assert aqs.positive_definite_factor(shifted, leaf_atoms=relaxation.nd_leaf_atoms) is None
    pinned_positions = np.mod(fast["frac"][1:], 1.0) * glass.box
    assert aqs.positive_definite_factor(scipy.sparse.csr_matrix(shifted), pinned_positions,
                                        glass.box, leaf_atoms=relaxation.nd_leaf_atoms) is None
    # the multifrontal factor solves as the dense one does, and is the one Newton made
    factor = aqs.positive_definite_factor(h[3:, 3:], pinned_positions, glass.box,
                                          leaf_atoms=relaxation.nd_leaf_atoms)
    assert isinstance(factor, aqs.MultifrontalCholesky)
    assert isinstance(fast["factor"], aqs.MultifrontalCholesky)
    b = np.random.default_rng(0).standard_normal(len(vals) - 3)
    np.testing.assert_allclose(factor.solve(b), np.linalg.solve(h.toarray()[3:, 3:], b),
                               rtol=1e-8, atol=1e-10 * np.max(np.abs(b)) / vals[3])
    fire_only = dataclasses.replace(protocol, newton_force=0.0)
    plain_glass = aqs.ShearedGlass(tiny_glass, "+xz", fire_only, relaxation=relaxation)
    plain = plain_glass.relax(plain_glass.predicted_start(m0, strain), strain)
    assert not plain["minimum_checked"] and plain_glass.newton_steps == 0
    ds = fast["frac"] - plain["frac"]
    ds -= np.round(ds)
    assert np.max(np.linalg.norm(ds @ glass.cell(strain).T, axis=1)) < 1e-6
    assert fast["energy"] == pytest.approx(plain["energy"], abs=1e-9)
    reference = aqs.shear_to_first_event(tiny_glass, "+xz", dataclasses.replace(
        protocol, newton_force=0.0, force_kernel="grad"), relaxation=relaxation)
    assert reference["status"] == "yielded" and reference["newton_solves"] == 0
    assert abs(reference["event_strain"] - event["event_strain"]) <= protocol.strain_resolution
    assert reference["hit"] == event["hit"]


def test_the_engine_reads_every_setting_from_the_script_when_asked(vr, aqs, tmp_path,
                                                                 monkeypatch):
    """Each field of softglass.shear.ShearProtocol is the script's constant of that name, read when the
    protocol is made (after --NAME=value, and in a spawned worker after _worker_init), never
    copied at import; a bad NEWTON_FACTOR or FORCE_KERNEL stops main before any shear."""
    changed = {}
    for f in dataclasses.fields(aqs.ShearProtocol):
        value = getattr(vr, f.name.upper())
        new = {"force_kernel": "grad", "newton_factor": "dense"}.get(f.name)
        changed[f.name] = type(value)(value * 2) if new is None else new
        assert changed[f.name] != value
        monkeypatch.setattr(vr, f.name.upper(), changed[f.name])
    assert dataclasses.asdict(vr.shear_protocol()) == changed
    monkeypatch.setattr(vr, "GLASSES", vr.GLASSES)
    for name, bad in (("NEWTON_FACTOR", "cholmod"), ("FORCE_KERNEL", "fast")):
        monkeypatch.setattr(vr, name, getattr(vr, name))      # main's override, undone after
        with pytest.raises(SystemExit, match=f"{name}={bad!r}"):
            vr.main([f"--GLASSES={tmp_path / 'never_read.pkl'}", f"--{name}={bad}"])
        setattr(vr, name, changed[name.lower()])


def test_workers_get_their_share_of_the_cores(vr, monkeypatch):
    """Spawned shear workers start with cores / workers BLAS threads (single-threaded XLA at one),
    and this process's environment is as it was once the pool is done."""
    monkeypatch.setattr(vr.os, "cpu_count", lambda: 4)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "8")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    with vr.threads_per_worker(2) as threads:
        assert threads == 2 and vr.os.environ["OPENBLAS_NUM_THREADS"] == "2"
        assert vr.os.environ["OMP_NUM_THREADS"] == "2" and "XLA_FLAGS" not in vr.os.environ
    with vr.threads_per_worker(4) as threads:
        assert threads == 1 and vr.os.environ["MKL_NUM_THREADS"] == "1"
        assert "xla_cpu_multi_thread_eigen=false" in vr.os.environ["XLA_FLAGS"]
    assert vr.os.environ["OPENBLAS_NUM_THREADS"] == "8" and "XLA_FLAGS" not in vr.os.environ
