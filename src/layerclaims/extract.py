"""Activations at chosen token positions: hidden states of chosen layers, Q/K/V of chosen blocks, and the attention
each head pays to the first token.

``sequences``: token ids (a list of lists, ragged allowed, a 2-D array or tensor, or a list of 1-D arrays/tensors);
``positions``: one int for every sequence or one per sequence, negative from that sequence's own end. Sequences run
in batches of similar length, right-padded with an attention mask (right padding leaves a real token's position ids
and, in causal models, its context unchanged); results come back in the input order. Forward hooks on the modules
named by the model's :class:`~layerclaims.models.Architecture` row keep only the asked position of each sequence
(``[batch, d]``, float32 on the CPU), the bare transformer's forward pass stops once they have all fired, and hooks
are always removed. On a CPU the batches run as many at a time as torch has threads (:func:`in_lanes`), each in a
thread of its own on one torch thread, with the same values as one at a time.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TypeVar, cast

import numpy as np
import torch

from layerclaims.errors import UsageError
from layerclaims.models import ModelHandle, base_model

SequencesLike = Any  # list[list[int]] | np.ndarray | torch.Tensor | list[np.ndarray | torch.Tensor]
PositionsLike = Any  # int | Sequence[int] | np.ndarray | torch.Tensor
Final = Literal["post_norm", "pre_norm"]
Read = Literal["input", "output"] | Callable[[Any], torch.Tensor]  # what a hook keeps: see _run
T = TypeVar("T")
PAD_ID = 0  # any valid id: padded positions are masked out and never read


class _Stop(Exception):
    """Raised by the hook that completes a batch's captures: the rest of the forward pass is skipped."""


def as_sequences(sequences: SequencesLike, vocab_size: int | None = None) -> list[np.ndarray]:
    """Token-id sequences as a list of 1-D int64 arrays. UsageError when empty, not integers, not 1-D, or (given
    ``vocab_size``) outside ``0..vocab_size-1``."""
    if isinstance(sequences, torch.Tensor):
        sequences = sequences.detach().cpu().numpy()
    if isinstance(sequences, np.ndarray):
        if sequences.ndim == 1 and sequences.dtype != object:
            raise UsageError("sequences must be a list of token-id sequences (2-D), got one 1-D array: wrap it in [ ]")
        sequences = list(sequences)
    if isinstance(sequences, str | bytes) or not isinstance(sequences, Sequence):
        raise UsageError(f"sequences must be a list of token-id lists, got {type(sequences).__name__}")
    if len(sequences) == 0:
        raise UsageError("no sequences given: pass at least one list of token ids")
    out: list[np.ndarray] = []
    for i, seq in enumerate(sequences):
        if isinstance(seq, torch.Tensor):
            seq = seq.detach().cpu().numpy()
        if isinstance(seq, int | np.integer):
            raise UsageError("sequences must be a list of token-id lists, got a flat list of ints: wrap it in [ ]")
        arr = np.asarray(seq)
        if arr.ndim != 1:
            raise UsageError(f"sequence {i} has shape {arr.shape}: each sequence must be a 1-D list of token ids")
        if arr.size == 0:
            raise UsageError(f"sequence {i} is empty: every sequence needs at least one token")
        if not np.issubdtype(arr.dtype, np.integer):
            raise UsageError(f"sequence {i} holds {arr.dtype} values: token ids must be integers")
        if vocab_size is not None and (arr.min() < 0 or arr.max() >= vocab_size):
            raise UsageError(
                f"sequence {i} has token id {int(arr.min() if arr.min() < 0 else arr.max())} outside the model's "
                f"vocabulary 0..{vocab_size - 1}: tokenize with the model's own tokenizer"
            )
        out.append(arr.astype(np.int64, copy=False))
    return out


