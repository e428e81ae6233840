"""predict.py: any glass in, softness out. Reading (our .pkl, extended XYZ with a cubic or rotated
cubic cell), FIRE back to the inherent structure, the true label recomputed as the generator does,
clear errors for bad input, and the same numbers as train.py's own test evaluation."""
import json
import os

import numpy as np
import pytest
import torch

from softglass.cli import constants_of
from softglass.files import atomic_write_pickle
from softglass.structure_input import read_extxyz


@pytest.fixture(scope="module")
def predict():
    import predict as module
    return module


def run_predict(predict, args):
    """predict.main with overrides that do not outlive the call (module constants restored)."""
    saved = constants_of(vars(predict))
    try:
        return predict.main(args)
    finally:
        vars(predict).update(saved)


def write_xyz(path, positions, species, cell, extra=""):
    names = np.where(np.asarray(species) == 0, "A", "B")
    lines = [str(len(names)), f'Lattice="{" ".join(f"{v:.12f}" for v in cell.ravel())}" '
             f'Properties=species:S:1:pos:R:3 pbc="T T T" {extra}']
    lines += [f"{s} {p[0]:.12f} {p[1]:.12f} {p[2]:.12f}" for s, p in zip(names, positions)]
    path.write_text("\n".join(lines) + "\n")


def read_column(predict, path, name):
    columns, _, _ = read_extxyz(str(path))
    return columns[name][:, 0] if columns[name].shape[1] == 1 else columns[name]


def test_a_perturbed_rotated_xyz_glass_relaxes_back_and_gives_the_same_prediction(
        predict, tiny_glass, small_model, tmp_path):
    """The tiny inherent structure, shaken by 0.02 sigma and rotated with its cell, written as
    extended XYZ: FIRE returns it to the same minimum, the recomputed 10-mode label equals the
    generator's, and the prediction equals that of the stored snapshot."""
    import augment_data
    box = tiny_glass["box_size"]
    rng = np.random.default_rng(1)
    q = augment_data.random_rotation(rng)
    shaken = tiny_glass["positions"] + rng.normal(0, 0.02, tiny_glass["positions"].shape)
    xyz = tmp_path / "mine.xyz"
    write_xyz(xyz, shaken @ q.T, tiny_glass["species"], box * q.T)
    out = run_predict(predict, [f"--INPUT={xyz}", f"--MODEL={small_model}",
                                f"--OUTPUT_DIR={tmp_path}", "--TRUE_LABELS=True"])
    assert out["max_force"] < 1e-10 and out["fire_steps"] > 0
    relaxed = read_column(predict, tmp_path / "mine_softness.xyz", "pos") @ q   # input's frame
    d = relaxed - tiny_glass["positions"]
    d -= box * np.round(d / box)
    assert np.abs(d - d.mean(0)).max() < 1e-6       # the same minimum, up to a rigid translation
    assert np.allclose(read_column(predict, tmp_path / "mine_softness.xyz", "softness_true"),
                       tiny_glass["softness_score"], atol=1e-8)
    assert np.allclose(read_column(predict, tmp_path / "mine_softness.xyz", "lambda_local"),
                       tiny_glass["eigenvalues"], rtol=1e-6, atol=1e-6)

    pkl = tmp_path / "stored.pkl"
    atomic_write_pickle(pkl, tiny_glass)
    stored = run_predict(predict, [f"--INPUT={pkl}", f"--MODEL={small_model}",
                                   f"--OUTPUT_DIR={tmp_path}", "--MINIMIZE=False"])
    assert stored["fire_steps"] == 0 and stored["R"] is not None
    assert np.allclose(read_column(predict, tmp_path / "stored_softness.xyz", "softness_pred"),
                       read_column(predict, tmp_path / "mine_softness.xyz", "softness_pred"),
                       atol=1e-5)
    assert stored["R"] == pytest.approx(out["R"], abs=1e-4)
    assert os.path.getsize(tmp_path / "mine_softness.png") > 10_000


