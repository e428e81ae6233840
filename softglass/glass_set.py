"""A set of glasses of drawn protocols (generate_diverse_data.py): glass k draws its density,
temperature, quench length, species ratio and sigma/epsilon scales from a generator seeded by
(seed, k) alone, and its simulation from a sub-seed of (seed, k, attempt); a finished file is
kept only if it was made for this k, seed, atom count and protocol. Settings come in as
arguments (`Ranges`: the script's <NAME>_RANGE constants)."""
import dataclasses
import glob
import os
import re

import numpy as np

from .files import GlassFileError, load_glass, same_value


@dataclasses.dataclass(frozen=True)
class Ranges:
    """The ranges glass k draws from, uniformly: generate_diverse_data.py's constants of these
    names in upper case with _RANGE appended, each (low, high)."""
    density: tuple              # atoms / sigma_AA^3
    temperature: tuple          # heating temperature, epsilon_AA / k_B
    quench_steps: tuple         # Brownian steps of the quench ramp (integers, inclusive)
    species_ratio: tuple        # fraction of A atoms
    sigma_scale: tuple          # multiplies the whole sigma matrix (and so the cut-offs)
    epsilon_scale: tuple        # multiplies the whole epsilon matrix


# ================================ the draw =======================================================
def draw_parameters(k, seed, ranges, sigma, epsilon):
    """Parameters of glass k: a generator seeded by (seed, k) alone, drawn in a fixed order;
    sigma and epsilon (the unscaled matrices) times the drawn scales."""
    rng = np.random.default_rng([seed, k])
    density = rng.uniform(*ranges.density)
    temperature = rng.uniform(*ranges.temperature)
    quench_steps = int(rng.integers(ranges.quench_steps[0], ranges.quench_steps[1] + 1))
    species_ratio = rng.uniform(*ranges.species_ratio)
    sigma_scale = rng.uniform(*ranges.sigma_scale)
    epsilon_scale = rng.uniform(*ranges.epsilon_scale)
    return dict(density=float(density), temperature=float(temperature),
                quench_steps=quench_steps, species_ratio=float(species_ratio),
                sigma_scale=float(sigma_scale), epsilon_scale=float(epsilon_scale),
                sigma=np.asarray(sigma) * sigma_scale,
                epsilon=np.asarray(epsilon) * epsilon_scale)


@dataclasses.dataclass(frozen=True)
class FormerRanges:
    """The ranges a glass of another former (generate_glass_data.py --POTENTIAL=cuzr or sw)
    draws from: generate_diverse_data.py's <FORMER>_<NAME>_RANGE constants, each (low, high)."""
    density: tuple              # atoms / A^3, uniform
    quench_rate: tuple          # K/s, log-uniform (the rates span a decade in the literature)
    fraction: tuple             # fraction of species 0 (Cu); (1, 1) for a one-element former


def draw_former_parameters(k, seed, ranges):
    """Parameters of glass k of another former: a generator seeded by (seed, k) alone, drawn in
    a fixed order (density, log10 of the quench rate, fraction of species 0)."""
    rng = np.random.default_rng([seed, k])
    density = rng.uniform(*ranges.density)
    quench_rate = 10.0 ** rng.uniform(*np.log10(ranges.quench_rate))
    fraction = rng.uniform(*ranges.fraction)
    return dict(density=float(density), quench_rate=float(quench_rate),
                fraction=float(fraction))


def simulation_seed(seed, k, attempt):
    """Deterministic sub-seed of glass k's attempt: positions, species and Brownian noise."""
    return int(np.random.SeedSequence([seed, k, attempt]).generate_state(1)[0])


# what each range's values must be: (lowest allowed, whether the lowest itself is allowed,
# highest allowed or None); the shape (two numbers) and type are softglass.cli's overrides' to check
RANGE_LIMITS = dict(density=(0.0, False, None), temperature=(0.0, False, None),
                    quench_steps=(1, True, None), species_ratio=(0.0, True, 1.0),
                    sigma_scale=(0.0, False, None), epsilon_scale=(0.0, False, None))


FORMER_RANGE_LIMITS = dict(density=(0.0, False, None), quench_rate=(0.0, False, None),
                          fraction=(0.0, True, 1.0))


def check_ranges(ranges, names=None):
    """Refuse, before any cluster starts or glass is made, a parameter range that is not
    (low, high) with low <= high inside its allowed values: numpy would draw from a reversed
    uniform range without a word, and a reversed integer range fails in every worker, late.
    The messages name the constants: names {field: constant}, by default DENSITY_RANGE, ..."""
    limits = FORMER_RANGE_LIMITS if isinstance(ranges, FormerRanges) else RANGE_LIMITS
    for field, (lowest, closed, highest) in limits.items():
        name = (names or {}).get(field, field.upper() + "_RANGE")
        low, high = getattr(ranges, field)
        if low > high:
            raise SystemExit(f"error: {name}=({low}, {high}): reversed; expected (low, high) "
                             f"with low <= high, e.g. --{name}={high},{low}")
        if low < lowest or (low == lowest and not closed) or (highest is not None
                                                               and high > highest):
            allowed = (f"{'>=' if closed else '>'} {lowest}" if highest is None
                       else f"in [{lowest}, {highest}]")
            raise SystemExit(f"error: {name}=({low}, {high}): its values must be {allowed}")