def as_positions(positions: PositionsLike, lengths: Sequence[int]) -> np.ndarray:
    """Absolute 0-based positions, one per sequence, from one int or one per sequence (negative = from that
    sequence's end). UsageError naming the sequence and its valid range when a position falls outside it."""
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    if isinstance(positions, torch.Tensor):
        positions = positions.detach().cpu().numpy()
    pos = np.asarray(positions)
    if pos.ndim == 0:
        if isinstance(positions, bool) or not np.issubdtype(pos.dtype, np.integer):
            raise UsageError(f"positions must be integers, got {positions!r}")
        pos = np.full(len(lengths_arr), int(pos), dtype=np.int64)
    else:
        if pos.ndim != 1 or len(pos) != len(lengths_arr):
            raise UsageError(
                f"positions must be one int or one per sequence: got shape {pos.shape} for {len(lengths_arr)} sequences"
            )
        if pos.size and not np.issubdtype(pos.dtype, np.integer):
            raise UsageError(f"positions must be integers, got {pos.dtype}")
        pos = pos.astype(np.int64)
    absolute = np.where(pos < 0, pos + lengths_arr, pos)
    bad = np.flatnonzero((absolute < 0) | (absolute >= lengths_arr))
    if bad.size:
        i = int(bad[0])
        raise UsageError(
            f"position {int(pos[i])} is outside sequence {i} of length {int(lengths_arr[i])}: valid positions are "
            f"0..{int(lengths_arr[i]) - 1} or -{int(lengths_arr[i])}..-1 ({bad.size} sequence(s) affected)"
        )
    return absolute


