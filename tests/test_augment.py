"""augment_data.py: rotations with the cell, invariance of the copied labels, resume, bad input,
the data set taken from metadata.pkl (atom count, strays), and the manifest for train.py."""
import hashlib
import json
import os

import numpy as np
import pytest

from softglass import forces
from softglass import pairs
from softglass import hessian as hs

import softglass.cli
from conftest import write_metadata
from softglass.files import GlassFileError, atomic_write_pickle

BASES = ["glass_data_000.pkl", "glass_data_001.pkl"]


@pytest.fixture()
def aug(tmp_path, tiny_glass):
    """Two 200-atom base glasses listed in metadata.pkl, 3 rotations each; no --N_ATOMS: the atom
    count comes from the metadata."""
    import augment_data
    saved = softglass.cli.constants_of(vars(augment_data))
    for name in BASES:
        atomic_write_pickle(tmp_path / name, tiny_glass)
    write_metadata(tmp_path, BASES, 200)
    atomic_write_pickle(tmp_path / "glass_data_1k.pkl", tiny_glass)    # not a base: ignored
    augment_data.main([f"--DATA_DIR={tmp_path}", "--N_ROTATIONS=3"])
    yield augment_data, tmp_path
    vars(augment_data).update(saved)


def test_files_schema_and_proper_rotations(aug, tiny_glass):
    module, d = aug
    files = sorted(f for f in os.listdir(d / "augmented") if f != "manifest.json")
    assert files == [f"aug_{i:04d}.pkl" for i in range(6)]
    rotations = []
    for i, name in enumerate(files):
        snap = module.load_augmented(str(d / "augmented" / name), n_atoms=200)
        assert snap["base_index"] == i // 3
        q = snap["rotation"]
        assert np.linalg.det(q) == pytest.approx(1.0) and np.allclose(q @ q.T, np.eye(3))
        assert np.allclose(snap["cell"], tiny_glass["box_size"] * q.T)
        assert np.allclose(snap["positions"], tiny_glass["positions"] @ q.T)
        assert np.array_equal(snap["eigenvalues"], tiny_glass["eigenvalues"])
        rotations.append(q)
    assert not np.allclose(rotations[0], rotations[1])       # different draws per copy


def test_periodic_distances_and_labels_are_invariant(aug, ggd, tiny_glass):
    """Under the rotated cell every periodic pair vector is the rotated original, so the local
    eigenvalues and the softness recomputed on the rotated glass equal the copied ones."""
    module, d = aug
    snap = module.load_augmented(str(d / "augmented" / "aug_0004.pkl"))
    p = tiny_glass["parameters"]
    system = ggd.make_system(p["n_atoms"], p["density"], p["species_ratio"], p["sigma"],
                             p["epsilon"], p["seed"])
    i, j, rij, r, _, d1, d2 = forces.pairs_with_parameters(tiny_glass["positions"], system)
    rot_rij = pairs.fractional_minimum_image(snap["positions"][j] - snap["positions"][i],
                                                  snap["cell"])
    assert np.allclose(rot_rij, rij @ snap["rotation"].T, atol=1e-10)
    assert np.allclose(np.linalg.norm(rot_rij, axis=1), r, atol=1e-10)
    # the seed's way (rotated positions in the unrotated cube) changes distances: the reason for the cell
    cube = snap["positions"][j] - snap["positions"][i]
    cube -= tiny_glass["box_size"] * np.round(cube / tiny_glass["box_size"])
    assert not np.allclose(np.linalg.norm(cube, axis=1), r, atol=1e-3)
    h, local = hs.hessian_from_pairs(200, i, j, hs.pair_hessian_blocks(rot_rij, r, d1, d2))
    assert np.allclose(ggd.local_hessian_eigenvalues(local), snap["eigenvalues"], atol=1e-9)
    _, vecs = ggd.lowest_modes(h, 13)
    assert np.allclose(ggd.softness_from_modes(vecs), snap["softness_score"], atol=1e-8)


def test_rerun_keeps_valid_files_and_repairs_the_rest(aug, capsys):
    module, d = aug
    keep = d / "augmented" / "aug_0000.pkl"
    stamp = keep.stat().st_mtime_ns
    (d / "augmented" / "aug_0002.pkl").unlink()
    bad = d / "augmented" / "aug_0005.pkl"
    bad.write_bytes(bad.read_bytes()[:500])
    (d / "augmented" / ".aug_0003.pkl.x.tmp").write_bytes(b"partial")
    module.main([f"--DATA_DIR={d}", "--N_ROTATIONS=3"])
    out = capsys.readouterr().out
    assert "aug_0005.pkl: not a valid snapshot" in out and "wrote 2, kept 4" in out
    assert keep.stat().st_mtime_ns == stamp
    assert sorted(os.listdir(d / "augmented")) == [f"aug_{i:04d}.pkl" for i in range(6)] + [
        "manifest.json"]
    module.load_augmented(str(bad), n_atoms=200)


