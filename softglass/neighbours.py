"""Neighbour lists of the compiled phases: jax-md's lists, built on the host from the one
periodic pair finder (softglass.pairs).

  ordered_pairs,      the pairs in the layout of jax-md's OrderedSparse and Dense lists, built on
  dense_neighbours    the host by pairs.periodic_pairs
  NeighbourList       jax-md's neighbour-list functions for the compiled phases, built by a k-d tree
                      on the host ("kdtree") or by jax-md's brute force ("jax")
  allocate_neighbors  a list with a bucketed buffer (one compiled program per size class)
"""
from . import jax_config  # noqa: F401  (float64)

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax_md import partition, space

from .pairs import periodic_pairs


# ================================ jax-md's list layouts, built on the host =======================
def sorted_pair_keys(first, second, n_atoms, both_ways=False):
    """Sorted keys first * N + second of the pairs (first[k], second[k]) (both_ways: of
    (second[k], first[k]) as well): sorting one integer key orders pairs by `first`, then
    `second`, with neither an argsort nor the gathers that apply one. int32 while N^2 fits
    (N <= 46340). At N = 10^4 (1.1M keys) numpy's AVX-512 sort takes a few ms, where the two
    stable argsorts of 16-bit keys and the gathers it replaced took most of a Dense rebuild
    (docs/report.md 13.4)."""
    kind = np.int32 if n_atoms * n_atoms < 2 ** 31 else np.int64
    first, second, n = np.asarray(first, kind), np.asarray(second, kind), kind(n_atoms)
    key = first * n + second
    if both_ways:
        key = np.concatenate([key, second * n + first])
    key.sort()
    return key


def ordered_pairs(position, box, r_list, capacity=None):
    """The pairs jax-md's brute-force OrderedSparse list holds, in its order: rows (receiver j,
    sender i), j < i, |r_ij| < r_list under periodic boundaries, sorted by sender then receiver,
    padded with N up to `capacity` (None: exactly the pairs found); and how many there are (more
    than capacity: overflow). Found by scipy's periodic k-d tree in float64: a pair within
    rounding of r_list may be kept or not, which changes no force (it lies a skin beyond the
    potential's cut-off)."""
    pos = np.asarray(position, np.float64)
    n = len(pos)
    pairs = periodic_pairs(pos, float(box), float(r_list))
    capacity = len(pairs) if capacity is None else int(capacity)
    key = sorted_pair_keys(pairs.max(axis=1), pairs.min(axis=1), n)[:capacity]
    idx = np.full((2, capacity), n, np.int32)
    idx[1, :len(key)], idx[0, :len(key)] = np.divmod(key, n)
    return idx, np.int32(len(pairs))


def dense_neighbours(position, box, r_list, capacity=None):
    """The rows jax-md's brute-force Dense list holds: row i lists the atoms j != i with
    |r_ij| < r_list under periodic boundaries in increasing order (every pair in both rows),
    padded with N up to `capacity` columns (None: the longest row); and the longest row's length
    (more than capacity: overflow). The same k-d tree search as ordered_pairs; each pair enters
    as (i, j) and (j, i), ordered by row, then column (sorted_pair_keys); row i's entries start
    where key i * N would be inserted, and an entry's slot is its place in its row."""
    pos = np.asarray(position, np.float64)
    n = len(pos)
    key = sorted_pair_keys(*periodic_pairs(pos, float(box), float(r_list)).T, n, both_ways=True)
    kind = key.dtype.type
    starts = np.searchsorted(key, np.arange(n + 1, dtype=kind) * kind(n))
    counts = np.diff(starts)
    longest = int(counts.max(initial=0))
    capacity = longest if capacity is None else int(capacity)
    offset = np.arange(len(key), dtype=kind) - np.repeat(starts[:-1].astype(kind), counts)  # slot
    row = np.repeat(np.arange(n, dtype=kind), counts)
    col = key - row * kind(n)
    idx = np.full((n, capacity), n, np.int32)
    if capacity >= longest:             # every entry fits: one flat scatter
        idx.reshape(-1)[row * kind(capacity) + offset] = col
    else:                               # overflow: keep each row's first `capacity`
        kept = offset < capacity
        idx[row[kept], offset[kept]] = col[kept]
    return idx, np.int32(longest)


KDTREE = "kdtree"      # marks a list built on the host (a static field: part of jit's key)
HOST_BUILD = {partition.OrderedSparse: ordered_pairs, partition.Dense: dense_neighbours}


