"""train.py: invariances, parameter count, learning, split, resume, checkpoint, results."""
import json
import os

import numpy as np
import pytest
import torch

import softglass.cli
from softglass.files import atomic_write_pickle
from conftest import SMALL, write_metadata


def test_parameter_count_near_850k(train):
    n = train.count_parameters(train.build_model())
    assert abs(n - 850_000) / 850_000 < 0.05


def test_rotated_glass_with_its_cell_gives_the_same_graph_and_prediction(train, tiny_glass, graph):
    import augment_data
    q = augment_data.random_rotation(np.random.default_rng(7))
    rotated = train.glass_graph(augment_data.rotate_glass(tiny_glass, q, 0), train.CUTOFF)
    key = lambda g: np.lexsort(g.edge_index.numpy())  # noqa: E731
    a, b = key(graph), key(rotated)
    assert torch.equal(graph.edge_index[:, a], rotated.edge_index[:, b])
    assert torch.allclose(graph.edge_dist[a], rotated.edge_dist[b], atol=1e-5)
    torch.manual_seed(0)
    model = train.build_model(**SMALL).eval()
    with torch.no_grad():
        p0 = model(graph.x, graph.edge_index, graph.edge_dist)
        p1 = model(rotated.x, rotated.edge_index, rotated.edge_dist)
    assert torch.allclose(p0, p1, atol=1e-5)


def test_permuting_atoms_permutes_predictions(train, graph):
    torch.manual_seed(0)
    model = train.build_model(**SMALL).eval()
    perm = torch.randperm(graph.num_nodes)
    inv = torch.argsort(perm)
    with torch.no_grad():
        p0 = model(graph.x, graph.edge_index, graph.edge_dist)
        p1 = model(graph.x[perm], inv[graph.edge_index], graph.edge_dist)
    assert torch.allclose(p1, p0[perm], atol=1e-5)


def test_edges_are_the_pairs_within_the_cutoff(train, tiny_glass, graph):
    pos, box = tiny_glass["positions"], tiny_glass["box_size"]
    d = pos[None] - pos[:, None]
    d -= box * np.round(d / box)
    dist = np.linalg.norm(d, axis=-1)
    np.fill_diagonal(dist, np.inf)
    assert graph.edge_index.shape[1] == int((dist < train.CUTOFF).sum())
    i, j = graph.edge_index.numpy()
    assert np.allclose(graph.edge_dist.numpy(), dist[i, j], atol=1e-5)


