"""predict.py's reading and writing of other programs' structure files through ASE, and the bad
inputs it refuses before any physics (no jax, no model: each test reads files only)."""
import json
import os

import numpy as np
import pytest

import softglass.files
from softglass.cli import constants_of
from softglass.files import GlassFileError
from softglass.prediction import write_softness_xyz
from softglass.structure_input import cubic_frame, read_extxyz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KA = dict(sigma=np.array([[1.0, 0.8], [0.8, 0.88]]), epsilon=np.array([[1.0, 1.5], [1.5, 0.5]]),
          r_onset=2.0, r_cutoff=2.5)


@pytest.fixture
def predict():
    """predict with its constants restored after each test (read_glass reads them)."""
    import predict as module
    saved = constants_of(vars(module))
    yield module
    vars(module).update(saved)


@pytest.fixture
def lattice():
    """216 atoms on a jittered simple cubic lattice in a 6 sigma box, 80% A (species 0)."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(6)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5
    species = np.zeros(216, np.int64)
    species[rng.choice(216, 43, replace=False)] = 1
    return grid + rng.normal(0, 0.05, grid.shape), species, 6.0 * np.eye(3)


def write_ab_xyz(path, positions, species, cell, names=("A", "B"), count=None, header_extra=""):
    """An extended XYZ as this project wrote them before ASE (species as names[species])."""
    lines = [str(len(positions) if count is None else count),
             f'Lattice="{" ".join(f"{v:.12f}" for v in np.ravel(cell))}" '
             f'Properties=species:S:1:pos:R:3 pbc="T T T"{header_extra}']
    lines += [f"{names[s]} {p[0]:.12f} {p[1]:.12f} {p[2]:.12f}" for s, p in zip(species, positions)]
    path.write_text("\n".join(lines) + "\n")


def write_lammps_dump(path, positions, types, box, frames=1):
    text = ""
    for frame in range(frames):
        text += (f"ITEM: TIMESTEP\n{frame}\nITEM: NUMBER OF ATOMS\n{len(positions)}\n"
                 f"ITEM: BOX BOUNDS pp pp pp\n0 {box}\n0 {box}\n0 {box}\n"
                 "ITEM: ATOMS id type x y z\n")
        text += "".join(f"{i + 1} {t} {p[0]:.17g} {p[1]:.17g} {p[2]:.17g}\n"
                        for i, (t, p) in enumerate(zip(types, positions + 0.01 * frame)))
    path.write_text(text)


def legacy_read(path):
    """The hand-written reader predict.py used before ASE, reduced to what it returned for the
    committed test file: the reference the ASE reading must reproduce bit for bit."""
    import shlex
    lines = open(path).read().splitlines()
    n = int(lines[0].split()[0])
    header = {p.split("=", 1)[0].lower(): p.split("=", 1)[1] for p in shlex.split(lines[1])
              if "=" in p}
    cell = np.array(header["lattice"].split(), float).reshape(3, 3)
    rows = [line.split() for line in lines[2:2 + n]]
    return (np.array([r[1:4] for r in rows], float), np.array([r[0] for r in rows]), cell,
            np.array([r[4] for r in rows], float))


def test_the_committed_test_file_reads_as_before(predict):
    """test_glass.xyz (A/B names, a rotated cell, a potential in its header) gives the very
    positions, species, cell, labels and potential the hand-written reader gave: the prediction,
    a function of these only, is unchanged (compared bit for bit against the old predict.py on a
    model when ASE came in)."""
    path = os.path.join(ROOT, "runs", "pipeline_dense_r2", "test_glass.xyz")
    pos, names, cell, true = legacy_read(path)
    glass = predict.read_glass(path)
    assert np.array_equal(glass["cell"], cell) and np.array_equal(glass["true"], true)
    assert np.array_equal(glass["species"], np.where(names == "A", 0, 1))
    old_positions, _ = cubic_frame(pos, cell, path)
    assert np.array_equal(glass["positions"], old_positions)
    assert glass["potential"]["r_cutoff"] == 2.409401347
    assert glass["mapping"]["source"] == "the file's own A/B labels"
    assert glass["elements"] == ("Ni", "P")


def test_what_predict_writes_opens_in_ase_and_reads_back_the_same(predict, lattice, tmp_path):
    """ase.io.read opens the output without options (element symbols Ni/P, the mapping in the
    header), and predict reads it back to the same glass, potential and columns."""
    import ase.io
    pos, species, cell = lattice
    glass = dict(box=6.0, cell=cell, species=species, potential=KA, elements=("Ni", "P"))
    described = dict(positions=pos, eigenvalues=np.tile([1.0, 2.0, 3.0], (216, 1)))
    pred, true = np.linspace(-1, 1, 216), np.linspace(0, 1, 216)
    out = tmp_path / "g_softness.xyz"
    write_softness_xyz(str(out), described, glass, pred, true, "a comment; R = 0.5")
    atoms = ase.io.read(str(out))
    assert atoms.get_chemical_symbols() == ["Ni" if s == 0 else "P" for s in species]
    assert atoms.info["species_A"] == "Ni" and atoms.info["species_B"] == "P"
    assert np.allclose(atoms.arrays["softness_pred"], pred, atol=1e-8)
    back = predict.read_glass(str(out))
    assert np.array_equal(back["species"], species) and back["mapping"]["source"] == \
        "the file's header"
    assert np.allclose(back["positions"], pos, atol=1e-7) and np.allclose(back["true"], true)
    assert np.array_equal(back["potential"]["sigma"], KA["sigma"])
    columns, _, header = read_extxyz(str(out))
    assert columns["lambda_local"].shape == (216, 3) and header["r_cutoff"] == 2.5


def test_species_map_consistently_whatever_the_file_calls_them(predict, lattice, tmp_path):
    """LAMMPS types 1 and 2 (once all B), swapped types (once ignored for the physics but used
    for the labels), element symbols in POSCAR and CIF, and 0/1 names: the same A and B atoms."""
    import ase
    import ase.io
    pos, species, cell = lattice
    dump = tmp_path / "dump.glass"
    write_lammps_dump(dump, pos, species + 1, 6.0)
    predict.SPECIES_A, predict.SPECIES_B = "1", "2"
    glass = predict.read_glass(str(dump), {"SPECIES_A", "SPECIES_B"})
    assert np.array_equal(glass["species"], species) and glass["format"] == "lammps-dump-text"
    assert glass["elements"] == ("Ni", "P")             # a type number is no element
    predict.SPECIES_A, predict.SPECIES_B = "2", "1"     # swapped: every atom changes side
    assert np.array_equal(predict.read_glass(str(dump), {"SPECIES_A"})["species"], 1 - species)
    atoms = ase.Atoms(np.where(species == 0, "Ni", "P"), positions=pos, cell=cell, pbc=True)
    for name, fmt in (("POSCAR", "vasp"), ("g.cif", "cif"), ("data.glass", "lammps-data")):
        ase.io.write(str(tmp_path / name), atoms, format=fmt,
                     **(dict(masses=True, specorder=["Ni", "P"]) if fmt == "lammps-data" else {}))
    predict.SPECIES_A, predict.SPECIES_B = "Ni", "P"
    for name in ("POSCAR", "g.cif", "data.glass"):
        glass = predict.read_glass(str(tmp_path / name))
        order = np.argsort(np.round(glass["positions"] @ [1e6, 1e3, 1], 3))   # CIF may reorder
        want = np.argsort(np.round(np.mod(pos, 6.0) @ [1e6, 1e3, 1], 3))
        assert np.array_equal(glass["species"][order], species[want]), name
    write_ab_xyz(tmp_path / "zero_one.xyz", pos, species, cell, names=("0", "1"))
    assert np.array_equal(predict.read_glass(str(tmp_path / "zero_one.xyz"))["species"], species)
    predict.SPECIES_A, predict.SPECIES_B = "1", "0"         # named: as named
    assert np.array_equal(predict.read_glass(str(tmp_path / "zero_one.xyz"),
                                             {"SPECIES_A"})["species"], 1 - species)


@pytest.mark.parametrize("case, args, message", [
    ("lammps types unnamed", [], r"unknown species type 1 \(read as H\), type 2 \(read as He\)"),
    ("species named by neither", ["--SPECIES_A=1", "--SPECIES_B=0"],
     r"unknown species type 2 \(read as He\) \(43 atoms\): it maps to neither"),
    ("same species twice", ["--SPECIES_A=1", "--SPECIES_B=1"], "both '1'"),
    ("one species", ["--SPECIES_A=1", "--SPECIES_B=2"], "all 216 atoms are A .*binary"),
    ("several frames", ["--SPECIES_A=1", "--SPECIES_B=2"], "holds 3 frames; name the one to use "
                                                           r"with --FRAME=<index>"),
    ("frame out of range", ["--SPECIES_A=1", "--SPECIES_B=2", "--FRAME=3"],
     r"FRAME=3 but the file holds 3 frame\(s\)"),
    ("extra atom lines", [], r"line 219 \('B .*'\) is not the atom count of a next frame: the "
                             "frame at line 1 has more atom lines than the 216"),
    ("missing atom lines", [], "line 1 declares 217 atoms but 216 atom lines follow"),
    ("nan coordinate", [], r"1 atom\(s\) with a non-finite position: atom 7 \(line 10\): "
                           r"\[nan"),
    ("overlap", [], r"overlapping atoms, the closest atom 5 \(line 8\) and atom 6 \(line 9\) at "
                    "0.01 sigma"),
    ("unknown format", [], "cannot tell the file's format .* --INPUT_FORMAT"),
])
def test_bad_inputs_are_refused_before_any_work(predict, lattice, tmp_path, case, args,
                                                message):
    """Each once exited 0 with a wrong answer, or failed far from its cause: now an error naming
    the file and the problem, before jax or the model is loaded (run from predict.main)."""
    pos, species, cell = lattice
    path = tmp_path / "glass.xyz"
    if case in ("lammps types unnamed", "species named by neither", "same species twice"):
        path = tmp_path / "glass.lammpstrj"
        write_lammps_dump(path, pos, species + 1, 6.0)
    elif case == "one species":
        path = tmp_path / "glass.lammpstrj"
        write_lammps_dump(path, pos, np.ones_like(species), 6.0)
    elif case in ("several frames", "frame out of range"):
        path = tmp_path / "glass.lammpstrj"
        write_lammps_dump(path, pos, species + 1, 6.0, frames=3)
    elif case == "extra atom lines":
        write_ab_xyz(path, np.vstack([pos, [[0.1, 0.1, 0.1]]]), np.append(species, 1), cell,
                     count=216)
    elif case == "missing atom lines":
        write_ab_xyz(path, pos, species, cell, count=217)
    elif case == "nan coordinate":
        pos = pos.copy()
        pos[7, 0] = np.nan
        write_ab_xyz(path, pos, species, cell)
    elif case == "overlap":
        pos = pos.copy()
        pos[6] = pos[5] + [0.01, 0, 0]
        write_ab_xyz(path, pos, species, cell)
    elif case == "unknown format":
        path = tmp_path / "glass.weird"
        path.write_text("nothing ASE knows\n")
    with pytest.raises(SystemExit, match=message) as err:
        predict.main([f"--INPUT={path}", "--MODEL=never_loaded.pth", *args])
    assert str(err.value).startswith(f"error: {path}")
    assert not any("softness" in f for f in os.listdir(tmp_path))      # nothing written


def test_a_file_without_potential_or_mapping_is_said_so(predict, lattice, tmp_path, capsys):
    """No potential in the header: the Kob-Andersen constants are used and a warning says so
    (recorded for the .json); a majority of B (a swapped mapping?) is warned about too."""
    pos, species, cell = lattice
    write_ab_xyz(tmp_path / "g.xyz", pos, 1 - species, cell, names=("Ni", "P"))
    glass = predict.read_glass(str(tmp_path / "g.xyz"))
    assert glass["potential_in_file"] is False
    assert np.array_equal(glass["potential"]["sigma"], KA["sigma"])
    assert "g.xyz: only 43 of 216 atoms are A ('Ni')" in predict._WARNINGS[-1]
    assert "are SPECIES_A and SPECIES_B swapped?" in capsys.readouterr().out


def test_outputs_are_checked_before_any_work(predict, lattice, tmp_path, capsys):
    """An unwritable OUTPUT_DIR is refused at once; outputs of this input are replaced, said so;
    outputs of another input with the same stem (X.pkl beside X.xyz) are refused, not replaced."""
    pos, species, cell = lattice
    write_ab_xyz(tmp_path / "X.xyz", pos, species, cell)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit, match="a_file/out: cannot write the outputs there"):
        predict.main([f"--INPUT={tmp_path / 'X.xyz'}", f"--OUTPUT_DIR={tmp_path / 'a_file/out'}",
                      "--MODEL=never_loaded.pth"])
    predict.OUTPUT_DIR = ""                 # main left its override behind: beside the input
    paths = predict.output_paths(str(tmp_path / "X.xyz"))
    assert paths["json"] == str(tmp_path / "X_softness.json")
    del predict._NOTES[:]
    predict.check_outputs(paths, str(tmp_path / "X.xyz"))          # nothing there yet: silent
    assert predict._NOTES == []
    (tmp_path / "X_softness.json").write_text(json.dumps(dict(input_path=str(tmp_path / "X.xyz"))))
    predict.check_outputs(paths, str(tmp_path / "X.xyz"))
    assert "note: replacing " + str(tmp_path / "X_softness.json") in capsys.readouterr().out
    with pytest.raises(GlassFileError, match="X_softness.json: holds the prediction for "
                                             ".*X.xyz, not .*X.pkl.*--OUTPUT_DIR"):
        predict.check_outputs(predict.output_paths(str(tmp_path / "X.pkl")),
                              str(tmp_path / "X.pkl"))


def test_the_model_is_found_and_named(predict, tmp_path, monkeypatch):
    """MODEL given wins; else a freshly trained model; else the shipped one; else an error that
    says how to get one."""
    monkeypatch.chdir(tmp_path)
    predict.TRAINED_MODEL, predict.SHIPPED_MODEL = "trained.pth", str(tmp_path / "shipped.pth")
    with pytest.raises(GlassFileError, match="no model file: neither trained.pth .*make "
                                             "pipeline.*--MODEL=path"):
        predict.resolve_model()
    (tmp_path / "shipped.pth").write_text("")
    assert predict.resolve_model() == (str(tmp_path / "shipped.pth"),
                                       "the shipped model; no freshly trained one")
    (tmp_path / "trained.pth").write_text("")
    assert predict.resolve_model() == ("trained.pth",
                                       "the freshly trained model, train.py's output")
    predict.MODEL = "mine.pth"
    assert predict.resolve_model() == ("mine.pth", "given with --MODEL")


def test_structure_format_names_lammps_files_as_lammps_users_do(tmp_path):
    for name, fmt in (("a.xyz", "extxyz"), ("a.lammpstrj", "lammps-dump-text"),
                      ("dump.melt", "lammps-dump-text"), ("data.glass", "lammps-data"),
                      ("a.data", "lammps-data")):
        assert softglass.files.structure_format(name) == fmt
    with pytest.raises(GlassFileError, match="INPUT_FORMAT='nonsense' is not a format"):
        softglass.files.structure_format("a.xyz", "nonsense")


def test_an_empty_header_text_does_not_swallow_the_next_key(tmp_path):
    """ASE writes an empty text as `key=` and reads the next key into it: write_extxyz leaves
    such a value out, so the keys after it (here the potential) read back as written."""
    import ase.io
    path = str(tmp_path / "empty.xyz")
    info = dict(comment="", sigma=np.array([1.0, 0.8, 0.8, 0.88]), species_A="Ni")
    softglass.files.write_extxyz(path, ["Ni", "P"], np.array([[0.0, 0, 0], [1, 1, 1]]),
                                 5.0 * np.eye(3), {}, info)
    atoms = ase.io.read(path)
    assert "comment" not in atoms.info and atoms.info["species_A"] == "Ni"
    np.testing.assert_array_equal(atoms.info["sigma"], [1.0, 0.8, 0.8, 0.88])
    assert atoms.pbc.all()
