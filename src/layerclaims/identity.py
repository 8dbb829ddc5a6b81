"""Which model a name, folder or loaded handle is: recognised by what it is, not by the name typed.

Evidence, in order: the name or an alias (:data:`ALIASES`); a config whose recorded ``_name_or_path`` names a known
model (``/models/gpt2-medium`` counts) AND whose architecture facts match that model's :data:`KNOWN_MODELS` row (a
fine-tune that changed the vocabulary is not trusted); a declaration (``--as``), accepted only when the facts match.
A name or config says what a model claims to be, not what its weights are: a loaded model is taken for a known model
(:func:`identify`) only when its weights reproduce a published number where one exists
(:data:`BEHAVIOUR_REFERENCES`); elsewhere it is "taken as gpt2-medium by its config; weights unverified", and every
verdict says so. Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerclaims.errors import UsageError


@dataclass(frozen=True)
class ArchFacts:
    """What a config says about the architecture: ``family`` (``model_type``), ``n_blocks``, ``width`` (residual
    width) and ``vocab`` (vocabulary size)."""

    family: str
    n_blocks: int
    width: int
    vocab: int

    def describe(self) -> str:
        return f"{self.family}, {self.n_blocks} blocks of width {self.width}, vocabulary {self.vocab}"


# The models the package's claims were made for (and their smaller siblings), from their published config.json.
KNOWN_MODELS: dict[str, ArchFacts] = {
    "gpt2": ArchFacts("gpt2", 12, 768, 50257),
    "gpt2-medium": ArchFacts("gpt2", 24, 1024, 50257),
    "gpt2-large": ArchFacts("gpt2", 36, 1280, 50257),
    "gpt2-xl": ArchFacts("gpt2", 48, 1600, 50257),
}

# Depth of the registry's models (layerclaims.models.REGISTRY), so that a claims file about them needs no
# model_blocks and reading one imports no torch; tests/unit/test_identity.py keeps it equal to models.model_shape.
REGISTRY_BLOCKS: dict[str, int] = {"tiny-gpt2": 4, "tiny-llama": 4, "tiny-bert": 4, "smollm2-135m": 30, "minilm-l6": 6}

# Hub ids that hold the same weights as a known model's legacy id.
ALIASES: dict[str, str] = {f"openai-community/{name}": name for name in KNOWN_MODELS}

# config.json keys of each fact, per naming convention: the first one present is used.
_FACT_KEYS: dict[str, tuple[str, ...]] = {
    "n_blocks": ("n_layer", "num_hidden_layers", "num_layers", "n_layers"),
    "width": ("n_embd", "hidden_size", "d_model", "dim"),
    "vocab": ("vocab_size",),
}


def canonical(name: str) -> str:
    """A known model's name for ``name`` (``openai-community/gpt2-medium`` -> ``gpt2-medium``); else ``name``."""
    return ALIASES.get(name, name)


def known_blocks(name: str) -> int | None:
    """The number of blocks of a model known here by name (known model, alias or registry name), else None."""
    facts = KNOWN_MODELS.get(canonical(name))
    return facts.n_blocks if facts is not None else REGISTRY_BLOCKS.get(name)


def read_config(obj: Any) -> dict[str, Any] | None:
    """The config of ``obj`` (a mapping, a folder holding ``config.json`` or its path, a transformers config, model
    or :class:`~layerclaims.models.ModelHandle`) as a dict; None for a plain name or nothing to read."""
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, str | Path):
        path = Path(obj).expanduser()
        if path.is_dir():
            path = path / "config.json"
        if path.name.endswith(".json") and path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise UsageError(f"{path} is not a readable JSON config ({exc}): fix or replace the file") from None
            return data if isinstance(data, dict) else None
        return None
    for candidate in (getattr(getattr(obj, "model", None), "config", None), getattr(obj, "config", None), obj):
        if (to_dict := getattr(candidate, "to_dict", None)) is not None:
            return dict(to_dict())
    return None


def arch_facts(config: Mapping[str, Any]) -> ArchFacts | None:
    """The :class:`ArchFacts` of a config dict, or None when a fact is missing."""
    values: dict[str, int] = {}
    for fact, keys in _FACT_KEYS.items():
        found = next((config[k] for k in keys if isinstance(config.get(k), int)), None)
        if found is None:
            return None
        values[fact] = int(found)
    family = config.get("model_type")
    return ArchFacts(family, **values) if isinstance(family, str) else None