def test_a_few_steps_lower_the_loss(train, graph):
    torch.manual_seed(0)
    model = train.build_model(**SMALL)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    y = (graph.y - graph.y.mean()) / graph.y.std()
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.l1_loss(model(graph.x, graph.edge_index, graph.edge_dist), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def test_checkpointed_blocks_give_the_same_gradients(train, graph):
    grads = []
    for use in (False, True):
        torch.manual_seed(0)
        model = train.build_model(**SMALL, use_checkpoint=use,
                                               fast_kernels=False).train()
        model(graph.x, graph.edge_index, graph.edge_dist).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_split_is_by_base_and_disjoint(train):
    tr, va, te = train.split_bases(list(range(30)), seed=1, n_test=5, n_val=4)
    assert len(te) == 5 and len(va) == 4 and len(tr) == 21
    assert not (set(tr) & set(va) or set(tr) & set(te) or set(va) & set(te))
    assert sorted(tr + va + te) == list(range(30))
    assert train.split_bases(list(range(30)), seed=1, n_test=5, n_val=4)[2] == te
    with pytest.raises(SystemExit, match="cannot give N_TEST"):
        train.split_bases(list(range(5)), n_test=3, n_val=2)


def augmented_set(d, snaps):
    """The base glasses `snaps` listed in metadata.pkl, 2 rotations each written by
    augment_data.py, with its manifest, as the pipeline does."""
    import augment_data
    names = [f"glass_data_{b:03d}.pkl" for b in range(len(snaps))]
    for name, snap in zip(names, snaps):
        atomic_write_pickle(d / name, snap)
    write_metadata(d, names, 200)
    saved = softglass.cli.constants_of(vars(augment_data))
    try:
        augment_data.main([f"--DATA_DIR={d}", "--N_ROTATIONS=2"])
    finally:
        vars(augment_data).update(saved)
    return d


@pytest.fixture()
def dataset(tmp_path, tiny_glass):
    """5 base glasses: copies of the tiny one, labels perturbed per base (tiny * (1 + 0.1 b))."""
    return augmented_set(tmp_path / "data", [
        dict(tiny_glass, softness_score=tiny_glass["softness_score"] * (1 + 0.1 * b))
        for b in range(5)])


def _args(data, out, epochs):
    return [f"--DATA_DIR={data}", f"--OUT_DIR={out}", "--N_ROTATIONS=2",
            "--N_TEST=1", "--N_VAL=1", f"--EPOCHS={epochs}", "--HIDDEN_DIM=32", "--NUM_LAYERS=2",
            "--NUM_RBF=8", "--BATCH_SIZE=2", "--ACCUM_STEPS=2"]


def _run(train, args):
    saved = softglass.cli.constants_of(vars(train))
    try:
        train.main(args)
    finally:
        vars(train).update(saved)


def test_training_end_to_end_and_resume(train, dataset, tmp_path, tiny_glass):
    out = tmp_path / "out"
    _run(train, _args(dataset, out, 2))
    ck = torch.load(out / "checkpoint.pth", weights_only=True)
    assert ck["epoch"] == 1 and len(ck["history"]) == 2
    results = json.loads((out / "results.json").read_text())
    for key in ("test_R", "test_R2", "test_MAE", "per_glass_R", "n_params", "epochs", "seconds",
                "device", "seed"):
        assert key in results
    assert set(results["per_glass_R"]) == {"mean", "std"}
    assert set(results["baselines"]) == {"lambda1_R", "least_squares_R", "gbt_neighbours_R"}
    assert -1 <= results["test_R"] <= 1 and results["epochs"] == 2
    assert set(results["split"]["test"]).isdisjoint(results["split"]["train"])
    best = torch.load(out / "hybrid_physics_best.pth", weights_only=True)
    assert {"state_dict", "y_mean", "y_std", "x_mean", "x_std"} <= set(best)
    # the model file describes itself: its data, label and test R (models/ ships such files)
    assert best["test"]["R"] == results["test_R"] and best["test"]["baselines"] == \
        results["baselines"] and best["label"] == "softness" and best["data_fingerprint"]
    for png in ("training_curves.png", "test_predicted_vs_true.png", "test_glass_slice.png"):
        assert (out / png).stat().st_size > 1000, png
    xyz = (out / "test_glass.xyz").read_text().splitlines()
    assert int(xyz[0]) == 200 and len(xyz) == 202 and 'Lattice="' in xyz[1]
    assert "softness_true:R:1:softness_pred:R:1" in xyz[1]
    rows = [line.split() for line in xyz[2:]]
    assert {r[0] for r in rows} <= {"Ni", "P"} and all(len(r) == 6 for r in rows)   # A, B
    true = np.array([float(r[4]) for r in rows])
    test_base = results["split"]["test"][0]          # the fixture's labels: tiny * (1 + 0.1 b)
    assert np.allclose(true, tiny_glass["softness_score"] * (1 + 0.1 * test_base), atol=1e-5)
    assert isinstance(results["script_seconds"], dict) and results["peak_memory_MB"] > 0
    # resume: the same command with more epochs continues at epoch 2 from the saved state
    _run(train, _args(dataset, out, 3))
    ck2 = torch.load(out / "checkpoint.pth", weights_only=True)
    assert ck2["epoch"] == 2 and [h["epoch"] for h in ck2["history"]] == [0, 1, 2]
    assert ck2["history"][:2] == ck["history"]
    assert ck2["optimizer"]["state"][0]["step"] > ck["optimizer"]["state"][0]["step"]


def test_resumed_epoch_equals_uninterrupted_epoch(train, dataset, tmp_path):
    _run(train, _args(dataset, tmp_path / "a", 2))
    _run(train, _args(dataset, tmp_path / "b", 1))
    _run(train, _args(dataset, tmp_path / "b", 2))
    a = torch.load(tmp_path / "a" / "checkpoint.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pth", weights_only=True)
    assert a["history"][1]["train_loss"] == pytest.approx(b["history"][1]["train_loss"], rel=1e-6)
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6)