@pytest.mark.parametrize("mutate, message", [
    (lambda p, s, c: (p, s, c * np.array([1.0, 1.1, 1.0])[:, None]), "only cubic"),
    (lambda p, s, c: (p, np.where(s == 0, 7, s), c), "unknown species"),
    (lambda p, s, c: (p[:100] * (100 / 200) ** (1 / 3), s[:100], c * (100 / 200) ** (1 / 3)),
     "not wider than twice the cutoff"),
])
def test_bad_xyz_glasses_are_refused_naming_the_file(predict, tiny_glass, small_model, tmp_path,
                                                     mutate, message):
    pos, species, cell = mutate(tiny_glass["positions"], tiny_glass["species"],
                                tiny_glass["box_size"] * np.eye(3))
    xyz = tmp_path / "bad.xyz"
    names = np.where(species == 0, "A", np.where(species == 1, "B", "Xx"))
    lines = [str(len(pos)), f'Lattice="{" ".join(map(str, cell.ravel()))}" '
             'Properties=species:S:1:pos:R:3']
    xyz.write_text("\n".join(lines + [f"{n} {a} {b} {c}" for n, (a, b, c) in zip(names, pos)]))
    with pytest.raises(SystemExit, match=message) as err:
        run_predict(predict, [f"--INPUT={xyz}", f"--MODEL={small_model}",
                              f"--OUTPUT_DIR={tmp_path}"])
    assert "bad.xyz" in str(err.value)
    assert not (tmp_path / "bad_softness.xyz").exists()


def test_missing_or_foreign_model_and_input_are_clear_errors(predict, tiny_glass, small_model,
                                                             tmp_path):
    pkl = tmp_path / "g.pkl"
    atomic_write_pickle(pkl, tiny_glass)
    with pytest.raises(SystemExit, match="nothing.pth: model file not found"):
        run_predict(predict, [f"--INPUT={pkl}", f"--MODEL={tmp_path / 'nothing.pth'}"])
    foreign = tmp_path / "foreign.pth"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(SystemExit, match="foreign.pth: not a model file"):
        run_predict(predict, [f"--INPUT={pkl}", f"--MODEL={foreign}"])
    card = torch.load(small_model, weights_only=True)     # weights of another architecture
    card["architecture"] = dict(card["architecture"], hidden=16)
    torch.save(card, tmp_path / "edited.pth")
    with pytest.raises(SystemExit, match="edited.pth: its weights do not match the architecture "
                                         "it records .RuntimeError"):
        run_predict(predict, [f"--INPUT={pkl}", f"--MODEL={tmp_path / 'edited.pth'}"])
    with pytest.raises(SystemExit, match="missing.xyz: file not found"):
        run_predict(predict, [f"--INPUT={tmp_path / 'missing.xyz'}"])
    (tmp_path / "nocell.xyz").write_text("1\nProperties=species:S:1:pos:R:3\nA 0 0 0\n")
    with pytest.raises(SystemExit, match="nocell.xyz: no periodic cell"):
        run_predict(predict, [f"--INPUT={tmp_path / 'nocell.xyz'}"])
    with pytest.raises(SystemExit, match="--INPUT"):
        run_predict(predict, [])


def test_labels_of_another_structure_are_not_scored(predict, tiny_glass, small_model, tmp_path,
                                                    capsys):
    """An XYZ with labels relaxed with the wrong potential ends far from the labelled structure:
    R is withheld, saying why. The potential recorded in the header (as train.py and predict.py
    write it) is used instead of the constants, and then R is reported; a potential given on the
    command line wins over the header."""
    from softglass import figures
    box = tiny_glass["box_size"]
    args = lambda name: [f"--INPUT={tmp_path / name}", f"--MODEL={small_model}"]  # noqa: E731
    figures.write_extxyz(str(tmp_path / "bare.xyz"), tiny_glass["positions"],
                         tiny_glass["species"], box * np.eye(3),
                         dict(softness_true=tiny_glass["softness_score"]))
    wrong = run_predict(predict, args("bare.xyz") + ["--SIGMA=((1.1,0.88),(0.88,0.968))"])
    assert wrong["R"] is None and "labels are of another structure" in wrong["label"]
    assert "no R: FIRE moved the median atom" in capsys.readouterr().out
    assert (tmp_path / "bare_softness.xyz").exists()                # beside the input
    figures.write_extxyz(str(tmp_path / "recorded.xyz"), tiny_glass["positions"],
                         tiny_glass["species"], box * np.eye(3),
                         dict(softness_true=tiny_glass["softness_score"]),
                         potential=tiny_glass["parameters"])
    right = run_predict(predict, args("recorded.xyz"))
    assert right["potential_from"] == "the file's header" and right["R"] is not None
    assert right["moved_max"] < 1e-6            # only the rounding of the file polished away
    asked = run_predict(predict, args("recorded.xyz") + ["--SIGMA=((1.1,0.88),(0.88,0.968))"])
    assert asked["potential_from"].startswith("the command line (SIGMA)") and asked["R"] is None


