"""Compiled (numba) grid steps of :func:`layerclaims.metrics.clusters.density_modes`: the basin of every cell
under steepest ascent and the passes between touching basins. A 1-D grid of ``n`` cells is the ``n x 1`` grid
here; a cell's neighbours are the 8 around it (2 in 1-D). ``cache=True``: compiled once, the machine code kept
beside this file. The numpy statements these replace (same results, integer and exact float comparisons only)
are the oracle ``tests/oracles/density.py``, checked in ``tests/property/test_density_kernel_properties.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def basins(f: np.ndarray, n0: int, n1: int) -> np.ndarray:  # pragma: no cover - compiled
    """The summit each cell of the ``n0 x n1`` grid climbs to (flat index), ``-1`` where ``f <= 0``.

    A foreground cell (``f > 0``) steps to the highest of itself and its neighbours, ties going to the later
    cell, until it stays: its summit. (The order is that of a stable sort of the foreground by density; the
    background is below every foreground cell, so no foreground cell steps onto it.)"""
    size = n0 * n1
    step = np.empty(size, np.int64)
    for i in range(n0):
        for j in range(n1):
            c = i * n1 + j
            if f[c] <= 0.0:
                continue
            best = c
            fb = f[c]
            for ii in range(max(i - 1, 0), min(i + 2, n0)):
                for jj in range(max(j - 1, 0), min(j + 2, n1)):
                    v = ii * n1 + jj
                    fv = f[v]
                    if fv > fb or (fv == fb and v > best):
                        best = v
                        fb = fv
            step[c] = best
    out = np.full(size, -1, np.int64)
    path = np.empty(size, np.int64)
    for c in range(size):
        if f[c] <= 0.0 or out[c] >= 0:
            continue
        n = 0
        u = c
        while out[u] < 0 and step[u] != u:
            path[n] = u
            n += 1
            u = step[u]
        top = out[u] if out[u] >= 0 else u
        out[u] = top
        for k in range(n):
            out[path[k]] = top
    return out


@njit(cache=True)
def passes(
    f: np.ndarray, basin: np.ndarray, n0: int, n1: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Every pair of touching cells of two different basins (``basin`` ``>= 0``; each pair of cells once):
    ``(a, b, s)`` with ``a < b`` the basins and ``s = min(f)`` of the two cells (unsorted, one row per cell pair)."""
    size = n0 * n1
    ea = np.empty(4 * size, np.int64)
    eb = np.empty(4 * size, np.int64)
    es = np.empty(4 * size, np.float64)
    m = 0
    for i in range(n0):
        for j in range(n1):
            c = i * n1 + j
            bc = basin[c]
            if bc < 0:
                continue
            # half of the neighbourhood: (0, 1), (1, -1), (1, 0), (1, 1)
            for k in range(4):
                di = 0 if k == 0 else 1
                dj = 1 if k == 0 else k - 2
                ii, jj = i + di, j + dj
                if ii >= n0 or jj < 0 or jj >= n1:
                    continue
                v = ii * n1 + jj
                bv = basin[v]
                if bv < 0 or bv == bc:
                    continue
                ea[m] = min(bc, bv)
                eb[m] = max(bc, bv)
                es[m] = min(f[c], f[v])
                m += 1
    return ea[:m], eb[:m], es[:m]
