"""The grid steps of :func:`layerclaims.metrics.clusters.density_modes` as numpy statements (the form they had
before they were compiled): the reference :mod:`layerclaims.metrics._density_kernel` is tested against."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

# half of each cell's neighbourhood (so that every pair of touching cells is visited once), per dimension
NEIGHBOURS: dict[int, list[tuple[int, ...]]] = {1: [(1,)], 2: [(0, 1), (1, 0), (1, 1), (1, -1)]}


def shifted_pairs(shape: tuple[int, ...], off: tuple[int, ...]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Flat indices (a, b) of all cell pairs b = a + off inside the grid."""
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    src = tuple(slice(max(0, -o), s - max(0, o)) for o, s in zip(off, shape, strict=True))
    dst = tuple(slice(max(0, o), s - max(0, -o)) for o, s in zip(off, shape, strict=True))
    return idx[src].ravel(), idx[dst].ravel()


def basins(f: NDArray[np.float64], shape: tuple[int, ...]) -> NDArray[np.int64]:
    """Basin of every cell under steepest ascent: ranks from a stable sort of the foreground (f > 0) by density,
    each cell's best neighbour by rank, pointer jumping to the summits; -1 where f = 0."""
    fg = np.flatnonzero(f > 0.0)
    rank = np.full(f.size, -1, dtype=np.int64)
    rank[fg[np.argsort(f[fg], kind="stable")]] = np.arange(fg.size)
    best = np.arange(f.size)
    best_rank = rank.copy()
    for off in NEIGHBOURS[len(shape)]:
        a, b = shifted_pairs(shape, off)
        for u, v in ((a, b), (b, a)):
            better = rank[v] > best_rank[u]
            best[u[better]] = v[better]
            best_rank[u[better]] = rank[v[better]]
    ptr = best
    while True:
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            break
        ptr = nxt
    ptr[f <= 0.0] = -1
    return ptr


def saddles(
    f: NDArray[np.float64], basin: NDArray[np.int64], shape: tuple[int, ...]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """For every pair of touching basins (``basin`` 0..nb-1, -1 background) the highest pass, sorted by pair."""
    ea, eb, es = [], [], []
    for off in NEIGHBOURS[len(shape)]:
        a, b = shifted_pairs(shape, off)
        ba, bb = basin[a], basin[b]
        m = (ba >= 0) & (bb >= 0) & (ba != bb)
        if np.any(m):
            ea.append(np.minimum(ba[m], bb[m]))
            eb.append(np.maximum(ba[m], bb[m]))
            es.append(np.minimum(f[a[m]], f[b[m]]))
    if not ea:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    a_, b_, s_ = np.concatenate(ea), np.concatenate(eb), np.concatenate(es)
    order = np.lexsort((-s_, b_, a_))
    a_, b_, s_ = a_[order], b_[order], s_[order]
    first = np.ones(a_.size, dtype=bool)
    first[1:] = (a_[1:] != a_[:-1]) | (b_[1:] != b_[:-1])
    return a_[first], b_[first], s_[first]
