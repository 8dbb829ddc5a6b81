"""Study B: category grouping and representational similarity of Q, K and V (``../shared/docs/claims.md``, study B;
notebooks ``part5_layer_semanticGroupsRSA`` and ``part5_layer_CClayerGroupingRSA``).

Q, K and V of the word's last token are read at every block by :func:`layerclaims.extract.qkv` (GPT-2:
``attn.c_attn``'s output split in three, bias included, as the original's hook; Llama: ``q_proj``, ``k_proj``,
``v_proj``, before RoPE). With grouped-query attention K and V are ``n_kv_heads * head_dim`` wide; repeating every
K/V head ``r`` times, as attention does, multiplies every dot product and squared norm by ``r``, so no cosine changes.

Uncertainty: one set of seeded bootstrap resamples of the words, stratified by category (at least 2 distinct words
per category, so selectivity is always defined), serves every statistic at every block; copy pairs excluded; 95%
percentile intervals. One-sided p-values: Mantel for RSA, label permutation for selectivity; ``min(selectivity Q,
K) > 1``'s is the larger of the two (intersection-union). Split words are listed in the result (``split_words``).

This module is the declaration (no torch, no numpy); the method is in :mod:`.analysis`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from layerclaims.errors import UsageError
from layerclaims.study import ClaimRead, Draw, GridRun, Progress, Robustness, Statistic, Study

CATEGORIES: dict[str, tuple[str, ...]] = {
    "space": tuple("galaxy asteroid comet cosmos space sun planet moon star orbit".split()),
    "furniture": tuple("ceiling sofa couch carpet door window lamp chair table rug bed floor wall".split()),
    "fruit": tuple("pear grape banana cherry peach apple seed jelly orange lime fruit".split()),
}
"""The original's three categories, in its order (space 10, interior/furniture 13, fruit 11)."""

WORDS: tuple[str, ...] = tuple(w for words in CATEGORIES.values() for w in words)
"""The 34 target words, in the original's order."""

LABELS: tuple[str, ...] = tuple(cat for cat, words in CATEGORIES.items() for _ in words)
"""The category of each word of :data:`WORDS`."""

TEMPLATE = "The next word is {w}"
PROJECTIONS: tuple[str, ...] = ("q", "k", "v")
PAIRS: tuple[str, ...] = ("qk", "qv", "kv")
LEVEL = 0.95

MultiToken = Literal["last", "mean"]