def padded_batches(seqs: list[np.ndarray], batch_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """``(idx, ids, mask)`` for each batch: the sequences' indices (similar lengths together, longest first), their
    ids right-padded with ``PAD_ID`` (``[batch, width]``) and the attention mask (1 on real tokens)."""
    lengths = np.array([len(s) for s in seqs])
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = int(lengths[idx].max())
        ids = torch.full((len(idx), width), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, : lengths[i]] = torch.from_numpy(seqs[i])
            mask[row, : lengths[i]] = 1
        yield idx, ids, mask


def check_batch_size(batch_size: Any) -> None:
    """UsageError unless ``batch_size`` is a positive integer (Python or numpy; not a bool)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")


def _prepare(
    handle: ModelHandle, sequences: SequencesLike, positions: PositionsLike, batch_size: int
) -> tuple[list[np.ndarray], np.ndarray]:
    check_batch_size(batch_size)
    seqs = as_sequences(sequences, getattr(handle.model.config, "vocab_size", None))
    lengths = [len(s) for s in seqs]
    max_pos = getattr(handle.model.config, "max_position_embeddings", None)
    if max_pos is not None and max(lengths) > max_pos:
        i = int(np.argmax(lengths))
        raise UsageError(
            f"sequence {i} has {lengths[i]} tokens but {handle.name} takes at most {max_pos}: cut it into windows"
        )
    return seqs, as_positions(positions, lengths)


def _in_order(out: np.ndarray, unique: list[int], chosen: list[int]) -> np.ndarray:
    """``out``, computed with one row per index of ``unique``, with its rows in the order of ``chosen``."""
    return out if chosen == unique else out[[unique.index(x) for x in chosen]]


def _run(
    handle: ModelHandle,
    seqs: list[np.ndarray],
    positions: np.ndarray | None,
    batch_size: int,
    taps: dict[Any, tuple[torch.nn.Module, Read]],
    on_batch: Callable[[np.ndarray, dict[Any, torch.Tensor]], None],
) -> None:
    """Run every batch with a hook per tap ``key: (module, read)`` storing in ``captured[key]`` the input of
    ``module`` (``"input"``) or its output (``"output"``; a tuple's first item) at this batch's ``positions`` (all
    when None), or ``read(output)``; then ``on_batch(idx, captured)``, ``idx`` the batch's sequence indices (one
    call at a time). The batches run in :func:`in_lanes`."""
    base_name = {m: n for n, m in handle.model.named_modules()}[base_model(handle.model)]
    device = torch.device(handle.device)
    kwargs: dict[str, Any] = {"use_cache": False} if handle.arch.causal else {}
    lock = threading.Lock()

    def batch(idx: np.ndarray, ids: torch.Tensor, mask: torch.Tensor) -> Callable[[torch.nn.Module], None]:
        def job(model: torch.nn.Module) -> None:
            captured: dict[Any, torch.Tensor] = {}
            at = None if positions is None else torch.from_numpy(positions[idx])

            def store(key: Any, h: torch.Tensor, gather: bool = True) -> None:
                if gather and at is not None:
                    h = h[torch.arange(h.shape[0], device=h.device), at.to(h.device)]
                captured[key] = h.detach().to(device="cpu", dtype=torch.float32)
                if len(captured) == len(taps):
                    raise _Stop

            def hook(key: Any, module: torch.nn.Module, read: Read) -> Any:
                if read == "input":

                    def pre(_: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                        store(key, args[0] if args else kwargs["hidden_states"])

                    return module.register_forward_pre_hook(pre, with_kwargs=True)

                def post(_: Any, args: Any, output: Any) -> None:
                    if read == "output":
                        store(key, output[0] if isinstance(output, tuple | list) else output)
                    else:
                        store(key, read(output), gather=False)

                return module.register_forward_hook(post)

            hooks = [hook(key, counterpart(handle, model, module), read) for key, (module, read) in taps.items()]
            try:
                with torch.inference_mode():
                    model.get_submodule(base_name)(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
            except _Stop:
                pass
            finally:
                for h in hooks:
                    h.remove()
            with lock:
                on_batch(idx, captured)

        return job

    in_lanes(handle, [batch(*b) for b in padded_batches(seqs, batch_size)])


def in_lanes(handle: ModelHandle, jobs: Sequence[Callable[[torch.nn.Module], T]]) -> list[T]:
    """``[job(model) for job in jobs]``, ``model`` the handle's model or a :func:`_replica` of it (a job reaches its
    modules through :func:`counterpart` and enters ``torch.inference_mode()`` itself). On a CPU with several torch
    threads the jobs run :func:`lanes` at a time: each lane a thread of its own with one torch thread, on a module
    tree of its own over the same weights (its own hooks), pulling the next job when it is done. One forward pass on
    two threads leaves about a tenth of two cores idle at its synchronisations; two lanes do not (study A's 250
    windows of a kind: 7.7-8.9 s against 9.9-10.6 s, alternate runs). A job computes what it computes one lane or
    several, bit for bit (``tests/unit/test_extract.py``). A job's error reaches the caller once every lane has
    finished its job in hand; the rest are not started."""
    n_lanes = lanes(handle, len(jobs))
    if n_lanes == 1:
        return [job(handle.model) for job in jobs]
    models = [handle.model, *(_replica(handle.model) for _ in range(n_lanes - 1))]
    results: list[Any] = [None] * len(jobs)
    queue, lock, stop = iter(enumerate(jobs)), threading.Lock(), threading.Event()
    errors: list[BaseException] = []

    def lane(model: torch.nn.Module) -> None:
        try:
            while not stop.is_set():
                with lock:
                    item = next(queue, None)
                if item is None:
                    return
                results[item[0]] = item[1](model)
        except BaseException as exc:  # handed to the calling thread
            stop.set()
            errors.append(exc)

    threads = [threading.Thread(target=lane, args=(m,), daemon=True) for m in models[1:]]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for t in threads:
            t.start()
        lane(models[0])
    finally:
        stop.set()  # a lane that failed, or an interrupt here: the others stop after their job in hand
        for t in threads:
            t.join()
        torch.set_num_threads(before)
    if errors:
        raise errors[0]
    return results


def lanes(handle: ModelHandle, n_jobs: int) -> int:
    """How many jobs :func:`in_lanes` runs at once: torch's threads (at most ``n_jobs``) on a CPU model held whole;
    1 on a GPU, for a model spread by a device map, or with one torch thread."""
    if torch.device(handle.device).type != "cpu" or getattr(handle.model, "hf_device_map", None):
        return 1
    return max(1, min(torch.get_num_threads(), n_jobs))


def _replica(model: torch.nn.Module) -> torch.nn.Module:
    """A second module tree over the same parameters and buffers (no weight is copied; the hooks the model holds
    now are copied with it): hooks of its own, so that two threads can run forward passes at once."""
    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, shared)


def counterpart(handle: ModelHandle, model: torch.nn.Module, module: torch.nn.Module) -> torch.nn.Module:
    """``module`` (a module of ``handle.model``) in ``model``: itself, or its copy in a :func:`_replica`."""
    if model is handle.model:
        return module
    name = next(n for n, m in handle.model.named_modules() if m is module)
    return model.get_submodule(name)


def hidden_states(
    handle: ModelHandle,
    sequences: SequencesLike,
    positions: PositionsLike | None,
    layers: Sequence[int] | int | None = None,
    batch_size: int = 32,
    *,
    final: Final = "post_norm",
) -> np.ndarray:
    """Hidden states at one position per sequence (``positions=None``: :func:`hidden_state_maps`), for the chosen
    layers.

    Returns float32 ``[n_layers, n_seqs, d_model]``, axis 0 in the order of ``layers`` (None: all,
    ``0..n_blocks``), axis 1 in the order of ``sequences``. Layer ``L`` is ``output_hidden_states[L]``: 0 = the
    embeddings (the input of block 0), ``L`` = the output of block ``L-1``; the last layer ``n_blocks`` is, with
    ``final="post_norm"`` (default, as Hugging Face), after the final norm where the architecture applies it there
    (``handle.arch.last_hidden_is_normed``: GPT-2, Llama), and with ``final="pre_norm"`` the raw output of the last
    block (what depth trends over block outputs use). Units: the model's residual stream."""
    _check_final(final)
    every_position = positions is None
    chosen = handle.check_layers(layers)
    seqs, pos = _prepare(handle, sequences, 0 if positions is None else positions, batch_size)
    rows: tuple[int, ...] = (len(seqs), handle.d_model)
    if every_position:
        rows = (len(seqs), _one_length(seqs, "hidden_state_maps"), handle.d_model)
    unique = sorted(set(chosen))
    out = np.empty((len(unique), *rows), dtype=np.float32)
    # the last layer is read after the final norm when asked for (post_norm) and the architecture applies one there
    last_norm = _final_norm(handle) if final == "post_norm" else None
    taps: dict[Any, tuple[torch.nn.Module, Read]] = {}
    for layer in unique:
        if layer == handle.n_blocks and last_norm is not None:
            taps[layer] = (last_norm, "output")
        else:
            taps[layer] = _layer_tap(handle, layer)

    def on_batch(idx: np.ndarray, captured: dict[Any, torch.Tensor]) -> None:
        for k, layer in enumerate(unique):
            out[k, idx] = captured[layer].numpy()

    _run(handle, seqs, None if every_position else pos, batch_size, taps, on_batch)
    return _in_order(out, unique, chosen)