def test_rotation_shortcut_trains_to_the_same_weights(train, dataset, tmp_path):
    """One graph per base standing for its copies gives the same batches, steps and weights as
    the rotated copies themselves (the model and its inputs are rotation invariant)."""
    _run(train, _args(dataset, tmp_path / "full", 2))
    _run(train, _args(dataset, tmp_path / "short", 2) + ["--ROTATION_SHORTCUT=true"])
    a = torch.load(tmp_path / "full" / "checkpoint.pth", weights_only=True)
    b = torch.load(tmp_path / "short" / "checkpoint.pth", weights_only=True)
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=2e-5), k
    for ha, hb in zip(a["history"], b["history"]):
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-4)
        assert ha["val_R"] == pytest.approx(hb["val_R"], abs=1e-4)
    ra = json.loads((tmp_path / "full" / "results.json").read_text())
    rb = json.loads((tmp_path / "short" / "results.json").read_text())
    assert ra["test_R"] == pytest.approx(rb["test_R"], abs=1e-4)


def test_time_limit_stops_between_epochs(train, dataset, tmp_path):
    """A budget smaller than one epoch still trains one epoch, then stops and records why and
    what it cut (the model then depends on the machine's speed); a run the clock did not cut
    records no time limit."""
    _run(train, _args(dataset, tmp_path / "o", 50) + ["--TIME_LIMIT_MIN=0.001"])
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["epochs"] == 1 and results["stopped_by"] == "time limit"
    assert results["time_limit"] == dict(TIME_LIMIT_MIN=0.001, EPOCHS=50, epochs_run=1)
    _run(train, _args(dataset, tmp_path / "p", 1))
    results = json.loads((tmp_path / "p" / "results.json").read_text())
    assert results["stopped_by"] == "EPOCHS" and "time_limit" not in results


def test_missing_data_is_a_clear_error(train, tmp_path):
    with pytest.raises(SystemExit, match="no augmented data set.*manifest.json: file not found"):
        _run(train, _args(tmp_path / "nothing", tmp_path / "o", 1))


def test_resume_refuses_other_data_and_other_settings(train, dataset, tmp_path, tiny_glass):
    """A checkpoint records its data's fingerprint and its settings: regenerated glasses or a
    changed constant stop the run with how to start fresh, instead of resuming silently."""
    import augment_data
    out = tmp_path / "o"
    _run(train, _args(dataset, out, 1))
    with pytest.raises(SystemExit, match=r"other settings \(LR 0.0005 -> 0.001\).*start fresh"):
        _run(train, _args(dataset, out, 2) + ["--LR=0.001"])

    def remake_glass_0(snap):
        atomic_write_pickle(dataset / "glass_data_000.pkl", snap)
        saved = softglass.cli.constants_of(vars(augment_data))
        try:
            augment_data.main([f"--DATA_DIR={dataset}", "--N_ROTATIONS=2"])
        finally:
            vars(augment_data).update(saved)

    # remade identically (only its recorded timings differ): the same data, so it resumes
    remake_glass_0(dict(tiny_glass, parameters=dict(tiny_glass["parameters"], seconds={})))
    _run(train, _args(dataset, out, 2))
    remake_glass_0(dict(tiny_glass, softness_score=tiny_glass["softness_score"] * 1.5))
    with pytest.raises(SystemExit, match="other data \\(base glasses 0 differ.*start fresh"):
        _run(train, _args(dataset, out, 3))
    _run(train, _args(dataset, tmp_path / "fresh", 1))                # a new OUT_DIR trains


