"""Study B in the robustness grid: the word vectors extracted once per (template, split-word policy), every analysis
variant (``vectors`` raw | centred, ``similarity`` cosine | pearson, ``rsa`` pearson | spearman) derived from them.

Spearman RSA is computed on the ranks of each matrix's off-diagonal entries (Pearson r of ranks is Spearman's rho,
and the Mantel p-value permutes items, which ranks commute with); its bootstrap resamples those full-sample ranks
rather than re-ranking each resample (an approximation, said in robustness.json)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from layerclaims.studies.qk import TEMPLATES, Config
from layerclaims.studies.qk.analysis import analyse, check_model, make_result, tokenize_prompts, word_vectors


def rank_offdiagonal(S: np.ndarray) -> np.ndarray:
    """Each matrix's off-diagonal entries replaced by their average ranks (symmetric); the diagonal by n + 1."""
    from scipy.stats import rankdata

    out = np.empty_like(S)
    n = S.shape[-1]
    iu = np.triu_indices(n, 1)
    for b in range(S.shape[0]):
        r = rankdata(S[b][iu])
        M = np.full((n, n), float(r.size + 1))
        M[iu] = r
        M[(iu[1], iu[0])] = r
        out[b] = M
    return out


def similarity_matrices(vecs: dict[str, np.ndarray], vectors: str, similarity: str) -> dict[str, np.ndarray]:
    """``{q,k,v: [n_blocks, n_words, n_words]}`` from word vectors ``[n_blocks, n_words, d]``: ``vectors``
    ``"centred"`` subtracts the mean over words first; ``similarity`` ``"pearson"`` centres each vector over its
    own dimensions before the cosine (so each entry is Pearson r between two vectors)."""
    from layerclaims.metrics.similarity import cosine_matrix

    out = {}
    for k, X in vecs.items():
        Y = X - X.mean(axis=1, keepdims=True) if vectors == "centred" else X
        if similarity == "pearson":
            Y = Y - Y.mean(axis=2, keepdims=True)
        out[k] = np.stack([cosine_matrix(Yb) for Yb in Y])
    return out


def run_variants(
    handle: Any, values: Mapping[str, str], variants: Sequence[Mapping[str, str]], grid: Mapping[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """One extraction for ``values`` (``template``, ``split_word``), one result per analysis variant."""
    check_model(handle)
    config = Config(template=TEMPLATES[values["template"]], multi_token=values["split_word"], **grid)  # type: ignore[arg-type]
    blocks = handle.check_blocks(None)
    t0 = time.perf_counter()
    prompts = tokenize_prompts(handle.tokenizer, config.words, config.template, config.add_bos)
    vecs = word_vectors(handle, prompts, blocks, config.multi_token, config.batch_size)
    t1 = time.perf_counter()
    done: dict[tuple[str, str, str], Any] = {}
    out = []
    for v in variants:
        key = (v["vectors"], v["similarity"], v["rsa"])
        if key not in done:
            sims = similarity_matrices(vecs, key[0], key[1])
            stats = analyse(sims, config.word_labels, blocks, config)
            if key[2] == "spearman":
                ranked = analyse({k: rank_offdiagonal(S) for k, S in sims.items()}, config.word_labels, blocks, config)
                stats["rsa"] = ranked["rsa"]
                stats["rsa_by_category"] = ranked["rsa_by_category"]
                stats["over_blocks"] = {
                    **stats["over_blocks"],
                    "min_rsa_qk_over_blocks": ranked["over_blocks"]["min_rsa_qk_over_blocks"],
                }
            done[key] = make_result(handle, config, blocks, prompts, vecs, sims, stats, {})
        out.append(done[key])
    return out, {"forward_s": t1 - t0, "analysis_s": time.perf_counter() - t1}