def test_bad_base_and_missing_bases_are_clear_errors(tmp_path, aug):
    module, d = aug
    (d / "augmented" / "aug_0003.pkl").unlink()
    (d / "glass_data_001.pkl").write_bytes(b"not a pickle")
    with pytest.raises(SystemExit, match="glass_data_001.pkl: not a valid snapshot"):
        module.main([f"--DATA_DIR={d}", "--N_ROTATIONS=3"])
    assert (d / "augmented" / "aug_0000.pkl").exists()
    with pytest.raises(SystemExit, match="metadata.pkl: file not found; run generate_diverse"):
        module.main([f"--DATA_DIR={tmp_path / 'empty'}"])


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_lists_the_copies_of_the_set(aug):
    module, d = aug
    manifest = module.read_manifest(str(d))
    assert manifest == json.loads((d / "augmented" / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("n_atoms", "n_rotations", "seed", "bases")} == dict(
        n_atoms=200, n_rotations=3, seed=0, bases=[0, 1])
    assert manifest["files"] == {"0": ["aug_0000.pkl", "aug_0001.pkl", "aug_0002.pkl"],
                                 "1": ["aug_0003.pkl", "aug_0004.pkl", "aug_0005.pkl"]}
    assert manifest["sha256"] == {f"aug_{i:04d}.pkl": _sha256(d / "augmented" / f"aug_{i:04d}.pkl")
                                  for i in range(6)}
    assert manifest["metadata_sha256"] == _sha256(d / "metadata.pkl")


@pytest.mark.parametrize("spoil, message", [
    (lambda d: (d / "augmented" / "manifest.json").unlink(), "manifest.json: file not found"),
    (lambda d: (d / "augmented" / "manifest.json").write_text('{"n_atoms": 2'),
     "manifest.json: not a readable manifest"),
    (lambda d: (d / "augmented" / "manifest.json").write_text('{"n_atoms": 200}'),
     "manifest.json: not a valid manifest"),
    (lambda d: (d / "augmented" / "aug_0004.pkl").write_bytes(b"other"),
     "manifest.json: aug_0004.pkl is missing or changed"),
    (lambda d: write_metadata(d, BASES[:1], 200), "manifest.json: made from another .*metadata"),
])
def test_read_manifest_refuses_missing_corrupt_and_stale(aug, spoil, message):
    module, d = aug
    spoil(d)
    with pytest.raises(GlassFileError, match=f"{message}.*run augment_data.py"):
        module.read_manifest(str(d))


def test_only_the_listed_glasses_are_used_and_strays_reported(aug, tiny_glass, capsys):
    """A glass file left by an earlier, larger set and a copy of another set are reported by
    name, not used and not deleted; the manifest lists this set only."""
    module, d = aug
    atomic_write_pickle(d / "glass_data_002.pkl", tiny_glass)          # not in metadata.pkl
    (d / "augmented" / "aug_0009.pkl").write_bytes((d / "augmented" / "aug_0000.pkl").read_bytes())
    module.main([f"--DATA_DIR={d}", "--N_ROTATIONS=3"])
    out = capsys.readouterr().out
    assert "1 base glass file(s)" in out and "glass_data_002.pkl" in out
    assert "1 augmented file(s)" in out and "aug_0009.pkl" in out and "wrote 0, kept 6" in out
    assert module.read_manifest(str(d))["bases"] == [0, 1]
    assert not (d / "augmented" / "aug_0006.pkl").exists()
    assert (d / "glass_data_002.pkl").exists() and (d / "augmented" / "aug_0009.pkl").exists()


def test_atom_count_comes_from_metadata_and_mixtures_are_refused(aug, tiny_glass):
    module, d = aug
    small = {k: (v[:150] if k in ("positions", "species", "softness_score", "eigenvalues") else v)
             for k, v in tiny_glass.items()}
    atomic_write_pickle(d / "glass_data_001.pkl", small)
    (d / "augmented" / "aug_0003.pkl").unlink()
    with pytest.raises(SystemExit, match=r"glass_data_001.pkl: has 150 atoms, expected 200"):
        module.main([f"--DATA_DIR={d}", "--N_ROTATIONS=3"])
    write_metadata(d, BASES + ["glass_data_007.pkl"], 200)
    with pytest.raises(SystemExit, match="glass_data_007.pkl: listed in .*metadata.pkl but "
                                         "missing; run generate_diverse_data.py"):
        module.main([f"--DATA_DIR={d}", "--N_ROTATIONS=3"])


def test_killed_run_keeps_the_previous_manifest_and_resumes(aug, monkeypatch):
    """Killed after one copy of a run with another N_ROTATIONS: the old manifest stays and is then
    refused as stale (a file it lists changed); the rerun completes and writes the new one."""
    module, d = aug
    before = (d / "augmented" / "manifest.json").read_bytes()
    write, calls = module.atomic_write_pickle, []

    def killed_after_one(path, obj):
        if calls:
            raise KeyboardInterrupt
        calls.append(path)
        write(path, obj)
    monkeypatch.setattr(module, "atomic_write_pickle", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        module.main([f"--DATA_DIR={d}", "--N_ROTATIONS=4"])
    assert (d / "augmented" / "manifest.json").read_bytes() == before
    with pytest.raises(GlassFileError, match="aug_0003.pkl is missing or changed"):
        module.read_manifest(str(d))
    monkeypatch.setattr(module, "atomic_write_pickle", write)
    module.main([f"--DATA_DIR={d}", "--N_ROTATIONS=4"])
    manifest = module.read_manifest(str(d))
    assert manifest["n_rotations"] == 4 and manifest["files"]["1"][0] == "aug_0004.pkl"