def test_cross_device_resume_of_rng_and_scaler(train):
    """The CPU generator's state round-trips through a weights_only checkpoint; a scaler state
    saved without AMP (CPU run) does not break a resume with AMP (CUDA run), and vice versa."""
    import io
    torch.manual_seed(3)
    np.random.seed(3)
    states = train.rng_states()
    buf = io.BytesIO()
    torch.save(states, buf)
    expected = (torch.rand(3), np.random.rand(3))
    train.set_rng_states(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3),
                                                                      expected[1])
    cpu_run = torch.amp.GradScaler("cpu", enabled=False).state_dict()
    with_amp = torch.amp.GradScaler("cpu", enabled=True)          # stands for the CUDA scaler
    train.restore_scaler(with_amp, cpu_run)                       # GradScaler alone would raise
    assert with_amp.get_scale() == 65536.0
    amp_state = torch.amp.GradScaler("cpu", enabled=True, init_scale=8.0).state_dict()
    train.restore_scaler(with_amp, amp_state)
    assert with_amp.get_scale() == 8.0
    train.restore_scaler(torch.amp.GradScaler("cpu", enabled=False), amp_state)   # CUDA -> CPU


def test_predict_gives_train_evaluation_numbers(train, dataset, tmp_path):
    """predict.py on a test glass's file, with the model file train.py wrote, reproduces the
    per-atom predictions and R of train.py's own test evaluation."""
    import predict
    from softglass.structure_input import potential_from_header, read_extxyz
    out = tmp_path / "o"
    _run(train, _args(dataset, out, 2))
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["n_atoms"] == 200 and results["config"]["HIDDEN_DIM"] == 32
    assert results["commit"] != "" and results["data"]["n_soft_modes"] == 10
    (base, record), = results["test_R_by_glass"].items()
    assert record["R"] == pytest.approx(results["test_R"], abs=0.05)
    saved = softglass.cli.constants_of(vars(predict))
    try:
        summary = predict.main([f"--INPUT={dataset / 'augmented' / record['file']}",
                                f"--MODEL={out / 'hybrid_physics_best.pth'}",
                                f"--OUTPUT_DIR={tmp_path}", "--MINIMIZE=False"])
    finally:
        vars(predict).update(saved)
    assert summary["R"] == pytest.approx(record["R"], abs=1e-5)
    ours, _, _ = read_extxyz(str(tmp_path / f"{record['file'][:-4]}_softness.xyz"))
    theirs, _, header = read_extxyz(str(out / "test_glass.xyz"))   # train.py's own
    assert np.allclose(ours["softness_pred"], theirs["softness_pred"], atol=2e-6)
    assert np.allclose(ours["pos"], theirs["pos"], atol=1e-8)       # written in the same cell
    assert potential_from_header(header, "test_glass.xyz")["r_cutoff"] == 2.5


def test_baselines_on_a_known_signal(train, graph):
    """Labels built from lambda_1 and a neighbour average: least squares recovers the linear part,
    the trees the rest, and lambda_1 alone correlates negatively by construction."""
    data = {}
    rng = np.random.default_rng(0)
    for b in range(6):
        g = graph.clone()
        g.x = g.x.clone()
        g.x[:, 2:] = g.x[:, 2:] * torch.tensor(rng.uniform(0.8, 1.2, 3), dtype=torch.float32)
        nb = torch.tensor(train.neighbour_features(g)[:, 7])
        g.y = -g.x[:, 2] / g.x[:, 2].std() + 0.5 * (nb - nb.mean()) / nb.std()
        data[b] = [g]
    scores = train.baseline_scores(data, [0, 1, 2, 3], [4, 5])
    assert scores["lambda1_R"] < -0.3
    assert scores["gbt_neighbours_R"] > scores["least_squares_R"] > 0.3
    assert scores["gbt_neighbours_R"] > 0.8