class NeighbourList:
    """jax-md's neighbour-list functions for the cubic box (allocate; update_or_stale inside
    the compiled loop; rebuild between chunks). Its kind
    chooses how a list is built: "jax", jax-md's brute force, O(N^2) in time and memory; or
    "kdtree", ordered_pairs (dense_neighbours) on the host, O(N log N): the compiled loop checks,
    as jax-md does, whether an atom moved more than skin/2 since the last build, and if so stops
    there for run_phase to rebuild the list on the host and go on. Either way the list is
    jax-md's NeighborList with the same pairs in the same order, so the energy functions use it
    unchanged and the glass is the same bit for bit (tests/test_glass_physics.py,
    test_force_kernel.py); its format (OrderedSparse
    or Dense) is the force kernel's (fmt) at allocation, and update_or_stale and rebuild follow the kind
    and format of list they are given."""

    def __init__(self, box, r_list, skin, kind=KDTREE, fmt=None, capacity_margin=1.2):
        """kind "kdtree" or "jax"; fmt the jax-md format new lists get (OrderedSparse or Dense: the
        force kernel's, forces.list_format); capacity_margin the head-room of a new buffer above
        the entries found (allocate_neighbors). Inside a compiled phase only box, r_list and skin
        count: a list's kind and format travel with the list."""
        self.displacement, _ = space.periodic(box)
        self.box, self.r_list, self.skin = box, r_list, skin
        self.kind, self.fmt, self.capacity_margin = kind, fmt, capacity_margin
        self.metric_sq = jax.vmap(lambda a, b: jnp.sum(self.displacement(a, b) ** 2))
        self.threshold_sq = (skin / jnp.float32(2)) ** 2        # jax-md's own expression

    def jax_md(self, fmt):
        return partition.neighbor_list(self.displacement, self.box, self.r_list, self.skin,
                                       format=fmt, disable_cell_list=True,
                                       capacity_multiplier=1.0)

    def allocate(self, position):
        fmt = self.fmt
        if fmt not in HOST_BUILD:
            raise ValueError(f"neighbour-list format {fmt!r}: expected OrderedSparse or Dense")
        if self.kind == "jax":
            return self.jax_md(fmt).allocate(position)
        if self.kind != KDTREE:
            raise ValueError(f"NEIGHBOUR_LIST={self.kind!r}: expected 'kdtree' or 'jax'")
        idx, n_found = HOST_BUILD[fmt](position, self.box, self.r_list + self.skin)
        return partition.NeighborList(
            idx=jnp.asarray(idx), reference_position=position,
            error=partition.PartitionError(jnp.zeros((), jnp.uint8)), cell_list_capacity=None,
            max_occupancy=int(n_found), format=fmt, cell_size=None,
            cell_list_fn=None, update_fn=KDTREE)

    def update_or_stale(self, position, nbrs):
        """One step of the compiled loop: (list, stale). A jax-md list is updated there (jax-md's
        brute force rebuilds it when an atom has moved skin/2) and is never stale; a k-d tree list
        is returned as it is, stale when an atom has moved skin/2, and the loop stops so that
        run_phase rebuilds it on the host (rebuild) before the next step: the same list at the
        same step as a rebuild inside the loop, so the same trajectory. No host callback runs
        inside a compiled loop: one (jax.pure_callback) deadlocked on one pinned core at 10^4
        atoms (docs/report.md 13.4)."""
        if nbrs.update_fn != KDTREE:
            return self.jax_md(nbrs.format).update(position, nbrs), jnp.bool_(False)
        moved = jnp.any(self.metric_sq(position, nbrs.reference_position) > self.threshold_sq)
        return nbrs, moved

    def rebuild(self, position, nbrs):
        """On the host, between compiled chunks: the list of `position` in the format and buffer
        of nbrs, built at that size (one copy to the device), or a larger buffer if its pairs no
        longer fit."""
        capacity = nbrs.idx.shape[1]
        if nbrs.update_fn == KDTREE:
            idx, n_found = HOST_BUILD[nbrs.format](position, self.box, self.r_list + self.skin,
                                                    capacity)
            if n_found <= capacity:
                return dataclasses.replace(nbrs, idx=jnp.asarray(idx), reference_position=position)
        return allocate_neighbors(self, position, capacity)



# ================================ buffers =====================================
def bucket(n_pairs):
    """Round a pair capacity up to a coarse geometric grid (ratio 2^(1/4)), so glasses of similar
    size share one compiled program instead of compiling one each."""
    k = np.ceil(4 * np.log2(max(n_pairs, 1024)))
    return int(1024 * np.ceil(2 ** (k / 4) / 1024))


def _row_bucket(n_neighbours, n_atoms):
    """The same for the rows of a Dense list: neighbours per atom rounded up to a multiple of 8 on
    a finer grid (ratio 2^(1/8): every slot of every row is computed), at most N - 1 (jax-md's
    limit; no atom has more neighbours)."""
    k = np.ceil(8 * np.log2(max(n_neighbours, 32)))
    return int(min(n_atoms - 1, 8 * np.ceil(2 ** (k / 8) / 8)))


def capacity_for(nbrs, n_slots):
    """The bucketed buffer for n_slots entries of a list like nbrs (pairs, or neighbours per
    atom)."""
    if nbrs.format is partition.Dense:
        return _row_bucket(n_slots, nbrs.idx.shape[0])
    return bucket(n_slots)


def allocate_neighbors(neighbor_fn, positions, capacity=None):
    """Build a neighbour list whose buffer has a bucketed capacity (a static shape under jit).

    jax-md sizes the buffer from the pairs found times a multiplier; we build it at exact size
    and pad the pair buffer (a Dense list: each row; index N marks an empty slot, as in jax-md) to
    the bucketed capacity.
    The closures jax-md stores as static fields are dropped so the list is a plain pytree whose
    jit cache key depends only on its shapes.
    """
    nbrs = neighbor_fn.allocate(positions)
    margin = neighbor_fn.capacity_margin
    if capacity is None:
        capacity = capacity_for(nbrs, int(np.ceil(nbrs.max_occupancy * margin)))
    n_found = nbrs.idx.shape[1]
    if capacity < n_found:
        capacity = capacity_for(nbrs, int(np.ceil(n_found * margin)))
    idx = jnp.asarray(np.pad(np.asarray(nbrs.idx), ((0, 0), (0, capacity - n_found)),
                             constant_values=len(positions)))        # numpy: no compile per size
    return dataclasses.replace(nbrs, idx=idx, max_occupancy=capacity, cell_list_fn=None,
                               update_fn=nbrs.update_fn if nbrs.update_fn == KDTREE else None)


def describe_buffer(nbrs):
    """A list's buffer in words: pairs (OrderedSparse) or neighbours per atom (Dense)."""
    unit = "neighbours per atom" if nbrs.format is partition.Dense else "pairs"
    return f"{nbrs.idx.shape[1]} {unit}"

