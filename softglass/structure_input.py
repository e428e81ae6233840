"""A user's glass as predict.py reads it: our .pkl snapshot, or any structure file ASE reads
(extended XYZ, LAMMPS dump and data files, POSCAR, CIF, ...), turned into positions in its cubic
cell's own frame, species A (0) and B (1), the potential and any true softness, with every
refusal made before any physics (a non-periodic or non-cubic cell, a non-finite coordinate, a
species that is neither A nor B, one species only, overlapping atoms).

Light at import (numpy and ASE only): predict.py reads and checks the input before jax or torch
is loaded. Settings come in as a `Reading` (predict.py's constants); doubts go to a `warn`
callable, which records them for the output's .json.
"""
import dataclasses

import numpy as np

from .files import GlassFileError, former_of, load_glass, read_structure


@dataclasses.dataclass(frozen=True)
class Reading:
    """How a glass file is read: predict.py's constants of these names in upper case."""
    input_format: str           # ase.io format ("": from the file's name)
    frame: str                  # index of the frame in a file of several ("": it must hold one)
    species_a: str              # the file's species that is A (symbol, name or LAMMPS type)
    species_b: str              # the file's species that is B
    element_a: str              # element symbol written for A when species_a is none
    element_b: str              # the same for B
    sigma: tuple                # sigma_ab of a file that records no potential
    epsilon: tuple              # epsilon_ab of a file that records no potential
    r_onset: float              # C1 smoothing onset, in units of max(sigma)
    r_cutoff: float             # cutoff, in units of max(sigma)
    minority_a_warn: float      # warn when fewer than this fraction of atoms are A


def read_extxyz(path):
    """One frame of extended XYZ through ASE: {column: (N, k) array} (species as written, pos,
    every per-atom column; names in lower case), the 3x3 cell (rows are box vectors), the header's
    key=value pairs (keys in lower case; numbers parsed by ASE)."""
    s = read_structure(path, "extxyz")
    atoms = s["atoms"]
    columns = dict(species=s["labels"].astype(object)[:, None], pos=atoms.positions)
    columns.update({k.lower(): np.asarray(v).reshape(len(atoms), -1) for k, v in
                    atoms.arrays.items() if k not in ("numbers", "positions")})
    return columns, np.array(atoms.cell), {k.lower(): v for k, v in atoms.info.items()}


def cubic_frame(positions, cell, path):
    """Positions in the cell's own axis-aligned frame and the box length. The physics here needs a
    cubic cell; a rotated one (augment_data.py's copies) is rotated back, which changes nothing
    the model sees (distances are the same)."""
    box = float(np.linalg.norm(cell[0]))
    if not np.allclose(cell @ cell.T, box ** 2 * np.eye(3), atol=1e-8 * box ** 2):
        lengths = np.linalg.norm(cell, axis=1)
        cos = [float(cell[a] @ cell[b] / (lengths[a] * lengths[b])) for a, b in ((1, 2), (0, 2),
                                                                                 (0, 1))]
        angles = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        raise GlassFileError(f"{path}: only cubic periodic cells are supported (three orthogonal "
                             f"cell vectors of equal length); this one has lengths "
                             f"{np.round(lengths, 6).tolist()} and angles "
                             f"{np.round(angles, 3).tolist()} degrees")
    frac = positions @ np.linalg.inv(cell)
    return (frac - np.floor(frac)) * box, box


def element(name):
    """The element symbol `name` is (case-insensitive), or None (a type number, an A/B label)."""
    from ase.data import chemical_symbols
    found = [s for s in chemical_symbols[1:] if s.lower() == str(name).strip().lower()]
    return found[0] if found else None


def species_mapping(labels, header, given, reading):
    """(name of A, name of B, where the mapping comes from): SPECIES_A/SPECIES_B from the command
    line; else the species_A/species_B a file of predict.py records; else, for a file whose
    species are A and B, or 0 and 1 (what predict.py read before files carried element
    symbols), those; else the constants."""
    if given & {"SPECIES_A", "SPECIES_B"}:
        return reading.species_a, reading.species_b, "SPECIES_A, SPECIES_B on the command line"
    if "species_a" in header and "species_b" in header:
        return str(header["species_a"]), str(header["species_b"]), "the file's header"
    if "A" in set(labels) and set(labels) <= {"A", "B"}:      # "A" is no element: an A/B file
        return "A", "B", "the file's own A/B labels"
    if "0" in set(labels) and set(labels) <= {"0", "1"}:      # LAMMPS types start at 1: 0 is A
        return "0", "1", "the file's own 0/1 labels"
    return reading.species_a, reading.species_b, "the constants SPECIES_A, SPECIES_B"


