"""Shared plumbing for the four pipeline scripts: command-line overrides of the UPPER_CASE
constants, atomic file writes, the one loader that reads and validates a glass snapshot, and
reading and writing other programs' structure files through ASE (imported only for those).

No physics lives here; it is imported by every script so that the .pkl schema, the safety of
reading a pickle and the `--NAME=value` convention are written once.
"""
import ast
import hashlib
import io
import json
import os
import pickle
import re
import sys
import tempfile
import time
import tokenize

import numpy as np


# ----------------------------------------------------------------------------------------------
# Command-line overrides: `python script.py --EPOCHS=3 --DATA_DIR /tmp/x`
# ----------------------------------------------------------------------------------------------
USAGE = "override any constant with --NAME=value or --NAME value"
_HELP_FLAGS = ("-h", "--help")


def normalise_argv(argv):
    """Rewrite each `--NAME value` pair as `--NAME=value`, so parsers handle one form only.

    The token after a bare `--NAME` is its value, even when it starts with a single dash
    (`--EIGSH_SHIFT -0.1`); one starting with `--` is the next name, so `--NAME` must have a value
    before it or at the end. Anything else (`--NAME=value`, -h/--help, strays) passes unchanged.
    """
    out, argv = [], list(argv)
    while argv:
        arg = argv.pop(0)
        if re.fullmatch(r"--\w+", arg) and arg not in _HELP_FLAGS:
            if not argv or argv[0].startswith("--"):
                raise SystemExit(f"error: {arg} needs a value ({arg}=value or {arg} value)")
            arg = f"{arg}={argv.pop(0)}"
        out.append(arg)
    return out


_OVERRIDABLE = (bool, int, float, str, tuple, list)   # the types _parse_value can read


def _constant_names(namespace):
    return sorted(k for k, v in namespace.items()
                  if k.isupper() and not k.startswith("_") and isinstance(v, _OVERRIDABLE))


def _typed_like(value, default):
    """A parsed tuple with the element types of the default: integers stay integers (a
    QUENCH_STEPS_RANGE of (1000.5, 2000) is refused, not rounded somewhere later)."""
    if isinstance(default, (tuple, list)):
        return tuple(_typed_like(v, d) for v, d in zip(value, default))
    if isinstance(default, int) and not isinstance(default, bool):
        if not float(value).is_integer():
            raise ValueError(f"{value!r} is not an integer")
        return int(value)
    return float(value)


def _parse_value(name, text, current):
    """Convert `text` to the type of the constant's default value."""
    kind = type(current)
    try:
        if kind is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if kind is int:
            return int(float(text)) if float(text).is_integer() else int(text)
        if kind is float:
            return float(text)
        if kind in (tuple, list):   # e.g. --SIGMA="((1,0.8),(0.8,0.88))", same shape as the default
            value = ast.literal_eval(text)
            if np.shape(value) != np.shape(current):
                raise ValueError(f"expected shape {np.shape(current)}, got {np.shape(value)}")
            return _typed_like(value, current)
        return text
    except (ValueError, SyntaxError) as err:
        raise SystemExit(f"error: --{name}={text!r}: not a valid {kind.__name__} ({err})")


def apply_overrides(namespace, argv=None):
    """Override UPPER_CASE constants of a script's `globals()` from `--NAME=value` (or
    `--NAME value`) arguments.

    Values are typed by the constant's default. An unknown name, a malformed argument or a bad
    value stops the script with a message listing the valid names. Returns {name: new value}.
    """
    argv = normalise_argv(sys.argv[1:] if argv is None else argv)
    names = _constant_names(namespace)
    changed = {}
    for arg in argv:
        if arg in _HELP_FLAGS:
            print(help_text(namespace))
            raise SystemExit(0)
        if not arg.startswith("--") or "=" not in arg:
            raise SystemExit(f"error: argument {arg!r} is not of the form --NAME=value or "
                             f"--NAME value.\nValid names: {', '.join(names)}")
        name, text = arg[2:].split("=", 1)
        if name not in names:
            raise SystemExit(f"error: unknown constant {name!r}.\nValid names: {', '.join(names)}")
        changed[name] = _parse_value(name, text, namespace[name])
    namespace.update(changed)
    return changed


