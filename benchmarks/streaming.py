"""Benchmark: study A's mark selection on pg219 and on a 50 MB text, peak memory and time, streamed vs whole text.

``python -m benchmarks streaming [--mb 50] [--tokenizer gpt2|smollm2] [--whole]``

Each measurement runs in a fresh Python process (so one's peak does not hide another's) that imports the tokenizer,
then selects 250 marks per kind the way study A does (:func:`layerclaims.studies.punctuation.scan.scan_marks` over
:func:`layerclaims.data.load_study_text`, CRLF stream) and prints its peak resident set (``VmHWM``) and wall time.
The 50 MB text is pg219 (CRLF) repeated into a temporary file under ``/tmp`` (deleted afterwards; never commit it),
once as it is and once on one line (every newline a space: a text with no line structure is still read in bounded
blocks, never whole).
``--whole`` also measures the old way on the large text (read it whole, tokenise all of it, flag the marks on the
whole stream: minutes and gigabytes).

Printed: per corpus and selection, peak MB and seconds; last lines the 50 MB / pg219 peak ratio for "first" and
"random", with and without newlines (target: within 1.5x).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

CHILD = r"""
import json, sys, time
from pathlib import Path
cfg = json.loads(sys.argv[1])
from layerclaims.data import gpt2_tokenizer, load_study_text
if cfg["tokenizer"] == "smollm2":
    from transformers import AutoTokenizer
    from layerclaims.models import smollm2_folder
    tok = AutoTokenizer.from_pretrained(str(smollm2_folder()))
else:
    tok = gpt2_tokenizer()
tok.decode([11]); tok.encode("warm up, once.")
def vmhwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
t0 = time.perf_counter()
if cfg["way"] == "whole":
    from layerclaims.data import load_corpus
    from tests.oracles.marks import find_marks, tokenize
    text = Path(cfg["corpus"]).read_text(encoding="utf-8").replace("\n", "\r\n")
    ids = tokenize(tok, text)
    found = find_marks(ids, tok)
    n_tokens, complete = int(ids.size), True
else:
    from layerclaims.studies.punctuation.scan import scan_marks
    st = load_study_text(cfg["corpus"], line_endings="crlf")
    scan = scan_marks(tok, st.pieces, n=250, selection=cfg["selection"], seed=0)
    n_tokens, complete = scan.n_tokens, scan.complete
print(json.dumps({"peak_mb": vmhwm(), "s": time.perf_counter() - t0, "n_tokens": n_tokens, "complete": complete}))
"""


def _child(cfg: dict[str, str]) -> dict[str, float]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _big_file(mb: int, *, newlines: bool = True) -> Path:
    from layerclaims.data import load_corpus

    body = load_corpus().text
    if not newlines:
        body = body.replace("\n", " ")
    fd, name = tempfile.mkstemp(prefix="layerclaims-big-", suffix=".txt", dir="/tmp")
    target = mb << 20
    written = 0
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        while written < target:
            fh.write(body)
            written += len(body.encode("utf-8"))
    return Path(name)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks streaming", description=__doc__)
    p.add_argument("--mb", type=int, default=50, help="size of the large text in MB (pg219 repeated)")
    p.add_argument("--tokenizer", choices=["gpt2", "smollm2"], default="gpt2")
    p.add_argument("--whole", action="store_true", help="also measure the old whole-text way on the large text")
    args = p.parse_args(argv)
    big = _big_file(args.mb)
    flat = _big_file(args.mb, newlines=False)
    try:
        print(f"large text: {big} ({big.stat().st_size / 2**20:.1f} MB, pg219 repeated); tokenizer {args.tokenizer}")
        print(f"{'corpus':<22} {'selection':<9} {'peak MB':>9} {'s':>7} {'tokens':>10} complete")
        peaks: dict[tuple[str, str], float] = {}
        big_label, flat_label = f"{args.mb} MB", f"{args.mb} MB, one line"
        for label, corpus in (("pg219", "heart-of-darkness"), (big_label, str(big)), (flat_label, str(flat))):
            for selection in ("first", "random"):
                r = _child({"corpus": corpus, "selection": selection, "way": "stream", "tokenizer": args.tokenizer})
                peaks[(label, selection)] = r["peak_mb"]
                print(
                    f"{label:<22} {selection:<9} {r['peak_mb']:>9.0f} {r['s']:>7.2f} {int(r['n_tokens']):>10,} "
                    f"{r['complete']}"
                )
        if args.whole:
            r = _child({"corpus": str(big), "selection": "all", "way": "whole", "tokenizer": args.tokenizer})
            print(f"{args.mb} MB, whole text (old way) {r['peak_mb']:>9.0f} {r['s']:>7.2f} {int(r['n_tokens']):>10,}")
        for label in (big_label, flat_label):
            ratios = {s: peaks[(label, s)] / peaks[("pg219", s)] for s in ("first", "random")}
            print(
                f"peak memory {label} / pg219: first {ratios['first']:.2f}x, random {ratios['random']:.2f}x "
                "(target <= 1.5x)"
            )
    finally:
        big.unlink(missing_ok=True)
        flat.unlink(missing_ok=True)
    return 0