def species_codes(labels, types, name_a, name_b, path):
    """0 for A, 1 for B: an atom is A when its species as written (or its LAMMPS type) is
    name_a, B when it is name_b; a species that is neither (or both) is an error naming it."""
    labels = np.asarray(labels).astype(str)

    def matches(name):
        name = str(name).strip()
        hit = np.char.lower(labels) == name.lower()
        if types is not None and name.lstrip("+-").isdigit():
            hit |= types == int(name)
        return hit

    if str(name_a).strip().lower() == str(name_b).strip().lower():
        raise GlassFileError(f"{path}: SPECIES_A and SPECIES_B are both {name_a!r}")
    is_a, is_b = matches(name_a), matches(name_b)
    for bad, what in ((is_a & is_b, "both A and B"), (~(is_a | is_b), "neither A nor B")):
        if bad.any():
            kinds = sorted(set(labels[bad]) if types is None else
                           {f"type {t} (read as {s})" for t, s in zip(types[bad], labels[bad])})
            present = sorted(set(labels) if types is None else
                             {f"type {t} ({s})" for t, s in zip(types, labels)})
            raise GlassFileError(
                f"{path}: unknown species {', '.join(kinds[:5])} ({int(bad.sum())} atoms): it "
                f"maps to {what} (A is {name_a!r}, B is {name_b!r}); the file holds "
                f"{', '.join(present[:8])}: name A and B with --SPECIES_A and --SPECIES_B (an "
                "element symbol, the name the file uses, or a LAMMPS type number)")
    return np.where(is_a, 0, 1).astype(np.int64)


def check_two_species(species, names, path, minority_a_warn, warn):
    """The model is for a binary A/B glass: one species only is refused; A as the minority (it
    is 80% in Kob-Andersen) is warned about: a swapped mapping gives a confident wrong answer."""
    n_a = int(np.sum(species == 0))
    if n_a in (0, len(species)):
        raise GlassFileError(f"{path}: all {len(species)} atoms are {'B' if n_a == 0 else 'A'} "
                             f"(A is {names[0]!r}, B is {names[1]!r}): the model is for a binary "
                             "A/B glass (check SPECIES_A and SPECIES_B)")
    if n_a < minority_a_warn * len(species):
        warn(f"{path}: only {n_a} of {len(species)} atoms are A ({names[0]!r}); Kob-Andersen's A "
             f"is the 80% majority: are SPECIES_A and SPECIES_B swapped?")


def check_finite(positions, cell, line, path):
    """Refuse a non-finite coordinate, naming the atom and its line (before any physics: a NaN
    would otherwise surface as a failed minimisation)."""
    if not np.all(np.isfinite(cell)):
        raise GlassFileError(f"{path}: the cell holds non-finite numbers {cell.tolist()}")
    bad = np.flatnonzero(~np.all(np.isfinite(positions), axis=1))
    if bad.size:
        where = [f"atom {i}" + (f" (line {line[i]})" if line is not None else "")
                 + f": {positions[i].tolist()}" for i in bad[:3]]
        raise GlassFileError(f"{path}: {bad.size} atom(s) with a non-finite position: "
                             + "; ".join(where))


def potential_from_constants(reading):
    """sigma, epsilon and absolute cut-offs (jax-md's convention: multiples of max sigma)."""
    sigma, epsilon = np.asarray(reading.sigma, float), np.asarray(reading.epsilon, float)
    s = float(np.max(sigma))
    return dict(sigma=sigma, epsilon=epsilon, r_onset=reading.r_onset * s,
                r_cutoff=reading.r_cutoff * s)


def _numbers(value):
    """A header value as numbers: ASE parses them already; text (older callers) is split."""
    return np.asarray(value.split() if isinstance(value, str) else value, float).ravel()


def potential_from_header(header, path):
    """The potential recorded by train.py / predict.py (figures.potential_info), or None."""
    keys = ("sigma", "epsilon", "r_onset", "r_cutoff")
    if not any(k in header for k in keys):
        return None
    try:
        return dict(sigma=_numbers(header["sigma"]).reshape(2, 2),
                    epsilon=_numbers(header["epsilon"]).reshape(2, 2),
                    r_onset=float(_numbers(header["r_onset"])[0]),
                    r_cutoff=float(_numbers(header["r_cutoff"])[0]))
    except (KeyError, ValueError, IndexError) as err:
        raise GlassFileError(f"{path}: the header's potential ({', '.join(keys)}) is incomplete "
                             f"or malformed ({type(err).__name__}: {err})")