def jax_cache_dir_before_overrides(namespace):
    """The JAX_CACHE_DIR that this run will use, read before any script has applied its
    overrides (for jax-md's import, generate_glass_data.py): when the main program is a script of
    this folder (or a worker it spawned, which shares its sys.argv), its last --JAX_CACHE_DIR on
    the command line, else namespace["JAX_CACHE_DIR"]. None for any other program (pytest, a
    worker of a user's own Dask cluster), for a cache turned off (""), and for a folder that does
    not exist yet: this never creates one."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    here = os.path.dirname(os.path.abspath(__file__))
    if not main_file or os.path.dirname(os.path.abspath(main_file)) != here:
        return None
    try:
        argv = normalise_argv(sys.argv[1:])
    except SystemExit:
        return None                         # the script's own parsing reports it
    value = namespace["JAX_CACHE_DIR"]
    for arg in argv:
        if arg.startswith("--JAX_CACHE_DIR="):
            value = arg.split("=", 1)[1]
    return os.path.abspath(value) if value and os.path.isdir(value) else None


def or_constants(namespace, **given):
    """The given arguments, with each None replaced by the script's constant of the same name in
    upper case, read at call time so that command-line overrides reach function defaults."""
    return [namespace[name.upper()] if value is None else value for name, value in given.items()]


def constants_of(namespace):
    """The UPPER_CASE constants of a script, as a plain dict (recorded with every output)."""
    return {n: namespace[n] for n in _constant_names(namespace)}


# --help is built from the script's source text, not by importing it: the comment on a constant's
# line (and the indented comment lines under it) carries its meaning and units, and jax/torch need
# not be loaded to print them.
def _documented_constants(path):
    """[(section, name, default as source text, comment lines)] of each top-level UPPER_CASE
    assignment of the script at `path`, in source order. `# --- title ---` opens a section and a
    `# ====` rule closes it."""
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    lines = source.splitlines()
    comments = {tok.start[0]: (tok.start[1], tok.string.lstrip("#").strip())   # line -> (col, text)
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    headers = []                            # (line, section title or None)
    for n, (col, text) in sorted(comments.items()):
        match = re.fullmatch(r"---\s+(.+?)\s+---", text)
        if col == 0 and (match or text.startswith("===")):
            headers.append((n, match[1] if match else None))
    entries = []
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper()
                and not node.targets[0].id.startswith("_")):
            continue
        doc = [comments[n][1] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        n = node.end_lineno + 1
        while n in comments and comments[n][0] > 0 and not lines[n - 1][:comments[n][0]].strip():
            doc.append(comments[n][1])      # an indented comment-only line continues the comment
            n += 1
        section = [title for line, title in headers if line < node.lineno]
        entries.append((section[-1] if section else None, node.targets[0].id,
                        ast.get_source_segment(source, node.value), doc))
    return entries


def _is_overridable_literal(text):
    try:
        return isinstance(ast.literal_eval(text), _OVERRIDABLE)
    except (ValueError, SyntaxError):
        return False


def help_text(namespace, forwarded=(), hide=()):
    """The --help of a script: a usage line, then each constant with its current value and its
    comment, grouped as in the source. `forwarded`: scripts (paths relative to this one) whose
    constants this one passes on; listed after its own (source defaults), less those it shadows
    and those in `hide` (forwarded names the script refuses)."""
    path = namespace.get("__file__")
    names = _constant_names(namespace)
    rows = []                   # (forwarded script or None, section or None, --NAME=value, comment)
    listed = set()
    for section, name, text, doc in _documented_constants(path) if path else []:
        if name in names:
            rows.append((None, section, f"--{name}={namespace[name]!r}", doc))
        elif name not in namespace and _is_overridable_literal(text):   # defined below the call
            rows.append((None, section, f"--{name}={text}", doc))
        listed.add(name)
    rows += [(None, None, f"--{n}={namespace[n]!r}", []) for n in names if n not in listed]
    for other in forwarded:     # their defaults from their source; a name of ours shadows theirs
        for section, name, text, doc in _documented_constants(
                os.path.join(os.path.dirname(os.path.abspath(path)), other)):
            if name not in listed and name not in names and name not in hide \
                    and _is_overridable_literal(text):
                rows.append((other, section, f"--{name}={text}", doc))
    width = min(max((len(row[2]) for row in rows), default=0), 40)
    summary = (namespace.get("__doc__") or "").strip().split("\n\n")[0]   # what it does
    out = [f"usage: python {os.path.basename(path or 'script.py')} [--NAME=value | --NAME value] "
           "...", USAGE] + (["", summary] if summary else [])
    previous = (None, "")
    for group, section, left, doc in rows:
        if group != previous[0]:
            out.append(f"\n=== forwarded to {group} (its constants, overridable here too) ===")
        if (group, section) != previous:
            out.append(f"\n--- {section} ---" if section else "")
            previous = (group, section)
        doc = doc or [""]
        out.append(f"  {left:<{width}}  {doc[0]}".rstrip())
        out += [f"  {'':<{width}}  {line}" for line in doc[1:]]
    return "\n".join(out)


def exit_on_help(namespace, forwarded=(), hide=()):
    """Call as `exit_on_help(globals())` right after a script's constants and before its heavy
    imports (jax, torch): run as a script with -h/--help, it prints help_text and exits 0 at
    once; imported, or without those flags, it does nothing."""
    if namespace.get("__name__") == "__main__" and any(a in _HELP_FLAGS for a in sys.argv[1:]):
        print(help_text(namespace, forwarded, hide))
        raise SystemExit(0)


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
    missing = [k for k in REQUIRED_PARAMETERS if k not in params]
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
    atoms.info.update(info)
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
