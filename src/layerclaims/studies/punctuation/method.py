"""Study A's run: the steps of :mod:`layerclaims.studies.punctuation` in order, and the result's provenance."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from layerclaims import results
from layerclaims.studies.punctuation.analysis import start_kind
from layerclaims.studies.punctuation.config import DEFAULT_DETAIL_LAYERS, Config, kind_seeds
from layerclaims.studies.punctuation.explain import explain_kind
from layerclaims.studies.punctuation.extraction import detail_entries, entries, extract_marks
from layerclaims.studies.punctuation.marks import KINDS
from layerclaims.studies.punctuation.result import STUDY, KindResult, PunctuationResult
from layerclaims.studies.punctuation.scan import study_marks


def run(handle: Any, config: Config | None = None, progress: Callable[[str], None] | None = None) -> PunctuationResult:
    """Run study A on a loaded model (``layerclaims.models.load_model``) with ``config``; ``progress`` (optional) is
    called with short messages such as ``"punctuation internal: layer 5 (6 of 32)"``."""
    import torch

    config = config or Config()
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    scanned, corpus = study_marks(handle.tokenizer, config)
    t_tok = time.perf_counter() - t0
    layers, post_norm = entries(handle, config.layers)
    wanted = config.detail_layers if config.detail_layers is not None else DEFAULT_DETAIL_LAYERS
    detail = detail_entries(layers, post_norm, wanted, int(handle.n_blocks))
    tm = {"forward_s": 0.0, "analysis_s": 0.0}
    steps: dict[str, float] = {}
    X = {}
    for kind in KINDS:  # the forward passes first: torch's threads do not compete with the workers' tasks
        say(f"punctuation {kind}: forward pass over {scanned.kinds[kind].selected.size} marks")
        t1 = time.perf_counter()
        X[kind] = extract_marks(handle, scanned.kinds[kind].windows, layers, post_norm, config.batch_size)
        tm["forward_s"] += time.perf_counter() - t1
    finish: dict[str, Callable[[], KindResult]] = {}
    t2 = time.perf_counter()
    for kind in KINDS:  # one kind's detail tasks run in the workers while the next kind's layers are analysed here
        scan = scanned.kinds[kind]
        finish[kind] = start_kind(
            X.pop(kind),
            config,
            seeds=kind_seeds(config.seed, kind),
            layers=layers,
            post_norm=post_norm,
            detail=detail,
            kind=kind,
            counts={c: int(getattr(scan, c)) for c in ("found", "skipped_start", "skipped_end", "usable")},
            marks=scan.selected,
            timings=steps,
            progress=progress,
        )
    per_kind = {
        kind: explain_kind(finish[kind](), scanned.kinds[kind].windows, scanned.n_tokens, handle.tokenizer)
        for kind in KINDS
    }
    tm["analysis_s"] += time.perf_counter() - t2
    stopped = ", stopped once the selection was complete: n_tokens and marks_found cover that"
    return PunctuationResult(
        model=handle.name,
        n_blocks=int(handle.n_blocks),
        layers=layers,
        post_norm=post_norm,
        internal=per_kind["internal"],
        terminal=per_kind["terminal"],
        config={f: _listed(getattr(config, f)) for f in config.__dataclass_fields__},
        provenance=results.provenance(
            study=STUDY,
            **results.model_provenance(handle),
            corpus=corpus,
            n_tokens=int(scanned.n_tokens),
            tokenization="tokenizer.encode(text, add_special_tokens=False): no BOS/EOS added; in chunks (tokens.py)"
            + ("" if scanned.complete else stopped),
            selection=config.selection,
            seed=config.seed,
            marks=config.marks,
            n=config.n,
            marks_found={kind: int(scanned.kinds[kind].found) for kind in KINDS},
            mi_estimator=config.mi_estimator,
            norm_entries={
                "last_hidden_state_post_norm": bool(post_norm.any()),
                "pre_norm_entries": [int(x) for x in layers[~post_norm]],
                "post_norm_entries": [int(x) for x in layers[post_norm]],
                "note": "entry n_blocks with post_norm=False is the last block's output before the final norm",
            },
            timings={"tokenize_s": t_tok, **tm, "analysis_steps": steps},
            threads=int(torch.get_num_threads()),
        ),
    )


def _listed(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v
