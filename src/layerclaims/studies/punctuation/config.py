"""Study A settings (:class:`Config`) and the one place where every random stream of the study is derived."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from layerclaims.errors import UsageError
from layerclaims.studies.punctuation.marks import BEFORE, KINDS, MARK_SETS

# Below these the statistic is "not evaluated": a count of clusters carried by groups (and a within-group slope)
# needs room for two groups of mark_clusters.MIN_SUPPORT marks and a density of the marks' row profiles (30 marks);
# a correlation over pairs needs 10 marks (45 pairs).
MIN_MARKS_COUNT = 30
MIN_MARKS_R = 10
DEFAULT_DETAIL_LAYERS: tuple[int, ...] = (1,)
VARIANTS: tuple[str, ...] = ("standardised", "drop-top1", "drop-top3")  # every study-A claim is also read on these


@dataclass(frozen=True)
class Config:
    """Study A settings; the defaults are the original notebook's method.

    ``corpus``: a registry name or a file path; ``line_endings``: ``"crlf"`` tokenises the text as served (the
    original's input: CRLF, header kept), ``"lf"`` the body only (:func:`layerclaims.data.load_study_text`). ``n``
    marks per kind, ``selection`` ``"first"`` (notebook) or ``"random"`` (write-up, with ``seed``). ``marks``:
    ``"original"`` (``,`` / ``.``) or ``"extended"``. ``start``: first token index searched for marks. ``layers``:
    hidden-state indices to analyse (None = all). ``bins``, ``z_threshold``, ``mi_estimator`` (``"plugin"``, the
    original, or ``"miller-madow"``): :func:`~layerclaims.metrics.information.pairwise_mi_cov`'s. ``n_boot``:
    bootstrap resamples over marks for r and the per-layer means (every layer).
    ``detail_layers``: the claim layers mapped to this model, where claims read counts, intervals and controls (None
    = ``DEFAULT_DETAIL_LAYERS``). ``reads``: what the run's claims read, ``(kind, layer, statistic)`` triples
    (layer None: over layers): a detail layer computes only the sides read (``result.DETAIL_SIDE``), the dimension
    variants' MI at every block output only where A7's MI trend is read (else at the first and last, for its
    ratio); None = everything. At the detail layers: ``n_boot_clusters`` resamples of marks, each refitting the mark
    groups; ``n_perm`` Mantel permutations for the pooled r's p-value; ``cluster_n_boot`` stability resamples of
    the literal count; ``control``: the Gaussian surrogate of the marks, over ``control_draws`` surrogates that share
    the ``n_boot_clusters`` resamples (decided on as many resamples as its claim); ``detect_sims`` simulations per
    separation of the detection limit (0: not computed).
    ``block_window``: marks at most this many tokens apart read some of the same tokens (the 20 before a mark) and
    are resampled together by every bootstrap (0: each mark its own block).
    ``meaningful_cov_separation``, ``meaningful_mi_separation``: the separation of two groups of marks (loading
    difference on a shared direction, relative to the loading: :mod:`layerclaims.metrics.detectability`) that a
    count must detect with 80% power for "1 cluster" to say "no groups". Defaults: 0.2 for the covariance (at loading
    0.7, groups 0.10-0.15 noise sd apart, i.e. 0.14-0.21 relative, have mean covariances 4.6-5.2 within-group sd
    apart and a two-component mixture beats one by BIC: real groups), 0.4 for MI (0.3 noise sd at loading 0.7,
    where the marks' mean MI separates by 6.4 sd). ``dimensions``: the mark vectors as they are (``"all"``) or one
    of :data:`VARIANTS`, before any statistic (the claims show the variants beside them whatever this is).
    """

    corpus: str = "heart-of-darkness"
    n: int = 250
    selection: Literal["first", "random"] = "first"
    seed: int = 0
    marks: Literal["original", "extended"] = "original"
    layers: tuple[int, ...] | None = None
    bins: int = 15
    z_threshold: float = 5.0
    n_boot: int = 1000
    n_boot_clusters: int = 200
    n_perm: int = 1000
    cluster_n_boot: int = 20
    detail_layers: tuple[int, ...] | None = None
    reads: tuple[tuple[str, int | None, str], ...] | None = None
    control: bool = True
    control_draws: int = 4
    meaningful_cov_separation: float = 0.2
    meaningful_mi_separation: float = 0.4
    detect_sims: int = 10
    block_window: int = BEFORE
    dimensions: Literal["all", "standardised", "drop-top1", "drop-top3"] = "all"
    batch_size: int = 64
    start: int = 400
    line_endings: Literal["crlf", "lf"] = "crlf"
    mi_estimator: Literal["plugin", "miller-madow"] = "plugin"
    # what the run's checks read before any weights load (layerclaims.validate): the mark characters per kind,
    # counted in the corpus, and the fewest marks the cluster counts are evaluated on
    MARK_SETS: ClassVar[dict[str, dict[str, tuple[str, ...]]]] = MARK_SETS
    MIN_MARKS_COUNT: ClassVar[int] = MIN_MARKS_COUNT

    def __post_init__(self) -> None:
        if self.line_endings not in ("crlf", "lf"):
            raise UsageError(f"line_endings={self.line_endings!r}: use 'crlf' (the text as served) or 'lf' (body)")
        if self.mi_estimator not in ("plugin", "miller-madow"):
            raise UsageError(f"mi_estimator={self.mi_estimator!r}: use 'plugin' (the original) or 'miller-madow'")
        if self.selection not in ("first", "random"):
            raise UsageError(f"selection={self.selection!r}: use 'first' or 'random'")
        if self.marks not in MARK_SETS:
            raise UsageError(f"marks={self.marks!r}: use 'original' or 'extended'")
        if self.bins < 2 or self.n_boot < 0 or self.n_boot_clusters < 0 or self.n_perm < 0:
            raise UsageError("bins must be >= 2 and the bootstrap counts >= 0")
        if self.detect_sims < 0 or not (self.meaningful_cov_separation > 0 and self.meaningful_mi_separation > 0):
            raise UsageError("detect_sims must be >= 0 and the meaningful separations > 0 (noise sd units)")
        if self.dimensions not in ("all", "standardised", "drop-top1", "drop-top3"):
            raise UsageError(f"dimensions={self.dimensions!r}: use 'all', 'standardised', 'drop-top1' or 'drop-top3'")
        if self.control_draws < 1:
            raise UsageError(f"control_draws={self.control_draws}: use 1 or more surrogate draws")
        if self.block_window < 0:
            raise UsageError(f"block_window={self.block_window}: use a number of tokens >= 0 (0: marks one by one)")
        for name in ("layers", "detail_layers"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(x) for x in value))
        if self.reads is not None:
            object.__setattr__(self, "reads", tuple(_read(r) for r in self.reads))


def _read(r: object) -> tuple[str, int | None, str]:
    """One ``reads`` triple, checked (kind None: internal, as ``measure`` reads it; layer None: over layers)."""
    if not isinstance(r, list | tuple) or len(r) != 3 or (r[0] or "internal") not in KINDS:
        raise UsageError(f"reads: {r!r} is not a (kind, layer, statistic) triple with kind in {KINDS}")
    return str(r[0] or "internal"), None if r[1] is None else int(r[1]), str(r[2])


@dataclass(frozen=True)
class KindSeeds:
    """Independent random streams of one kind, all children of ``SeedSequence(config.seed)``."""

    selection: int
    weights: int  # mark multiplicities of the r / means bootstrap (every layer)
    draw: int  # the pairs kept for the all-layers figure
    layer: np.random.SeedSequence  # parent of the per-entry streams (:func:`entry_seeds`)


def kind_seeds(seed: int, kind: str) -> KindSeeds:
    """The streams of ``kind``: ``SeedSequence(seed).spawn(len(KINDS))[k].spawn(4)`` (no offsets between streams)."""
    child = np.random.SeedSequence(seed).spawn(len(KINDS))[KINDS.index(kind)]
    sel, weights, draw, layer = child.spawn(4)
    return KindSeeds(_int(sel), _int(weights), _int(draw), layer)


def entry_seeds(parent: np.random.SeedSequence, entry: int) -> dict[str, int]:
    """The streams of one entry (layer): clusters, mark resamples, Mantel permutations, the Gaussian control, the
    detection-limit simulations (a new stream is appended: the earlier ones keep their values)."""
    names = ("clusters", "resamples", "mantel", "control", "detect")
    child = np.random.SeedSequence(parent.entropy, spawn_key=(*parent.spawn_key, entry))
    return {name: _int(s) for name, s in zip(names, child.spawn(len(names)), strict=True)}


def _int(ss: np.random.SeedSequence) -> int:
    return int(ss.generate_state(1, dtype=np.uint32)[0])
