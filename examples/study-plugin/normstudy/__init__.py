"""A layerclaims study as a third party writes one: the norm of the hidden state at the first token of a sequence
against the mean norm at its other tokens (first-token "attention sinks" carry unusually large norms).

This module is the declaration: :data:`STUDY` and :class:`Config`, nothing heavy (no torch, no numpy), so that
``layerclaims claims`` and a claims file's checks stay fast. The method is in :mod:`normstudy.method`, the figure in
:mod:`normstudy.figures`; both are imported only when a run needs them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from layerclaims.errors import UsageError
from layerclaims.study import ClaimRead, Draw, GridRun, Progress, Robustness, Statistic, Study

TEXTS: tuple[str, ...] = (
    "The river ran slowly past the old mill and on into the quiet town below the hills.",
    "She opened the window, and the cold air of the early morning came into the little room.",
    "Every evening the fishermen pulled their boats up the beach and mended the torn nets by lamplight.",
    "A long line of carts waited at the gate while the guards argued about the price of salt.",
    "The children ran across the field toward the woods, shouting the names of their dogs.",
    "He kept the letters in a tin box under the bed and read them again every winter.",
    "When the rain stopped, the streets shone like glass and the market slowly filled with people.",
    "The old clock in the hall struck eleven, and somewhere upstairs a door closed softly.",
    "Most of the village had gone to the fair, so the baker closed his shop before noon.",
    "At the top of the tower the wind was so strong that the flags cracked like whips.",
    "The teacher wrote a single word on the board and waited for the class to fall silent.",
    "Two ships left the harbour at dawn, one for the islands and one for the northern coast.",
    "Her brother had painted the fence blue, although everyone had asked him to paint it white.",
    "The path climbed through pine trees to a lake that was still frozen in the middle of May.",
    "In the kitchen the soup was boiling over, and nobody seemed to notice the smell of smoke.",
    "The train was late again, so the passengers stood on the platform and stamped their feet.",
    "A small brown bird landed on the railing, looked at us for a moment, and flew away.",
    "They found the map in the library, folded inside a book about the history of bridges.",
    "The doctor walked from farm to farm through the snow, carrying his bag and a lantern.",
    "After the storm the beach was covered with seaweed, shells and pieces of broken wood.",
    "The musicians tuned their instruments while the hall slowly filled with quiet conversation.",
    "My grandmother planted the apple trees in the year the new road was built along the valley.",
    "The lights of the city appeared one by one as the plane came down through the clouds.",
    "On Sundays the square was empty except for a few pigeons and a man selling newspapers.",
)
"""The sequences: one per sentence, its first ``Config.length`` tokens (no BOS added)."""


@dataclass(frozen=True)
class Config:
    """The study's settings (a claim's ``[claim.settings]`` fields and ``--set norm.FIELD=VALUE``).

    ``length``: tokens per sequence (the first token and ``length - 1`` others). ``n_boot``: bootstrap resamples
    of the sequences (0: no interval). ``seed``: seeds the resamples. ``batch_size``: sequences per forward pass."""

    length: int = 8
    n_boot: int = 1000
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 3:
            raise UsageError(f"length={self.length!r}: a sequence needs its first token and at least 2 others; use 3+")
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, int) or self.n_boot < 0:
            raise UsageError(f"n_boot={self.n_boot!r}: give 0 or more resamples")


def _run(handle: Any, config: Config, progress: Progress | None = None) -> Any:
    from normstudy.method import run

    return run(handle, config, progress)


def _result() -> type:
    from normstudy.method import NormResult

    return NormResult


def _figures(result: Any, claims: Sequence[ClaimRead]) -> Mapping[str, Draw]:
    from normstudy.figures import figures

    return figures(result, claims)


LENGTHS = ("8", "6", "12")  # the robustness choice of length, the original first


def _robustness_run(handle: Any, job: GridRun) -> tuple[list[Any], dict[str, Any]]:
    """One run for the ``length`` choice over the claims' own settings (the original length keeps theirs)."""
    from normstudy.method import run

    original = job.values["length"] == LENGTHS[0]
    length = job.base.get("length", int(job.values["length"])) if original else int(job.values["length"])
    result = run(handle, Config(**{**job.base, **job.grid, "length": length}))
    return [result] * len(job.variants), {"forward_s": result.provenance["seconds"]}


STUDY = Study(
    name="norm",
    config=Config,
    statistics=(
        Statistic(
            "first_token_norm_ratio",
            False,
            "mean over sequences of |h(first token)| / mean |h(other tokens)| at a hidden state; 1 = no difference",
        ),
    ),
    layer_unit="hidden_state",
    run=_run,
    result=_result,
    figures=_figures,
    robustness=Robustness(
        choices={"length": LENGTHS, "layer": ("0", "-1", "+1")},
        offset="layer",
        run_choices=("length",),
        grid={"n_boot": 200},
        run=_robustness_run,
    ),
    minimums={"length": 3, "n_boot": 0, "seed": 0, "batch_size": 1},
    spec_prefix="N",
)