def test_a_glass_outside_the_training_densities_is_flagged(predict, tiny_glass, small_model,
                                                           tmp_path, capsys):
    """Positions in Angstrom instead of sigma (x 2.5): density 0.077, far outside the model's
    training range: said at start."""
    from softglass import figures
    figures.write_extxyz(str(tmp_path / "angstrom.xyz"), tiny_glass["positions"] * 2.5,
                         tiny_glass["species"], 2.5 * tiny_glass["box_size"] * np.eye(3), {})
    args = [f"--INPUT={tmp_path / 'angstrom.xyz'}", "--MODEL=", f"--TRAINED_MODEL={small_model}",
            "--MINIMIZE=False"]
    first = run_predict(predict, args)
    assert "warning: density 0.0768 sigma^-3 lies outside the 1.200-1.200" in \
        capsys.readouterr().out
    recorded = json.loads((tmp_path / "angstrom_softness.json").read_text())
    assert recorded == json.loads(json.dumps(first))
    assert any(w.startswith("density 0.0768 sigma^-3") for w in recorded["warnings"])
    assert any("records no potential" in w and "Kob-Andersen" in w for w in recorded["warnings"])
    assert recorded["model"] == small_model and recorded["model_source"].startswith("the freshly")
    assert recorded["notes"] == [] and recorded["species"]["written_as"] == ["Ni", "P"]
    again = run_predict(predict, args)                  # the same input again: replaced, said so
    assert again["notes"] and again["notes"][0].startswith("replacing ")
    assert "note: replacing" in capsys.readouterr().out


def test_a_lammps_dump_predicts_as_the_snapshot(predict, tiny_glass, small_model, tmp_path):
    """The tiny glass as a LAMMPS dump with types 2 (A) and 1 (B): the same prediction as its
    .pkl, and the output labels follow the mapping (A written Ni, B written P)."""
    import ase.io
    box = tiny_glass["box_size"]
    types = np.where(tiny_glass["species"] == 0, 2, 1)
    lines = ["ITEM: TIMESTEP", "0", "ITEM: NUMBER OF ATOMS", str(len(types)),
             "ITEM: BOX BOUNDS pp pp pp"] + [f"0 {box!r}"] * 3 + ["ITEM: ATOMS id type x y z"]
    lines += [f"{i + 1} {t} {x:.17g} {y:.17g} {z:.17g}"
              for i, (t, (x, y, z)) in enumerate(zip(types, tiny_glass["positions"]))]
    (tmp_path / "glass.lammpstrj").write_text("\n".join(lines) + "\n")
    common = [f"--MODEL={small_model}", f"--OUTPUT_DIR={tmp_path}", "--MINIMIZE=False"]
    dump = run_predict(predict, [f"--INPUT={tmp_path / 'glass.lammpstrj'}", "--SPECIES_A=2",
                                 "--SPECIES_B=1"] + common)
    atomic_write_pickle(tmp_path / "stored.pkl", tiny_glass)
    run_predict(predict, [f"--INPUT={tmp_path / 'stored.pkl'}"] + common)
    ours = ase.io.read(str(tmp_path / "glass_softness.xyz"))
    theirs = ase.io.read(str(tmp_path / "stored_softness.xyz"))
    assert ours.get_chemical_symbols() == theirs.get_chemical_symbols()
    assert (np.array(ours.get_chemical_symbols()) == "Ni").sum() == 160
    assert np.array_equal(ours.arrays["softness_pred"], theirs.arrays["softness_pred"])
    assert dump["species"]["A"] == "2" and dump["input_format"] == "lammps-dump-text"


def test_predict_relaxes_with_the_generators_settings(predict, monkeypatch):
    """predict.py imports no other script, yet its FIRE, eigensolver and overlap check are
    generate_glass_data.py's as that file sets them (an edit there reaches predict.py)."""
    import dataclasses

    import generate_glass_data as ggd
    from softglass.cli import script_constants
    from softglass.indicators import Spectrum
    for name, value in script_constants(ggd.__file__).items():
        monkeypatch.setattr(ggd, name, value)       # the file's values (conftest shortens some)
    physics = predict.glass_physics()
    assert physics.fire == ggd.fire_settings()
    assert physics.engine == dataclasses.replace(ggd.engine(),
                                                 show_progress=physics.engine.show_progress)
    assert physics.spectrum == Spectrum(ggd.N_ZERO_MODES, ggd.ZERO_MODE_TOL,
                                        ggd.DENSE_EIGH_MAX_ATOMS, ggd.EIGSH_SHIFT,
                                        ggd.ND_LEAF_ATOMS)
    assert physics.min_pair_distance == ggd.MIN_PAIR_DISTANCE