def test_seeds_script_summarises_every_seed(train, dataset, tmp_path):
    """experiments/does_the_seed_matter.py runs train.py per seed and reports mean and spread.
    Seed 0's run is made here first, in this process (train.main with the script's arguments:
    the same run, without a second interpreter importing torch, ~20 s): the script keeps a seed
    whose results.json exists and runs train.py (a subprocess, as it always does) for seed 1
    alone; the summary covers both."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs = tmp_path / "runs"
    args = _args(dataset, tmp_path / "unused", 1)
    args = [a for a in args if not a.startswith("--OUT_DIR")]
    _run(train, ["--SEED=0", f"--OUT_DIR={runs / 'seed_0'}", *args])
    kept = (runs / "seed_0" / "results.json").read_bytes()
    proc = subprocess.run([sys.executable, os.path.join(root, "experiments", "does_the_seed_matter.py"),
                           "--SEEDS=0,1", f"--RUNS_DIR={runs}",
                           f"--OUT_JSON={tmp_path / 'none.json'}", "--", *args],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (runs / "seed_0" / "results.json").read_bytes() == kept        # not run again
    summary = json.loads((runs / "seeds.json").read_text())
    assert summary["seeds"] == [0, 1]
    r = [json.loads((runs / f"seed_{s}" / "results.json").read_text())["test_R"] for s in (0, 1)]
    assert summary["mean_std"]["test_R"]["mean"] == pytest.approx(np.mean(r))
    assert summary["mean_std"]["test_R"]["std"] == pytest.approx(np.std(r, ddof=1))


def test_missing_fused_kernels_warn_at_start_not_after_an_epoch(train, tmp_path, monkeypatch):
    """Without a C compiler with OpenMP (macOS) training falls back to the ~30x slower reference
    path: the warning comes before the data are even read."""
    monkeypatch.setattr(train.message_kernels, "available", lambda: False)
    monkeypatch.setattr(train.message_kernels, "build_error", lambda: "no OpenMP (test)")
    with pytest.warns(UserWarning, match=r"fused CPU kernels unavailable \(no OpenMP"), \
            pytest.raises(SystemExit, match="no augmented data set"):
        _run(train, _args(tmp_path / "nothing", tmp_path / "o", 1) + ["--DEVICE=cpu"])


def test_label_over_more_modes_from_each_base_hessian(train, dataset, tmp_path, tiny_glass):
    """LABEL_MODES = n trains on S (or, LABEL = "vibrality", on the vibrality) over the n softest
    modes, computed from each base glass's Hessian (checked here against a dense
    diagonalisation), copied to its rotations, cached; a base whose stored label is not its own
    S10 is refused."""
    import generate_glass_data as ggd
    d = augmented_set(tmp_path / "true_labels", [dict(tiny_glass)] * 3)
    p = tiny_glass["parameters"]
    system = dict(box=tiny_glass["box_size"], species=tiny_glass["species"], sigma=p["sigma"],
                  epsilon=p["epsilon"], r_onset=p["r_onset"], r_cutoff=p["r_cutoff"])
    vals, vecs = np.linalg.eigh(ggd.hessian(tiny_glass["positions"], system)[0].toarray())
    s30 = (vecs[:, 3:33].reshape(200, 3, 30) ** 2).sum(axis=(1, 2))
    assert np.abs(s30 - tiny_glass["softness_score"]).max() > 0.1     # another label indeed
    saved = softglass.cli.constants_of(vars(train))
    try:
        vars(train).update(DATA_DIR=str(d), N_ROTATIONS=2, LABEL_MODES=30)
        data, info = train.load_dataset()
        assert info["n_soft_modes"] == 30 and sorted(data) == [0, 1, 2]
        for graphs in data.values():
            assert len(graphs) == 2
            for g in graphs:
                assert np.abs(g.y.numpy() - s30).max() < 1e-6
        assert len(list((d / "labels").glob("*_S30.pkl"))) == 3
        again, info_again = train.load_dataset()               # from the cache, the same
        assert info_again["data_fingerprint"] == info["data_fingerprint"]
        # vibrality over the same modes: sum_k |v_k(i)|^2 / lambda_k, its own cache and data
        v30 = ((vecs[:, 3:33] ** 2).reshape(200, 3, 30).sum(axis=1) / vals[3:33]).sum(axis=1)
        vars(train).update(LABEL="vibrality")
        vib, info_vib = train.load_dataset()
        assert info_vib["label"] == "vibrality" and len(list((d / "labels").glob("*_V30.pkl"))) == 3
        assert np.abs(vib[1][0].y.numpy() - v30).max() < 1e-5 * v30.max()
        assert info_vib["data_fingerprint"] != info["data_fingerprint"]
        vars(train).update(LABEL_MODES=0)
        with pytest.raises(SystemExit, match="LABEL=vibrality needs LABEL_MODES"):
            train.load_dataset()
        vars(train).update(LABEL="softness")
        vars(train).update(LABEL_MODES=0)
        assert train.load_dataset()[1]["data_fingerprint"] != info["data_fingerprint"]
        vars(train).update(DATA_DIR=str(dataset), LABEL_MODES=30)   # labels tiny * (1 + 0.1 b)
        with pytest.raises(SystemExit, match="is not S over its 10 softest modes"):
            train.load_dataset()
    finally:
        vars(train).update(saved)


@pytest.mark.parametrize("setting, allowed", [
    ("N_TEST=0", "N_TEST=0: must be an integer >= 1"),
    ("N_VAL=0", "N_VAL=0: must be an integer >= 1"),
    ("BATCH_SIZE=0", "BATCH_SIZE=0: must be an integer >= 1"),
    ("ACCUM_STEPS=-1", "ACCUM_STEPS=-1: must be an integer >= 1"),
    ("EPOCHS=0", "EPOCHS=0: must be an integer >= 1"),
    ("TIME_LIMIT_MIN=-5", r"TIME_LIMIT_MIN=-5.0: must be >= 0 \(0: no time limit\)")])
def test_unusable_settings_are_refused_before_the_data_are_read(train, tmp_path, setting,
                                                                allowed):
    """No data set at DATA_DIR: the error is the setting's (checked first), not the data's, and
    nothing is written."""
    out = tmp_path / "o"
    with pytest.raises(SystemExit, match=allowed):
        _run(train, _args(tmp_path / "nothing", out, 1) + [f"--{setting}"])
    assert not out.exists()


def test_an_unwritable_output_folder_is_refused_at_the_start(train, tmp_path):
    """An OUT_DIR that cannot be created (a file is in the way) or written (read-only) stops the
    run before the data are read, naming OUT_DIR."""
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit, match=r"OUT_DIR=.*a_file/out: cannot write there"):
        _run(train, _args(tmp_path / "nothing", tmp_path / "a_file" / "out", 1))
    if os.geteuid() == 0:                      # root writes into read-only folders anyway
        return
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(SystemExit, match=r"OUT_DIR=.*locked: cannot write there"):
        _run(train, _args(tmp_path / "nothing", locked, 1))


def test_two_trainings_give_the_same_model_bit_for_bit(train, dataset, tmp_path):
    """The same data, SEED and code give the same weights, optimizer state and test R, bit for
    bit. Three threads on purpose (more than this 2-core machine has, so the OpenMP schedule
    varies with the load): the fused kernels once added per-thread partial sums of the filter
    table's gradient in whichever order the threads finished, and two runs differed."""
    runs, threads = [], torch.get_num_threads()
    try:
        for name in ("a", "b"):
            _run(train, _args(dataset, tmp_path / name, 2) + ["--NUM_THREADS=3"])
            runs.append((torch.load(tmp_path / name / "checkpoint.pth", weights_only=True),
                         json.loads((tmp_path / name / "results.json").read_text())))
    finally:
        torch.set_num_threads(threads)            # (train.main set it for this process)
    (a, ra), (b, rb) = runs
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for p, q in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(p["exp_avg"], q["exp_avg"]) and torch.equal(p["exp_avg_sq"],
                                                                         q["exp_avg_sq"])
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert ra["test_R"] == rb["test_R"] and ra["stopped_by"] == "EPOCHS"
    assert ra["threads"] == 3
