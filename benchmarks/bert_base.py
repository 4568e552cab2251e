"""The BERT-base-shaped teacher: BertConfig() (12 layers, hidden 768, bert-base-uncased
vocabulary) with random weights, saved as a model directory and exported like a student so
that "same runtime" comparisons exist. Size and speed only: its accuracy means nothing, and
every report says so.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

from tinybert_edge.files import publish_dir
from tinybert_edge.models import load_tokenizer

from tinybert_edge.converters import SeqLenPolicy
from tinybert_edge.converters.export import export_bundles


def make_bert_base_dir(out_dir: str | Path, tokenizer_dir: str | Path, num_labels: int = 2) -> Path:
    """Save a randomly initialised BertForSequenceClassification(BertConfig()) with the given
    tokenizer (it must have bert-base-uncased's 30,522-token vocabulary), atomically.

    Raises:
        ValueError: the tokenizer's vocabulary size differs from BertConfig()'s.
    """
    tok = load_tokenizer(tokenizer_dir)
    cfg = BertConfig(num_labels=num_labels, id2label={i: f"label_{i}" for i in range(num_labels)},
                     label2id={f"label_{i}": i for i in range(num_labels)})
    if len(tok.get_vocab()) != cfg.vocab_size:
        raise ValueError(f"tokenizer of {tokenizer_dir} has {len(tok.get_vocab())} tokens, BertConfig() expects "
                         f"{cfg.vocab_size}; pass a bert-base-uncased tokenizer")

    def build(tmp: Path) -> None:
        torch.manual_seed(0)
        model = BertForSequenceClassification(cfg).eval()
        model.config.architectures = ["BertForSequenceClassification"]
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return publish_dir(build, out_dir)


def export_bert_base_bundles(out_dir: str | Path, tokenizer_dir: str | Path, formats: list[str],
                             seq_len: int = 128) -> list[Path]:
    """fp32 bundles of the BERT-base-shaped model, one per format, under out_dir.

    Validation is on three built-in sentences with threshold 0: random weights have no task to
    agree on; fp32 parity is still measured and recorded.
    """
    model = make_bert_base_dir(Path(out_dir) / "bert-base-shaped", tokenizer_dir)
    results = export_bundles(model, out_dir, formats=formats, quantizations=["none"],
                             policy=SeqLenPolicy.make(seq_len), threshold=0.0)
    return [b.path for b in results]
