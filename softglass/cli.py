"""The command line of every script: `--NAME=value` (or `--NAME value`) overrides of its
UPPER_CASE constants, typed by their defaults, and `--help` built from the constants' comments
(without importing jax or torch).

A script passes its own `globals()`; nothing here reads any other module's constants.
"""
import ast
import io
import os
import re
import sys
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
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))    # the scripts' folder
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


def script_constants(path):
    """{NAME: value} of the UPPER_CASE constants of the script at `path` as its source sets them
    (literal values only), read without running it: no jax or torch, no command line of its
    own. For a script that follows another's settings as they stand in its file."""
    return {name: ast.literal_eval(text) for _, name, text, _ in _documented_constants(path)
            if _is_overridable_literal(text)}


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