def hidden_state_maps(
    handle: ModelHandle,
    sequences: SequencesLike,
    layers: Sequence[int] | int | None = None,
    batch_size: int = 16,
    *,
    final: Final = "post_norm",
) -> np.ndarray:
    """Hidden states at every position of equal-length sequences: float32 ``[n_layers, n_seqs, T, d_model]``,
    layers as :func:`hidden_states`. Memory is ``4 * n_layers * n_seqs * T * d_model`` bytes (SmolLM2-135M, all 31
    layers of 16 windows of 64 tokens: 73 MB): for the studies that read every position of a few windows.
    UsageError when the sequences differ in length (cut windows of one length)."""
    return hidden_states(handle, sequences, None, layers, batch_size, final=final)


def qkv(
    handle: ModelHandle,
    sequences: SequencesLike,
    positions: PositionsLike,
    blocks: Sequence[int] | int | None = None,
    which: Sequence[str] | str = ("q", "k", "v"),
    batch_size: int = 32,
    *,
    block_input: bool = False,
) -> dict[str, np.ndarray]:
    """Query, key and value vectors at one position per sequence, for the chosen blocks.

    Returns ``{name: float32 [n_blocks_sel, n_seqs, handle.qkv_dims()[name]]}`` for each name in ``which``; axis 0
    in the order of ``blocks`` (None: all), axis 1 in the order of ``sequences``. Each vector is the projection's
    output where ``handle.arch.qkv`` says (before RoPE), bias included, all heads concatenated.

    ``block_input=True`` adds ``"x": float32 [n_blocks_sel, n_seqs, d_model]``, the input of the query projection's
    module (after the block's own norm where it has one): Q, K and V are linear maps of it (plus bias), which is what
    random-projection controls start from."""
    names = (which,) if isinstance(which, str) else tuple(which)
    if not names:
        raise UsageError("which is empty: ask for at least one of 'q', 'k', 'v'")
    sites = {name: handle.arch.site(name) for name in names}
    chosen = handle.check_blocks(blocks)
    seqs, pos = _prepare(handle, sequences, positions, batch_size)
    unique = sorted(set(chosen))
    dims = handle.qkv_dims()
    out = {name: np.empty((len(unique), len(seqs), dims[name]), dtype=np.float32) for name in names}
    block_list = handle.blocks
    taps: dict[Any, tuple[torch.nn.Module, Read]] = {}
    for b in unique:
        if block_input:
            taps[(b, "<input>")] = (block_list[b].get_submodule(handle.arch.site("q").module), "input")
        for path in sorted({s.module for s in sites.values()}):
            taps[(b, path)] = (block_list[b].get_submodule(path), "output")
    if block_input:
        out["x"] = np.empty((len(unique), len(seqs), handle.d_model), dtype=np.float32)

    def on_batch(idx: np.ndarray, captured: dict[Any, torch.Tensor]) -> None:
        for k, b in enumerate(unique):
            for name, site in sites.items():
                full = captured[(b, site.module)]
                width = full.shape[-1] // site.n_chunks
                out[name][k, idx] = full[:, site.chunk * width : (site.chunk + 1) * width].numpy()
            if block_input:
                out["x"][k, idx] = captured[(b, "<input>")].numpy()

    _run(handle, seqs, pos, batch_size, taps, on_batch)
    return {name: _in_order(arr, unique, chosen) for name, arr in out.items()}