def _recorded_name(config: Mapping[str, Any]) -> str | None:
    """The known model a config's ``_name_or_path`` names (its last path part, so ``/models/gpt2-medium`` and
    ``openai-community/gpt2-medium`` both count), or None."""
    recorded = config.get("_name_or_path")
    if not isinstance(recorded, str) or not recorded.strip():
        return None
    recorded = recorded.strip().rstrip("/")
    return next((c for c in (recorded, canonical(recorded), recorded.rsplit("/", 1)[-1]) if c in KNOWN_MODELS), None)


def check_declared(declared: str, obj: Any) -> str:
    """The canonical name of ``declared`` when ``obj`` (a folder, config or handle) has its architecture facts;
    UsageError naming the mismatch and the fix otherwise (unknown model, no config to check, other facts)."""
    name = canonical(declared)
    if name not in KNOWN_MODELS:
        raise UsageError(
            f"--as {declared}: not a model whose architecture is known here; use one of "
            f"{', '.join(sorted(KNOWN_MODELS))} (the claims' models), or drop --as"
        )
    config = read_config(obj)
    if config is None:
        raise UsageError(
            f"--as {declared}: {obj} has no config.json to check the architecture against; --as is for a local "
            "model folder (a hub id or registry name is recognised by its name), so point --model at the folder "
            "or drop --as"
        )
    facts = arch_facts(config)
    expected = KNOWN_MODELS[name]
    if facts != expected:
        seen = facts.describe() if facts is not None else "no complete architecture facts (model_type, blocks, width)"
        raise UsageError(
            f"--as {declared} refused: {obj} holds {seen}, but {name} is {expected.describe()}. Fix: point --model at "
            f"a {name} folder, or drop --as to snapshot this model instead of asserting {name}'s claims on it"
        )
    return name


def model_identity(obj: Any, *, declared: str | None = None) -> str | None:
    """The known model (a key of :data:`KNOWN_MODELS`) that ``obj`` (a name, folder, config, model or handle) is,
    or None when it cannot tell; ``declared`` (``--as``) is checked by :func:`check_declared`."""
    if declared is not None:
        return check_declared(declared, obj)
    if isinstance(obj, str) and canonical(obj) in KNOWN_MODELS and not Path(obj).expanduser().is_dir():
        return canonical(obj)
    handle_name = getattr(obj, "name", None)
    if isinstance(handle_name, str) and canonical(handle_name) in KNOWN_MODELS:
        return canonical(handle_name)
    config = read_config(obj)
    if config is None:
        return None
    name = _recorded_name(config)
    return name if name is not None and arch_facts(config) == KNOWN_MODELS[name] else None


def is_claim_model(
    claim_model: str, model: Any, *, declared: str | None = None, identification: Identification | None = None
) -> bool:
    """Whether ``model`` (as :func:`model_identity` takes it) is the model ``claim_model`` a claim was made for.
    ``identification`` (:func:`identify`), when it claims to be ``claim_model``, decides (a folder of other weights
    whose config says gpt2 is not gpt2). A model not in :data:`KNOWN_MODELS` is matched by its name as typed."""
    if identification is not None and identification.claimed == canonical(claim_model):
        return identification.is_model(claim_model)
    if declared is None and isinstance(model, str) and canonical(model) == canonical(claim_model):
        return True
    return model_identity(model, declared=declared) == canonical(claim_model)


# ------------------------------------------------------------------------------------------------- behaviour


@dataclass(frozen=True)
class BehaviourReference:
    """A published number that a known model's own weights reproduce: ``loss``, the mean cross-entropy (nats) of
    the next-token predictions over ``ids`` (``text`` with the BOS token prepended, as TransformerLens's
    ``model(text, return_type="loss")``), to within ``tolerance`` (float32 passes of the same weights differ by
    ~1e-5; random GPT-2 weights give about ln 50257 = 10.8); 16-bit weights get :data:`HALF_TOLERANCE`."""

    text: str
    ids: tuple[int, ...]
    loss: float
    tolerance: float
    source: str


# The tolerance for weights held in float16/bfloat16 (their rounding moves a 3-token loss by up to ~1e-2).
HALF_TOLERANCE = 0.05

BEHAVIOUR_REFERENCES: dict[str, BehaviourReference] = {
    # GPT-2's tokenizer: <|endoftext|> (BOS) 50256, "Hello" 15496, " world" 995, "!" 0 (a unit test re-tokenises)
    "gpt2": BehaviourReference(
        "Hello world!",
        (50256, 15496, 995, 0),
        5.331855773925781,
        2e-3,
        "TransformerLens tests/acceptance/test_hooked_transformer.py, loss_store['gpt2-small']",
    ),
}