# ---------------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Config:
    """What to run. The defaults are the original notebook's method.

    ``words``/``labels``: the target words and one category label per word (``labels`` may be left out only with
    the default words). ``template``: the prompt, with ``{w}`` once where the word goes. ``blocks``: one 0-based
    block, several, or None for all. ``multi_token``: the vector of a split word, ``"last"`` (its last token, as
    the original's ``[:, -1]``) or ``"mean"`` (over its tokens). ``add_bos``: False tokenises without special
    tokens, as the original (and as GPT-2's and SmolLM2's tokenizers do); True prepends ``bos_token_id``.
    ``n_boot``: bootstrap resamples (0: no intervals); ``n_perm``: permutations per test (0: no p-values);
    ``seed``: seeds both. ``n_control_seeds``: random projections of the block input per control (0: none).
    ``tests``: which permutation tests run at every block, ``"claims"`` (Mantel Q-K, label permutation of Q and K)
    or ``"all"`` (also Mantel Q-V, K-V and V's selectivity: about 5 s more on a 30-block model).
    ``batch_size``: prompts per forward pass.
    """

    words: tuple[str, ...] = WORDS
    labels: tuple[str, ...] | None = None
    template: str = TEMPLATE
    blocks: int | tuple[int, ...] | None = None
    multi_token: MultiToken = "last"
    add_bos: bool = False
    n_boot: int = 1000
    n_perm: int = 10_000
    seed: int = 0
    n_control_seeds: int = 8
    tests: Literal["claims", "all"] = "claims"
    batch_size: int = 64

    def __post_init__(self) -> None:
        words = _as_str_tuple(self.words, "words")
        if self.labels is None and words != WORDS:
            raise UsageError("labels are needed with a custom word list: pass labels=(one category per word, in order)")
        labels = LABELS if self.labels is None else _as_str_tuple(self.labels, "labels")
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "labels", labels)
        if self.blocks is not None and not isinstance(self.blocks, int):
            object.__setattr__(self, "blocks", tuple(self.blocks))
        _check_words(words, labels)
        if self.template.count("{w}") != 1:
            raise UsageError(f"template {self.template!r} must contain '{{w}}' exactly once, where the word goes")
        if self.tests not in ("claims", "all"):
            raise UsageError(f"tests must be 'claims' or 'all', got {self.tests!r}")
        if self.multi_token not in ("last", "mean"):
            raise UsageError(f"multi_token must be 'last' or 'mean', got {self.multi_token!r}")
        for name, low in (("n_boot", 0), ("n_perm", 0), ("n_control_seeds", 0), ("batch_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                what = "a positive integer" if low else "a non-negative integer (0 skips it)"
                raise UsageError(f"{name} must be {what}, got {value!r}")

    @property
    def word_labels(self) -> tuple[str, ...]:
        """``labels``, never None once ``__post_init__`` has filled in the default words'."""
        assert self.labels is not None
        return self.labels


def _as_str_tuple(values: Any, name: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise UsageError(f"{name} must be a list of strings, got one string {values!r}: wrap it in a list")
    out = tuple(values)
    bad = [v for v in out if not isinstance(v, str) or not v.strip()]
    if bad:
        raise UsageError(f"{name} must be non-empty strings, got {bad[:3]!r}")
    return out


def _check_words(words: tuple[str, ...], labels: tuple[str, ...]) -> None:
    """The checks that keep every statistic defined (UsageError naming the problem)."""
    if not words:
        raise UsageError("the word list is empty: give at least 2 words in each of at least 2 categories")
    if len(labels) != len(words):
        raise UsageError(f"got {len(labels)} labels for {len(words)} words: give one category label per word")
    dupes = sorted(w for w, c in Counter(words).items() if c > 1)
    if dupes:
        raise UsageError(f"duplicate words {dupes!r}: each word may appear once (its self-pair is not a pair)")
    sizes = Counter(labels)
    if len(sizes) < 2:
        raise UsageError(
            f"only one category ({next(iter(sizes))!r}): selectivity compares within- and between-category "
            "similarity, so give at least 2 categories"
        )
    single = [c for c, n in sizes.items() if n < 2]
    if single:
        raise UsageError(f"categories {single!r} have one word each: give every category at least 2 words")


# ---------------------------------------------------------------------------------------------------- the plug-in


def _run(handle: Any, config: Config, progress: Progress | None = None) -> Any:
    from layerclaims.studies.qk.analysis import run

    return run(handle, config)


def _result() -> type:
    from layerclaims.studies.qk.analysis import QKResult

    return QKResult


def _figures(result: Any, claims: Sequence[ClaimRead]) -> Mapping[str, Draw]:
    from layerclaims.studies.qk.figures import figures

    return figures(result, claims)


def _robustness_run(handle: Any, job: GridRun) -> tuple[list[Any], dict[str, Any]]:
    from layerclaims.studies.qk.robustness import run_variants

    return run_variants(handle, job)


def categories(value: Any) -> dict[str, tuple[str, ...]]:
    """The claim-file shorthand ``categories = { space = ["moon", ...], fruit = [...] }``: ``words`` in order and
    ``labels``, one category per word."""
    if not isinstance(value, dict) or not value:
        raise UsageError(
            "categories is not a table of category = [words]",
            fix='write categories = { animals = ["cat", "dog"], tools = ["saw", "drill"] }',
        )
    words: list[str] = []
    labels: list[str] = []
    for category, members in value.items():
        if not isinstance(members, list) or not all(isinstance(w, str) and w.strip() for w in members):
            raise UsageError(
                f"category {category}: {members!r} is not a list of words",
                fix=f'write {category} = ["word", "word", ...]',
            )
        words.extend(members)
        labels.extend([category] * len(members))
    return {"words": tuple(words), "labels": tuple(labels)}


TEMPLATES: dict[str, str] = {
    "original": TEMPLATE,
    "next": "The word that comes next is {w}",
    "here": "Here is the next word: {w}",
}
"""The prompt templates of the robustness grid's ``template`` choice."""


def _warm() -> None:
    from layerclaims.studies.qk.analysis import warm

    warm()


STUDY = Study(
    name="qk",
    config=Config,
    statistics=(
        Statistic("k_minus_q_mean_cosine", False, "mean off-diagonal cosine of K minus that of Q at a block"),
        Statistic("rsa_qk", False, "RSA (Pearson r of the cosine matrices' upper triangles) of Q and K at a block"),
        Statistic("min_selectivity_qk", False, "min(selectivity of Q, selectivity of K) at a block"),
        Statistic("min_rsa_qk_over_blocks", True, "the smallest RSA of Q and K over every block"),
        Statistic("fraction_blocks_v_most_selective", True, "the fraction of blocks where V is the most selective"),
    ),
    layer_unit="block",
    run=_run,
    result=_result,
    figures=_figures,
    robustness=Robustness(
        choices={
            "split_word": ("last", "mean"),
            "template": tuple(TEMPLATES),
            "vectors": ("raw", "centred"),
            "similarity": ("cosine", "pearson"),
            "rsa": ("pearson", "spearman"),
            "block": ("0", "-1", "+1"),
        },
        offset="block",
        run_choices=("template", "split_word"),
        grid={"n_boot": 200, "n_perm": 1000},
        run=_robustness_run,
        notes=(
            "spearman RSA: Pearson r of the full-sample ranks of the off-diagonal entries; its bootstrap "
            "resamples those ranks (not re-ranked per resample)",
        ),
    ),
    shorthands={"categories": categories},
    index_settings={"blocks": "block"},
    minimums={"seed": 0, "n_boot": 0, "n_perm": 0, "batch_size": 1},
    spec_prefix="B",
    warm=_warm,
)
