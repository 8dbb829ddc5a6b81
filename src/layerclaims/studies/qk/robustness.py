"""Study B in the robustness grid: the word vectors extracted once per (template, split-word policy), every analysis
variant derived from them. Spearman RSA is Pearson r of the ranks of each matrix's off-diagonal entries (the Mantel
test permutes items, which ranks commute with); its bootstrap resamples those full-sample ranks (``STUDY``'s notes)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from layerclaims.metrics.order import average_ranks
from layerclaims.studies.qk import TEMPLATES, Config
from layerclaims.studies.qk.analysis import analyse, check_model, extract, make_result, similarity_matrices
from layerclaims.study import GridRun


def rank_offdiagonal(S: np.ndarray) -> np.ndarray:
    """Each matrix's off-diagonal entries replaced by their average ranks (symmetric); the diagonal by n + 1."""
    iu, ju = np.triu_indices(S.shape[-1], 1)
    out = np.full(S.shape, float(iu.size + 1))
    r = average_ranks(S[:, iu, ju])
    out[:, iu, ju] = r
    out[:, ju, iu] = r
    return out


def run_variants(handle: Any, job: GridRun) -> tuple[list[Any], dict[str, Any]]:
    """One extraction for the run's ``template`` and ``split_word`` at every block, one result per analysis variant;
    the claims' own settings (their words, template, ...) are the original path, a choice that departs overrides
    them."""
    check_model(handle)
    options: dict[str, Any] = {**job.base, **job.grid}
    if job.values["template"] != "original" or "template" not in job.base:
        options["template"] = TEMPLATES[job.values["template"]]
    if job.values["split_word"] != "last" or "multi_token" not in job.base:
        options["multi_token"] = job.values["split_word"]
    config = Config(**options)
    blocks = handle.check_blocks(None)
    t0 = time.perf_counter()
    prompts, vecs = extract(handle, config, blocks)
    t1 = time.perf_counter()
    keys = [(v["vectors"], v["similarity"], v["rsa"]) for v in job.variants]
    done: dict[tuple[str, str, str], Any] = {}
    for key in dict.fromkeys(keys):  # each distinct variant once
        sims = similarity_matrices(vecs, key[0], key[1])
        stats = analyse(sims, config.word_labels, blocks, config)
        if key[2] == "spearman":
            ranked = analyse({k: rank_offdiagonal(S) for k, S in sims.items()}, config.word_labels, blocks, config)
            stats["rsa"], stats["rsa_by_category"] = ranked["rsa"], ranked["rsa_by_category"]
            stats["over_blocks"]["min_rsa_qk_over_blocks"] = ranked["over_blocks"]["min_rsa_qk_over_blocks"]
        done[key] = make_result(handle, config, blocks, prompts, vecs, sims, stats, {})
    return [done[key] for key in keys], {"forward_s": t1 - t0, "analysis_s": time.perf_counter() - t1}