def next_token_loss(handle: Any, ids: Sequence[int]) -> float:
    """Mean cross-entropy (nats) of ``handle``'s next-token predictions over ``ids`` (the reference's, not
    re-tokenised): ``mean_i -log softmax(logits_i)[ids_{i+1}]`` for i = 0..len(ids)-2, in float32. A model without
    an LM head predicts through its tied input embeddings (GPT-2: logits = final hidden state @ wte^T); UsageError
    when it has neither."""
    import torch

    model = handle.model
    inputs = torch.tensor([list(ids)], device=next(model.parameters()).device)
    with torch.no_grad():
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if head is not None:
            logits = model(input_ids=inputs).logits[0]
        elif getattr(model.config, "tie_word_embeddings", False):
            hidden = model(input_ids=inputs).last_hidden_state[0]
            logits = hidden.float() @ model.get_input_embeddings().weight.float().T
        else:
            raise UsageError(f"{handle.name}: no LM head and no tied embeddings: next-token loss cannot be measured")
        loss = torch.nn.functional.cross_entropy(logits[:-1].float(), inputs[0, 1:])
    return float(loss)


@dataclass(frozen=True)
class Identification:
    """What a loaded model was shown to be. ``claimed``: the known model its name or config says it is;
    ``model``: the one it is taken for (``claimed`` unless its behaviour refuted it); ``verified``: shown by
    behaviour; ``evidence``: one sentence saying how (or why it was refused)."""

    claimed: str | None
    model: str | None
    verified: bool
    evidence: str

    def is_model(self, claim_model: str) -> bool:
        return self.model == canonical(claim_model)

    def note(self, claim_model: str) -> str | None:
        """What a verdict of a claim about ``claim_model`` says about this model's identity (the evidence); None when
        it does not claim to be that model."""
        return self.evidence if self.claimed == canonical(claim_model) else None


_IDENTIFIED: weakref.WeakKeyDictionary[Any, Identification] = weakref.WeakKeyDictionary()


def identify(handle: Any, *, declared: str | None = None) -> Identification:
    """What a loaded model is shown to be (see the module docstring): one forward pass of a few tokens where a
    :data:`BEHAVIOUR_REFERENCES` number exists. Computed once per handle."""
    if declared is None:
        with contextlib.suppress(KeyError, TypeError):
            return _IDENTIFIED[handle]
    name = getattr(handle, "name", None)
    claimed = model_identity(name if isinstance(name, str) else handle, declared=declared)
    ident = _identify(handle, claimed, "by its declaration (--as)" if declared is not None else "by its config")
    if declared is None:
        with contextlib.suppress(TypeError):
            _IDENTIFIED[handle] = ident
    return ident


def _identify(handle: Any, claimed: str | None, how: str) -> Identification:
    if claimed is None:
        return Identification(None, None, False, "not a model whose identity is known here")
    ref = BEHAVIOUR_REFERENCES.get(claimed)
    if ref is None:
        return Identification(claimed, claimed, False, f"taken as {claimed} {how}; weights unverified")
    try:
        loss = next_token_loss(handle, ref.ids)
    except UsageError as exc:
        return Identification(claimed, None, False, f"not shown to be {claimed}: {exc.message}")
    shown = f"next-token loss on {ref.text!r} with BOS {loss:.4f}"
    half = str(getattr(handle, "dtype", "float32")) in ("float16", "bfloat16", "torch.float16", "torch.bfloat16")
    tolerance = max(ref.tolerance, HALF_TOLERANCE) if half else ref.tolerance
    if math.isfinite(loss) and abs(loss - ref.loss) <= tolerance:
        how = f"by its behaviour ({shown}; published {ref.loss:.4f}, {ref.source})"
        return Identification(claimed, claimed, True, f"identified as {claimed} {how}")
    return Identification(
        claimed,
        None,
        False,
        f"not {claimed}: its config says {claimed}, but its {shown} is not {claimed}'s {ref.loss:.4f} "
        f"({ref.source}): other weights, so {claimed}'s claims are not asserted on it",
    )


def annotate(verdicts: Iterable[Any], ident: Identification) -> list[Any]:
    """``verdicts`` (:class:`~layerclaims.verdicts.Verdict`) with ``identity`` set to ``ident``'s note about each
    one's claim model (:meth:`Identification.note`), where there is one."""
    out = []
    for v in verdicts:
        note = ident.note(v.own_model) if v.own_model else None
        out.append(dataclasses.replace(v, identity=note) if note and v.identity != note else v)
    return out
