"""Teachers and students: Hugging Face BERT-family models, loaded and saved as plain HF dirs.

A student is built from its teacher's config (same family, vocabulary, tokenizer, position
and type embeddings) with the preset's depth and width, so `AutoModel*.from_pretrained` loads
it with no code of ours. Training-only parts (projections) never enter the student.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from .errors import ConfigError, ModelError
from .files import publish_dir

BERT_FAMILY = ("bert", "roberta", "xlm-roberta", "electra")
RUN_MARKER = "tinybert_edge_run.json"


@dataclass(frozen=True)
class StudentPreset:
    """Shape of a student Transformer.

    Attributes:
        name: preset name.
        num_layers: M, Transformer layers.
        hidden_size: d_S.
        intermediate_size: FFN width.
        num_heads: attention heads; must equal the teacher's for the attention loss.
    """

    name: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int

    def __post_init__(self) -> None:
        for field_name in ("num_layers", "hidden_size", "intermediate_size", "num_heads"):
            if getattr(self, field_name) < 1:
                raise ConfigError(f"student {field_name} must be >= 1, got {getattr(self, field_name)}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"student hidden size {self.hidden_size} is not divisible by {self.num_heads} heads; "
                f"pick a hidden size that is a multiple of {self.num_heads} (e.g. "
                f"{self.hidden_size - self.hidden_size % self.num_heads})"
            )


PRESETS: dict[str, StudentPreset] = {
    "tinybert-4l-312d": StudentPreset("tinybert-4l-312d", 4, 312, 1200, 12),
    "tinybert-6l-768d": StudentPreset("tinybert-6l-768d", 6, 768, 3072, 12),
}


def get_preset(name: str, **overrides: int | None) -> StudentPreset:
    """A preset by name, with optional overrides (num_layers, hidden_size, ...).

    Raises:
        ConfigError: unknown preset name or invalid shape.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown student preset {name!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[name]
    values = {k: getattr(base, k) for k in ("num_layers", "hidden_size", "intermediate_size", "num_heads")}
    values.update({k: v for k, v in overrides.items() if v is not None})
    custom = any(values[k] != getattr(base, k) for k in values)
    return StudentPreset(name + ("-custom" if custom else ""), **values)


def resolve_model_dir(path: str | Path) -> Path:
    """A model directory: `path` itself, or `path/model` for a tinybert-edge run directory.

    Raises:
        ModelError: neither holds a config.json.
    """
    p = Path(path)
    if (p / "config.json").is_file():
        return p
    if (p / "model" / "config.json").is_file():
        return p / "model"
    if not p.exists():
        raise ModelError(f"model directory {p} does not exist; check the path (or run `tinybert-edge fetch`)")
    raise ModelError(f"{p} holds no config.json (nor model/config.json); point to a Hugging Face model directory")


def load_config(path: str | Path):
    """Load and check a BERT-family config.

    Raises:
        ModelError: unreadable config or a model type outside the BERT family.
    """
    d = resolve_model_dir(path)
    try:
        config = AutoConfig.from_pretrained(d)
    except Exception as e:  # transformers raises several types for bad configs
        raise ModelError(f"cannot read the config of {d}: {e}") from None
    if config.model_type not in BERT_FAMILY:
        raise ModelError(
            f"{d} is a {config.model_type!r} model; tinybert-edge distills BERT-family encoders "
            f"({', '.join(BERT_FAMILY)})"
        )
    return config


def load_tokenizer(path: str | Path):
    """Load the tokenizer saved beside a model.

    Raises:
        ModelError: the directory has no tokenizer files.
    """
    d = resolve_model_dir(path)
    if not any((d / f).is_file() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        raise ModelError(f"{d} has no tokenizer (tokenizer.json or vocab.txt); save the teacher's tokenizer there")
    try:
        return AutoTokenizer.from_pretrained(d)
    except Exception as e:
        raise ModelError(f"cannot load the tokenizer of {d}: {e}") from None


def load_encoder(path: str | Path, attn_implementation: str = "sdpa"):
    """Load a pre-trained encoder without a task head (general distillation teacher).

    Raises:
        ModelError: not BERT-family or unreadable weights.
    """
    d = resolve_model_dir(path)
    load_config(d)
    try:
        return AutoModel.from_pretrained(d, attn_implementation=attn_implementation)
    except Exception as e:
        raise ModelError(f"cannot load model weights from {d}: {e}") from None


def load_classifier(path: str | Path, attn_implementation: str = "sdpa", **kwargs):
    """Load a sequence classifier (fine-tuned teacher or distilled student).

    Args:
        path: model directory or run directory.
        attn_implementation: "sdpa" (fast) or "eager".
        **kwargs: passed to from_pretrained (num_labels, id2label, ...), for a new head.

    Raises:
        ModelError: not BERT-family, not loadable, or (without kwargs) not fine-tuned.
    """
    d = resolve_model_dir(path)
    config = load_config(d)
    if not kwargs:
        check_classifier(config, d)
    try:
        return AutoModelForSequenceClassification.from_pretrained(d, attn_implementation=attn_implementation, **kwargs)
    except Exception as e:
        raise ModelError(f"cannot load model weights from {d}: {e}") from None


def check_classifier(config, where) -> None:
    """Raise ModelError unless `config` describes a fine-tuned sequence classifier."""
    if not any(a.endswith("ForSequenceClassification") for a in (config.architectures or [])):
        raise ModelError(
            f"{where} is not a sequence classifier (architectures: {config.architectures}); "
            "fine-tune it first with `tinybert-edge finetune`"
        )


def student_config(teacher_config, preset: StudentPreset, **head_kwargs):
    """Config of a student with the teacher's family and vocabulary and the preset's shape.

    Raises:
        ConfigError: the preset's head count differs from the teacher's (the attention loss
            compares maps head by head).
    """
    if preset.num_heads != teacher_config.num_attention_heads:
        raise ConfigError(
            f"student has {preset.num_heads} heads but the teacher has {teacher_config.num_attention_heads}; "
            "the attention loss compares maps head by head, so use the teacher's head count"
        )
    d = teacher_config.to_dict()
    for key in ("architectures", "id2label", "label2id", "num_labels", "problem_type", "_name_or_path"):
        d.pop(key, None)
    d.update(
        num_hidden_layers=preset.num_layers,
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_attention_heads=preset.num_heads,
    )
    d.update(head_kwargs)
    return type(teacher_config).from_dict(d)


def max_positions(config) -> int:
    """Tokens a BERT-family model can take (RoBERTa-style position ids start after the padding index)."""
    return config.max_position_embeddings - (2 if config.model_type in ("roberta", "xlm-roberta") else 0)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model_atomically(model, tokenizer, out_dir: str | Path, extra_files: dict[str, dict] | None = None) -> Path:
    """Write a standard HF directory (config, safetensors, tokenizer, extra JSON files) atomically."""

    def build(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name, content in (extra_files or {}).items():
            (tmp / name).write_text(json.dumps(content, indent=2) + "\n")

    return publish_dir(build, out_dir)