def check_densest_box(n_atoms, ranges, sigma, r_onset, r_cutoff):
    """Refuse (ValueError) an n_atoms whose box is narrower than 2 r_cut at the densest,
    largest-sigma corner of the ranges: the minimum-image convention would break there."""
    from .potentials import absolute_cutoffs
    from .system import check_minimum_image
    r_cut = absolute_cutoffs(np.asarray(sigma) * ranges.sigma_scale[1], r_onset, r_cutoff)[1]
    check_minimum_image(n_atoms, ranges.density[1], r_cut)


# ================================ the files of the set ===========================================
def protocol_changes(old, new):
    """Why a stored glass's protocol is not this run's, for the message: the constants that
    differ, when the glass recorded them."""
    if not isinstance(old, dict):
        return "made without a recorded protocol (older code)"
    changes = []
    for script in sorted(set(old) | set(new)):
        was, now = old.get(script) or {}, new.get(script) or {}
        changes += [f"{name} {was.get(name, '(unset)')!r} -> {now.get(name, '(unset)')!r}"
                    for name in sorted(set(was) | set(now))
                    if not same_value(was.get(name), now.get(name))]
    return "made with " + (", ".join(changes) if changes else "another protocol hash")


def existing_glass_status(path, k, seed, n_atoms, protocol, digest):
    """(keep, why not): the finished file `path` of glass k is kept if it loads, validates, was
    drawn for this (seed, k) with this atom count and made with this protocol (digest: its
    hash). Otherwise `why` says what differs; (False, None) for a missing or unreadable file
    (simply made again)."""
    if not os.path.exists(path):
        return False, None
    try:
        snap = load_glass(path)
    except GlassFileError as err:
        print(f"  {err}: regenerating", flush=True)
        return False, None
    p = snap["parameters"]
    if len(snap["positions"]) != n_atoms:
        return False, f"{path}: has {len(snap['positions'])} atoms, not N_ATOMS={n_atoms}"
    if p.get("index") != k or p.get("draw_seed") != seed:
        return False, (f"{path}: made for index {p.get('index')}, SEED {p.get('draw_seed')}, "
                       f"not {k}, {seed}")
    if p.get("protocol_hash") != digest:
        return False, f"{path}: {protocol_changes(p.get('protocol'), protocol)}"
    return True, None


def glasses_to_make(paths, seed, n_atoms, protocol, digest, regenerate, data_dir):
    """Indices k of the glasses to make (paths[k]: glass k's file). Glasses made with other
    settings are remade only with regenerate; otherwise the run stops before touching them,
    naming what differs."""
    todo, differ = [], []
    for k, path in enumerate(paths):
        keep, why = existing_glass_status(path, k, seed, n_atoms, protocol, digest)
        if not keep:
            todo.append(k)
        if why:
            differ.append(why)
    if differ and not regenerate:
        shown = "\n  ".join(differ[:5]) + (f"\n  ... and {len(differ) - 5} more"
                                           if len(differ) > 5 else "")
        raise SystemExit(f"error: {len(differ)} glasses in {data_dir} were made with other "
                         f"settings:\n  {shown}\nRerun with the settings they were made with, "
                         f"use another --DATA_DIR, or pass --REGENERATE=True to remake them.")
    for why in differ:
        print(f"  {why}: regenerating", flush=True)
    return todo


def stray_files(data_dir, file_pattern, n_configs):
    """Files named like glasses of this set but not in it (left by an earlier, larger run): the
    next steps use only the files metadata.pkl lists, so these are reported, never deleted."""
    head, tail = file_pattern.split("{", 1)[0], file_pattern.rsplit("}", 1)[1]
    name = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail))
    return sorted(f for f in os.listdir(data_dir)
                  if name.fullmatch(f) and int(name.fullmatch(f)[1]) >= n_configs)


def remove_stale_temp_files(data_dir):
    """Temp files of writes cut short by a kill (atomic writes never leave a partial target)."""
    for tmp in glob.glob(os.path.join(data_dir, ".*.tmp")):
        os.unlink(tmp)


def summary(snap, path):
    """One metadata record: the file, its parameters, e_IS/N, max|F| and seconds."""
    p = snap["parameters"]
    return dict(file=os.path.basename(path), parameters=p,
                e_per_atom=float(snap["energy"] / len(snap["positions"])),
                max_force=float(p["max_force"]), seconds=float(p.get("wall_seconds", 0.0)))


def progress_line(k, rec):
    """Glass k's line as it finishes: its drawn parameters, e_IS/N, max|F|, seconds."""
    p = rec["parameters"]
    if "potential" in p:                    # another former: metal units
        drawn = (f"rho {p['density']:.5f} A^-3  quench {p['quench_rate']:.2e} K/s  "
                 f"x_0 {p['species_ratio']:.3f}  P {p['pressure_bar'] / 1e4:+.2f} GPa  "
                 f"e_IS/N {rec['e_per_atom']:.4f} eV")
    else:
        drawn = (f"rho {p['density']:.3f}  T {p['temperature']:.3f}"
                 f"  quench {p['quench_steps']}  x_A {p['species_ratio']:.3f}  "
                 f"sigma*{p['sigma_scale']:.3f}  eps*{p['epsilon_scale']:.3f}  "
                 f"e_IS/N {rec['e_per_atom']:.4f}")
    return (f"  glass {k:03d}: {drawn}  max|F| {rec['max_force']:.1e}"
            f"  {rec['seconds']:.1f}s" + (f"  (attempt {p['attempt']})" if p["attempt"] else ""))