def read_glass(path, reading, given=frozenset(), *, warn):
    """The glass as positions in [0, box)^3 of its cubic cell's own frame, species, box, the cell
    as given (outputs are written in it), potential, true softness (or None), line of each atom
    in the file (or None), how file species map to A and B. `given`: constants set on the
    command line (they win over what the file records)."""
    if path.endswith(".pkl") and not reading.input_format:
        return read_snapshot(path, reading, warn)
    s = read_structure(path, reading.input_format, reading.frame)
    atoms = s["atoms"]
    cell = np.array(atoms.cell)
    if not atoms.pbc.all() or abs(np.linalg.det(cell)) == 0:
        raise GlassFileError(f"{path}: no periodic cell in 3D (pbc {atoms.pbc.tolist()}; an "
                             "extended-XYZ file needs Lattice=\"...\" in its header line, a "
                             "LAMMPS file periodic box bounds)")
    check_finite(atoms.positions, cell, s["line"], path)
    header = {k.lower(): v for k, v in atoms.info.items()}
    name_a, name_b, source = species_mapping(s["labels"], header, given, reading)
    species = species_codes(s["labels"], s["types"], name_a, name_b, path)
    elements = (element(name_a) or reading.element_a, element(name_b) or reading.element_b)
    if elements[0] == elements[1] or source == "the file's own A/B labels":   # "B" is boron
        elements = (reading.element_a, reading.element_b)
    check_two_species(species, (name_a, name_b), path, reading.minority_a_warn, warn)
    positions, box = cubic_frame(atoms.positions, cell, path)
    true = next((np.asarray(atoms.arrays[k], float).ravel() for k in ("softness_true", "softness")
                 if k in atoms.arrays), None)
    potential = potential_from_header(header, path)
    return dict(positions=positions, species=species, box=box, cell=cell,
                potential=potential or potential_from_constants(reading),
                potential_from="the file's header" if potential else
                "the constants SIGMA, EPSILON, R_ONSET, R_CUTOFF (Kob-Andersen unless set)",
                potential_in_file=potential is not None, true=true, label_modes=None,
                line=s["line"], format=s["format"],
                frame=s["frame"] if s["n_frames"] > 1 else None,
                mapping=dict(A=name_a, B=name_b, source=source), elements=elements)


def read_snapshot(path, reading, warn):
    """read_glass for our .pkl snapshot: a Kob-Andersen one with its potential and labels, or
    another former's (former_glass)."""
    snap = load_glass(path)
    cell = np.asarray(snap.get("cell", snap["box_size"] * np.eye(3)), float)
    positions, box = cubic_frame(np.asarray(snap["positions"], float), cell, path)
    p = snap["parameters"]
    if former_of(snap) != "ka":
        return former_glass(snap, positions, box, cell)
    potential = {k: (np.asarray(p[k], float) if k in ("sigma", "epsilon") else float(p[k]))
                 for k in ("sigma", "epsilon", "r_onset", "r_cutoff")}
    species = np.asarray(snap["species"], np.int64)
    check_two_species(species, ("A", "B"), path, reading.minority_a_warn, warn)
    return dict(positions=positions, species=species, box=box, cell=cell,
                potential=potential, potential_from="the snapshot",
                true=np.asarray(snap["softness_score"], float),
                label_modes=p.get("n_soft_modes"), line=None, format="pkl", frame=None,
                mapping=dict(A=0, B=1, source="the snapshot (0 is A, 1 is B)"),
                elements=(reading.element_a, reading.element_b))


def former_glass(snap, positions, box, cell):
    """A glass of another former (softglass.formers) from its snapshot: an inherent structure
    already, with its local-Hessian eigenvalues and labels, made by generate_glass_data.py
    --POTENTIAL; predicted from those (no minimisation: the Kob-Andersen physics here does not
    apply to it)."""
    p = snap["parameters"]
    elements = tuple(p["potential"]["elements"]) * 2
    return dict(positions=positions, species=np.asarray(snap["species"], np.int64), box=box,
                cell=cell, potential=None, potential_from=f"the snapshot ({p['potential']['name']})",
                former=p["potential"]["name"], units=p.get("units", "metal"),
                true=np.asarray(snap["softness_score"], float), label_modes=p.get("n_soft_modes"),
                line=None, format="pkl", frame=None, snapshot=snap,
                mapping=dict(A=0, B=1, source="the snapshot (0 is A, 1 is B)"),
                elements=elements[:2])


def check_overlaps(glass, path, overlap_fraction):
    """Refuse atoms closer than overlap_fraction of their pair's sigma before FIRE, naming them:
    from there FIRE diverges or the eigensolver fails, far from the cause."""
    from .pairs import pair_list
    sigma = np.asarray(glass["potential"]["sigma"], float)
    species = glass["species"]
    first, second, rij = pair_list(glass["positions"], glass["box"],
                                   overlap_fraction * float(sigma.max()))
    if not len(first):
        return
    d = np.linalg.norm(rij, axis=1)
    ratio = d / sigma[species[first], species[second]]
    close = ratio < overlap_fraction
    if close.any():
        k = int(np.argmin(ratio))
        i, j = int(first[k]), int(second[k])
        line = glass.get("line")
        at = (lambda a: f"atom {a}" + (f" (line {line[a]})" if line is not None else ""))
        names = "AB"
        raise GlassFileError(
            f"{path}: {int(close.sum())} pair(s) of overlapping atoms, the closest {at(i)} and "
            f"{at(j)} at {d[k]:.4g} sigma, {ratio[k]:.3g} of their sigma_"
            f"{names[species[i]]}{names[species[j]]}: a duplicated atom, or positions not in "
            f"sigma_AA? FIRE cannot start from there (limit: OVERLAP_FRACTION={overlap_fraction})")