def first_token_attention(
    handle: ModelHandle, sequences: SequencesLike, blocks: Sequence[int] | int | None = None, batch_size: int = 32
) -> np.ndarray:
    """Attention paid to the first token (position 0) by each head of the chosen blocks, averaged over the queries
    that see it: Gu et al. (2024)'s ``alpha_1``.

    For a sequence of length ``T`` and head ``h`` of block ``b``: ``alpha[b, i, h] = (1/T) sum_{t=0}^{T-1}
    A[t, 0]``, ``A`` the head's softmax attention weights (rows: queries, columns: keys). Every query sees position
    0, in causal models too (``t >= 0``), so all ``T`` queries count, the first one included (its weight on itself
    is 1); this is ``eval_sink_open_source.py``'s importance score of token 0 in ``sail-sg/Attention-Sink``.
    Padded queries of a ragged batch are left out. Unitless, in ``[0, 1]``; a uniform causal head gives
    ``H_T / T`` (harmonic number), e.g. 0.074 at ``T = 64``.

    Returns float32 ``[n_blocks_sel, n_seqs, n_heads]`` (query heads). Runs eager attention (the only implementation
    that returns the weights; the model's own, usually SDPA, is restored after, even on an error) and keeps only the
    first key column of each block's weights, never the ``T x T`` maps of every block."""
    chosen = handle.check_blocks(blocks)
    seqs, _ = _prepare(handle, sequences, 0, batch_size)
    unique = sorted(set(chosen))
    out = np.empty((len(unique), len(seqs), _n_heads(handle)), dtype=np.float32)
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    taps = _first_key_taps(handle, unique)

    def on_batch(idx: np.ndarray, captured: dict[Any, torch.Tensor]) -> None:
        _store_alpha(out, unique, idx, lengths, captured)

    with _eager(handle):
        _run(handle, seqs, None, batch_size, taps, on_batch)
    return _in_order(out, unique, chosen)


