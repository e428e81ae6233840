"""Files: atomic writes, the one loader that reads and validates a glass snapshot (.pkl, the
seed's schema), other programs' structure files through ASE (imported only for those), run
timings and content hashes.

No physics lives here: the .pkl schema, the safety of reading a pickle and atomic writes are
written once for every script.
"""
import hashlib
import io
import json
import os
import pickle
import re
import tempfile
import time

import numpy as np

# ----------------------------------------------------------------------------------------------
# Atomic writes: a reader never sees a half-written file, and an interrupted run leaves no
# partial output (the temp file lives beside the target and is renamed in one step).
# ----------------------------------------------------------------------------------------------
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path, data):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)       # mkstemp's 0600 would hide results from a group
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_writable(directory, constant, what=""):
    """Create `directory` if need be and write and remove a file there: an output folder this run
    cannot write is an error at the start (SystemExit naming `constant`, the script's setting,
    and `what` it was to hold), not a loss of the computation at its end."""
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write_test_"):
            pass
    except OSError as err:
        raise SystemExit(f"error: {constant}={directory}: cannot write {what}there "
                         f"({type(err).__name__}: {err.strerror or err}); choose another "
                         f"--{constant}")


def atomic_write_pickle(path, obj):
    atomic_write_bytes(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


# ----------------------------------------------------------------------------------------------
# Reading snapshots. A pickle can run arbitrary code when loaded; ours only ever hold numpy
# arrays and builtins, so everything else is refused.
# ----------------------------------------------------------------------------------------------
class GlassFileError(ValueError):
    """A snapshot file that is missing, unreadable or does not follow the schema."""


_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}
_ALLOWED_DTYPE_MODULES = ("numpy.dtypes",)   # numpy >= 1.25 pickles dtypes as numpy.dtypes.*DType


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS or (module in _ALLOWED_DTYPE_MODULES
                                                  and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden global {module}.{name} (only numpy arrays "
                                     "and builtins are allowed)")


def safe_load_pickle(path):
    """Unpickle `path` allowing numpy arrays and builtins only."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise GlassFileError(f"{path}: cannot read ({err.strerror})") from err
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except Exception as err:   # truncated, corrupt or malicious: all refused the same way
        raise GlassFileError(f"{path}: not a valid snapshot pickle ({type(err).__name__}: {err})") \
            from err


# The snapshot schema of the seed README ("Dataset Details"), plus `parameters`.
# key -> (shape with 'N' for the atom count, numpy kind: 'f' float, 'i' integer)
SNAPSHOT_ARRAYS = {
    "positions": (("N", 3), "f"),
    "species": (("N",), "i"),
    "softness_score": (("N",), "f"),
    "eigenvalues": (("N", 3), "f"),
}
SNAPSHOT_SCALARS = ("box_size", "energy")
REQUIRED_PARAMETERS = ("sigma", "epsilon", "r_onset", "r_cutoff", "density", "temperature",
                       "quench_steps", "species_ratio", "seed", "max_force", "n_fire_steps",
                       "seconds")
# a glass of another former (softglass.formers) records its potential instead of KA's pair table
REQUIRED_FORMER_PARAMETERS = ("potential", "density", "temperature", "quench_steps",
                              "species_ratio", "seed", "max_force", "n_fire_steps", "seconds")


def former_of(snap):
    """The glass former a snapshot records ("ka" when it names none: the seed's glasses)."""
    potential = snap.get("parameters", {}).get("potential") if isinstance(snap, dict) else None
    return potential.get("name", "ka") if isinstance(potential, dict) else "ka"


def validate_snapshot(snap, path="<snapshot>", n_atoms=None):
    """Check keys, shapes, dtypes and finiteness of a snapshot dict; raise GlassFileError."""
    def fail(problem):
        raise GlassFileError(f"{path}: {problem}")

    if not isinstance(snap, dict):
        fail(f"expected a dict, found {type(snap).__name__}")
    missing = [k for k in (*SNAPSHOT_ARRAYS, *SNAPSHOT_SCALARS, "parameters") if k not in snap]
    if missing:
        fail(f"missing keys {missing}")
    n = len(snap["positions"]) if hasattr(snap["positions"], "__len__") else -1
    if n_atoms is not None and n != n_atoms:
        fail(f"has {n} atoms, expected {n_atoms}")
    for key, (shape, kind) in SNAPSHOT_ARRAYS.items():
        arr = snap[key]
        if not isinstance(arr, np.ndarray):
            fail(f"'{key}' is {type(arr).__name__}, expected a numpy array")
        want = tuple(n if s == "N" else s for s in shape)
        if arr.shape != want:
            fail(f"'{key}' has shape {arr.shape}, expected {want}")
        if arr.dtype.kind not in (kind, "u" if kind == "i" else kind):
            fail(f"'{key}' has dtype {arr.dtype}, expected {'float' if kind == 'f' else 'integer'}")
        if kind == "f" and not np.all(np.isfinite(arr)):
            fail(f"'{key}' has non-finite values")
    for key in SNAPSHOT_SCALARS:
        val = snap[key]
        if not isinstance(val, (float, int, np.floating)) or not np.isfinite(val):
            fail(f"'{key}' must be a finite number, found {val!r}")
    if snap["box_size"] <= 0:
        fail(f"'box_size' must be positive, found {snap['box_size']}")
    if not set(np.unique(snap["species"])) <= {0, 1}:
        fail("'species' must hold 0 (A) and 1 (B) only")
    params = snap["parameters"]
    if not isinstance(params, dict):
        fail("'parameters' must be a dict")
    required = REQUIRED_PARAMETERS if former_of(snap) == "ka" else REQUIRED_FORMER_PARAMETERS
    missing = [k for k in required if k not in params]
    if missing:
        fail(f"'parameters' lacks {missing}")
    return snap


def load_glass(path, n_atoms=None):
    """Read and validate one snapshot file; errors name the file and the problem."""
    if not os.path.exists(path):
        raise GlassFileError(f"{path}: file not found")
    return validate_snapshot(safe_load_pickle(path), path, n_atoms)


# ----------------------------------------------------------------------------------------------
# Structure files of other programs, through ASE (extended XYZ, LAMMPS dump and data files,
# POSCAR, CIF, ...: whatever ase.io.read knows). ASE is imported only when one is read or written.
# ----------------------------------------------------------------------------------------------
# Suffixes ASE does not map to the format LAMMPS users mean (it reads .data as another code's).
_FORMAT_OF_SUFFIX = {".xyz": "extxyz", ".extxyz": "extxyz", ".lammpstrj": "lammps-dump-text",
                     ".dump": "lammps-dump-text", ".data": "lammps-data", ".lmp": "lammps-data"}
_FORMAT_OF_PREFIX = {"dump.": "lammps-dump-text", "data.": "lammps-data"}   # LAMMPS's habit
_XYZ_FORMATS = ("xyz", "extxyz")
# ASE knows element symbols only; an XYZ species column is read under this name instead, so that
# any species name (A/B, 0/1, a type name) reaches the caller as written.
SPECIES_AS_WRITTEN = "species_as_written"


def structure_format(path, fmt=""):
    """The ase.io format of `path`: `fmt` when given, else guessed from its name (LAMMPS's usual
    names included) or, failing that, by ASE from its name and content."""
    if fmt:
        from ase.io.formats import ioformats
        if fmt not in ioformats:
            raise GlassFileError(f"{path}: INPUT_FORMAT={fmt!r} is not a format ase.io.read knows "
                                 "(e.g. extxyz, lammps-dump-text, lammps-data, vasp, cif)")
        return fmt
    name = os.path.basename(path).lower()
    suffix = os.path.splitext(name)[1]
    if suffix in _FORMAT_OF_SUFFIX:
        return _FORMAT_OF_SUFFIX[suffix]
    for prefix, guessed in _FORMAT_OF_PREFIX.items():
        if name.startswith(prefix):
            return guessed
    from ase.io.formats import filetype, ioformats
    try:
        guessed = filetype(path, read=True)
    except Exception as err:        # ASE raises its own kinds for a name or content it cannot place
        guessed, why = None, f"{type(err).__name__}: {err}"
    else:
        why = f"ASE guesses {guessed!r}, which it cannot read"
    if guessed not in ioformats:
        raise GlassFileError(f"{path}: cannot tell the file's format ({why}): name it with "
                             "--INPUT_FORMAT (extxyz, lammps-dump-text, lammps-data, vasp, cif, "
                             "or any other ase.io.read format)")
    return guessed


def _xyz_frames(lines, path):
    """[(index of the count line, atom count)] of each frame of an XYZ file, checking that every
    frame has exactly the atom lines its count line declares: a line left over after them that is
    not the count of a next frame means atoms the count would silently drop."""
    frames, i = [], 0
    while i < len(lines):
        if not lines[i].strip():
            if any(line.strip() for line in lines[i:]):
                raise GlassFileError(f"{path}: line {i + 1} is blank, yet lines follow it (XYZ "
                                     "frames are a count line, a header line and the atom lines)")
            break
        try:
            n = int(lines[i])
        except ValueError:
            if not frames:
                raise GlassFileError(f"{path}: not an XYZ file (line 1 must be the atom count "
                                     f"alone, found {lines[i].strip()[:60]!r})") from None
            start, count = frames[-1]
            raise GlassFileError(
                f"{path}: line {i + 1} ({lines[i].strip()[:60]!r}) is not the atom count of a next "
                f"frame: the frame at line {start + 1} has more atom lines than the {count} its "
                "count line declares (correct the count; the extra atoms would be dropped)") \
                from None
        atom_lines = lines[i + 2:i + 2 + n]
        if n < 1 or len(atom_lines) < n or not all(line.strip() for line in atom_lines):
            found = next((k for k, line in enumerate(atom_lines) if not line.strip()),
                         len(atom_lines))
            raise GlassFileError(f"{path}: line {i + 1} declares {n} atoms but {found} atom lines "
                                 "follow it")
        frames.append((i, n))
        i += 2 + n
    if not frames:
        raise GlassFileError(f"{path}: empty file")
    return frames


def _species_read_as_written(header):
    """The header line with its species column renamed SPECIES_AS_WRITTEN (a Properties= without
    one added, as extended XYZ's default species:S:1:pos:R:3)."""
    match = re.search(r"(?i)\bproperties=([\"']?)([^\s\"']+)", header)
    if not match:
        return f"{header.rstrip()} Properties={SPECIES_AS_WRITTEN}:S:1:pos:R:3"
    fields = match.group(2).split(":")
    fields = [SPECIES_AS_WRITTEN if k % 3 == 0 and f.lower() == "species" else f
              for k, f in enumerate(fields)]
    return header[:match.start(2)] + ":".join(fields) + header[match.end(2):]


def _chosen_frame(n_frames, frame, path):
    """Index of the frame to use: the only one, or `frame` (an int or its text) of several."""
    if frame in (None, ""):
        if n_frames > 1:
            raise GlassFileError(f"{path}: holds {n_frames} frames; name the one to use with "
                                 f"--FRAME=<index> (0 the first, -1 the last)")
        return 0
    try:
        index = int(frame)
    except ValueError:
        raise GlassFileError(f"{path}: FRAME={frame!r} is not an integer frame index") from None
    if not -n_frames <= index < n_frames:
        raise GlassFileError(f"{path}: FRAME={index} but the file holds {n_frames} frame(s)")
    return index % n_frames


def read_structure(path, fmt="", frame=None):
    """One frame of a structure file, through ase.io.read, as a dict: atoms (ase.Atoms), labels
    (each atom's species as the file writes it: the text of an XYZ species column, else ASE's
    chemical symbol), types (LAMMPS integer types, or None), line (1-based line of each atom in
    the file, or None), format, frame, n_frames. A file of several frames needs `frame`."""
    if not os.path.exists(path):
        raise GlassFileError(f"{path}: file not found")
    fmt = structure_format(path, fmt)
    import ase.io
    try:
        if fmt in _XYZ_FORMATS:
            with open(path, encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines()
            frames = _xyz_frames(lines, path)
            index = _chosen_frame(len(frames), frame, path)
            start, n = frames[index]
            text = "\n".join([lines[start].strip(), _species_read_as_written(lines[start + 1])]
                             + lines[start + 2:start + 2 + n]) + "\n"
            atoms = ase.io.read(io.StringIO(text), format="extxyz")
            line = np.arange(n) + start + 3
            n_frames = len(frames)
        else:
            images = ase.io.read(path, format=fmt, index=":")
            n_frames = len(images)
            if not n_frames:
                raise GlassFileError(f"{path}: no frame in the file")
            index = _chosen_frame(n_frames, frame, path)
            atoms, line = images[index], None
    except GlassFileError:
        raise
    except Exception as err:        # ASE's readers raise many kinds; each names the problem
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise GlassFileError(f"{path}: ase.io.read cannot read it as {fmt} ({type(err).__name__}: "
                             f"{first}; set --INPUT_FORMAT if the format is another)") from None
    labels = (atoms.arrays.pop(SPECIES_AS_WRITTEN) if SPECIES_AS_WRITTEN in atoms.arrays
              else np.array(atoms.get_chemical_symbols(), object))
    types = atoms.arrays.get("type")
    return dict(atoms=atoms, labels=np.asarray(labels).astype(str),
                types=None if types is None else np.asarray(types, np.int64), line=line,
                format=fmt, frame=index, n_frames=n_frames)


def write_extxyz(path, symbols, positions, cell, columns, info):
    """Extended XYZ through ase.io.write (ASE and OVITO read it without options): element
    `symbols`, positions, a periodic `cell`, per-atom `columns` ({name: (N,) or (N, k)}) and
    `info` ({key: text, number or 1-D array}) in the header. Written atomically."""
    import ase
    import ase.io
    atoms = ase.Atoms(symbols=list(symbols), positions=positions, cell=cell, pbc=True)
    for name, values in columns.items():
        atoms.new_array(name, np.asarray(values, float))
    # an empty text is left out: ASE writes it as `key=` and reads the next key into it
    atoms.info.update({k: v for k, v in info.items() if not (isinstance(v, str) and v == "")})
    buffer = io.StringIO()
    ase.io.write(buffer, atoms, format="extxyz")
    atomic_write_bytes(path, buffer.getvalue().encode())


# ----------------------------------------------------------------------------------------------
# Wall time of each pipeline script, kept in DATA_DIR/timings.json (train.py copies it into
# results.json). A resumed run records its own time and how much it did.
# ----------------------------------------------------------------------------------------------
TIMINGS_FILE = "timings.json"


def read_wall_times(data_dir):
    try:
        with open(os.path.join(data_dir, TIMINGS_FILE)) as fh:
            timings = json.load(fh)
        return timings if isinstance(timings, dict) else {}
    except (OSError, ValueError):
        return {}


def record_wall_time(data_dir, script, seconds, **details):
    timings = read_wall_times(data_dir)
    timings[script] = dict(seconds=round(float(seconds), 1), **details,
                           finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    atomic_write_bytes(os.path.join(data_dir, TIMINGS_FILE),
                       json.dumps(timings, indent=2).encode())


# ----------------------------------------------------------------------------------------------
# Fingerprints: which protocol made a glass, which files a step used.
# ----------------------------------------------------------------------------------------------
def _canonical(value):
    """Constants as plain JSON: every number a float (an override of (3000, 7000) is parsed as
    floats, the source has ints: the same value must give the same hash), tuples as lists."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_canonical(v) for v in value]
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")


def sha256_of_json(value):
    """sha256 hex of the canonical JSON of `value` (keys sorted, numbers as floats)."""
    text = json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def same_value(a, b):
    """Equal once canonical (300 and 300.0 are the same constant)."""
    return sha256_of_json(a) == sha256_of_json(b)


def name_list(names, shown=8):
    """File names for a message: the first `shown`, then how many more."""
    names = list(names)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def file_sha256(path):
    """sha256 hex of a file's bytes; GlassFileError naming the file if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError as err:
        raise GlassFileError(f"{path}: cannot read ({err.strerror})") from err


def system_of(snap):
    """generate_glass_data's system dict (box, species, sigma, epsilon and the absolute
    cut-offs r_onset, r_cutoff) from a snapshot's own parameters: what its Hessian is built from."""
    p = snap["parameters"]
    return dict(box=float(snap["box_size"]), species=np.asarray(snap["species"], np.int32),
                sigma=np.asarray(p["sigma"], np.float64),
                epsilon=np.asarray(p["epsilon"], np.float64),
                r_onset=float(p["r_onset"]), r_cutoff=float(p["r_cutoff"]))