@dataclasses.dataclass(frozen=True, eq=False)
class WindowPass:
    """What one eager-attention forward pass over equal-length windows yields. ``blocks``: float32 ``[n_blocks + 1,
    n, T, d_model]``, 0 the embeddings and ``L`` block ``L-1``'s output (before any final norm); ``normed_last``:
    ``[n, T, d_model]``, the final norm of the last block's output where the architecture applies it there, else
    None; ``first_attention``: ``[n_blocks, n, n_heads]``, :func:`first_token_attention` of every block."""

    blocks: np.ndarray
    normed_last: np.ndarray | None
    first_attention: np.ndarray

    def hidden(self, final: Final = "post_norm") -> np.ndarray:
        """The hidden states of every layer as :func:`hidden_state_maps` gives them (``final`` as there)."""
        _check_final(final)
        if final == "pre_norm" or self.normed_last is None:
            return self.blocks
        return np.concatenate([self.blocks[:-1], self.normed_last[None]])


_SHARED: list[tuple[Any, np.ndarray, int, WindowPass]] | None = None  # the last pass, inside shared_passes()


@contextlib.contextmanager
def shared_passes() -> Iterator[None]:
    """Inside, :func:`window_pass` keeps its last pass: a study that reads the same windows of the same model with
    the same batch size as the one before it (one reading hidden states, the next attention) gets that pass, the
    same arrays it would compute, without running the model again. A run enters it once."""
    global _SHARED
    before, _SHARED = _SHARED, []
    try:
        yield
    finally:
        _SHARED = before


def window_pass(handle: ModelHandle, sequences: SequencesLike, batch_size: int = 16) -> WindowPass:
    """Every hidden state at every position and the attention each head pays to the first token, from ONE forward
    pass with eager attention (:class:`WindowPass`; the model's own attention implementation is restored after).
    The hidden states are :func:`hidden_state_maps`' under eager attention: SDPA's agree with them to ~1e-5 of a
    row's largest entry (SmolLM2-135M); the attention is :func:`first_token_attention`'s, bit for bit. Memory as
    :func:`hidden_state_maps` (73 MB for 16 windows of 64 tokens of SmolLM2-135M). UsageError when the sequences
    differ in length."""
    seqs, _ = _prepare(handle, sequences, 0, batch_size)
    _one_length(seqs, "window_pass")
    ids = np.stack(seqs)
    if _SHARED:
        model, kept_ids, kept_batch, kept = _SHARED[0]
        if model is handle.model and kept_batch == batch_size and np.array_equal(kept_ids, ids):
            return kept
    n_blocks, (n, width) = handle.n_blocks, ids.shape
    blocks = np.empty((n_blocks + 1, n, width, handle.d_model), dtype=np.float32)
    norm = _final_norm(handle)
    normed = np.empty((n, width, handle.d_model), dtype=np.float32) if norm is not None else None
    every = list(range(n_blocks))
    alpha = np.empty((n_blocks, n, _n_heads(handle)), dtype=np.float32)
    lengths = np.full(n, width, dtype=np.int64)
    taps = _first_key_taps(handle, every)
    for layer in range(n_blocks + 1):
        taps[("h", layer)] = _layer_tap(handle, layer)
    if norm is not None:
        taps[("h", "norm")] = (norm, "output")

    def on_batch(idx: np.ndarray, captured: dict[Any, torch.Tensor]) -> None:
        _store_alpha(alpha, every, idx, lengths, captured)
        for layer in range(n_blocks + 1):
            blocks[layer, idx] = captured[("h", layer)].numpy()
        if normed is not None:
            normed[idx] = captured[("h", "norm")].numpy()

    with _eager(handle):
        _run(handle, seqs, None, batch_size, taps, on_batch)
    result = WindowPass(blocks, normed, alpha)
    if _SHARED is not None:
        _SHARED[:] = [(handle.model, ids, batch_size, result)]
    return result


def _check_final(final: str) -> None:
    if final not in ("post_norm", "pre_norm"):
        raise UsageError(f"final must be 'post_norm' or 'pre_norm', got {final!r}")


def _one_length(seqs: list[np.ndarray], who: str) -> int:
    """The one length of ``seqs``; UsageError naming ``who`` when they differ."""
    lengths = sorted({len(s) for s in seqs})
    if len(lengths) != 1:
        raise UsageError(f"{who} needs sequences of one length, got lengths {lengths[:5]}")
    return lengths[0]


def _layer_tap(handle: ModelHandle, layer: int) -> tuple[torch.nn.Module, Read]:
    """Where hidden-state layer ``layer`` is read before any final norm: 0 the input of block 0 (the embeddings),
    ``L`` the output of block ``L-1``."""
    return handle.blocks[max(layer - 1, 0)], "input" if layer == 0 else "output"


def _final_norm(handle: ModelHandle) -> torch.nn.Module | None:
    """The final norm module where the architecture applies it to the last block's output (GPT-2, Llama), else
    None (BERT)."""
    path = handle.arch.final_norm if handle.arch.last_hidden_is_normed else None
    return None if path is None else base_model(handle.model).get_submodule(path)


def _n_heads(handle: ModelHandle) -> int:
    return int(cast(Any, handle.model).config.num_attention_heads)  # query heads: the weights' axis 1


@contextlib.contextmanager
def _eager(handle: ModelHandle) -> Iterator[None]:
    """The model under eager attention inside (the implementation that returns the weights), its own after."""
    before = getattr(getattr(handle.model, "config", None), "_attn_implementation", None)
    setter = getattr(handle.model, "set_attn_implementation", None)
    if before is None or setter is None:
        raise UsageError(
            f"{handle.name} is not a transformers model with a switchable attention implementation: attention "
            "weights need a model loaded by layerclaims.models.load_model"
        )
    setter("eager")
    try:
        yield
    finally:
        setter(before)


def _first_key_taps(handle: ModelHandle, blocks: Sequence[int]) -> dict[Any, tuple[torch.nn.Module, Read]]:
    """Per block ``b``, a tap (key ``b``) on its self-attention module keeping the weights' first key column
    ``[B, H, Tq]`` (eager attention)."""

    def first_key(b: int) -> Callable[[Any], torch.Tensor]:
        def read(output: Any) -> torch.Tensor:
            weights = output[1] if isinstance(output, tuple | list) and len(output) > 1 else None
            if weights is None:
                raise UsageError(
                    f"block {b} of {handle.name} returned no attention weights under eager attention: the "
                    f"{handle.arch.family!r} row of ARCHITECTURES must name the self-attention module"
                )
            return weights[:, :, :, 0]  # [B, H, Tq]

        return read

    return {b: (handle.blocks[b].get_submodule(handle.arch.attention), first_key(b)) for b in blocks}


def _store_alpha(
    out: np.ndarray, blocks: Sequence[int], idx: np.ndarray, lengths: np.ndarray, captured: dict[Any, torch.Tensor]
) -> None:
    """``out[k, idx]`` = the first-key column of block ``blocks[k]`` averaged over each sequence's real queries."""
    n_len = torch.from_numpy(lengths[idx])  # [B]
    for k, b in enumerate(blocks):
        col = captured[b]  # [B, H, Tq]
        valid = torch.arange(col.shape[-1])[None, :] < n_len[:, None]  # [B, Tq]: real queries
        mean = (col * valid[:, None, :]).sum(-1) / n_len[:, None].to(torch.float32)
        out[k, idx] = mean.numpy()
