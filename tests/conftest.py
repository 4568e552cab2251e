"""Shared fixtures: a tiny BERT teacher with a real WordPiece tokenizer, and small data files.

The tiny teacher has 12 heads (hidden 48) so the default student preset (12 heads) can learn
from it; 6 layers so the default 4-layer student needs a non-divisible layer map.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest


def pytest_configure(config):
    # General-distillation students made by the tests go to a throwaway cache (inherited by the
    # subprocesses the tests start), never into the user's.
    os.environ["TINYBERT_EDGE_GD_CACHE"] = tempfile.mkdtemp(prefix="tinybert-edge-gd-cache-")

WORDS = ("the a film movie is was good bad great awful fun dull plot actor story music long short funny sad "
         "best worst love hate boring brilliant and but not very too so this that it of to in with").split()


def _vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = specials + list(".,!?'") + letters + ["##" + c for c in letters] + sorted(set(WORDS))
    return list(dict.fromkeys(tokens))  # "a" is a letter and a word: ids must stay dense


def make_tokenizer(dir_: Path):
    from transformers import BertTokenizerFast

    dir_.mkdir(parents=True, exist_ok=True)
    (dir_ / "vocab.txt").write_text("\n".join(_vocab()) + "\n")
    vocab = {w: i for i, w in enumerate(_vocab())}
    tok = BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=64)
    return tok


def tiny_config(layers: int = 6, **kw):
    from transformers import BertConfig

    base = dict(vocab_size=len(_vocab()), hidden_size=48, num_hidden_layers=layers, num_attention_heads=12,
                intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.1,
                attention_probs_dropout_prob=0.1)
    base.update(kw)
    return BertConfig(**base)


def make_tiny_model_dir(dir_: Path, classifier: bool, labels=("neg", "pos"), layers: int = 6, seed: int = 0,
                        logit_scale: float = 1.0) -> Path:
    """A tiny random BERT (classifier or base) with its tokenizer, saved in `dir_`.

    logit_scale multiplies the classifier's weights: a random tiny head gives logits near 0.004,
    where quantization error hides; 300 gives a trained classifier's size (about 1), so that
    quantization error can move probabilities and flip labels, and parity figures mean something.
    """
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    torch.manual_seed(seed)
    tok = make_tokenizer(dir_)
    if classifier:
        cfg = tiny_config(layers, num_labels=len(labels), id2label=dict(enumerate(labels)),
                          label2id={lab: i for i, lab in enumerate(labels)})
        model = AutoModelForSequenceClassification.from_config(cfg)
        model.config.architectures = ["BertForSequenceClassification"]
        with torch.no_grad():
            model.classifier.weight.mul_(logit_scale)
    else:
        model = AutoModel.from_config(tiny_config(layers))
        model.config.architectures = ["BertModel"]
    model.save_pretrained(dir_)
    tok.save_pretrained(dir_)
    return dir_


def sentences(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pos = "good great fun brilliant best love funny".split()
    neg = "bad awful dull boring worst hate sad".split()
    out = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(pos if label == "pos" else neg))
        out.append((" ".join(words), label))
    return out


FIVE_LABELS = ("anger", "fear", "joy", "love", "sadness")


def five_class_rows(n: int, seed: int, long_first: bool = False) -> list[tuple[str, str]]:
    """Rows unlike Rotten Tomatoes: five labels in turn, and (long_first) a first row of 90 words,
    longer than every bucket, which the exporters cut to the last one."""
    rows = [(text, FIVE_LABELS[i % len(FIVE_LABELS)]) for i, (text, _) in enumerate(sentences(n, seed=seed))]
    if long_first:
        rows[0] = (" ".join(["brilliant awful funny"] * 30), rows[0][1])
    return rows


def plant_ffn_outlier(layer, channel: int = 5, size: float = 40.0, row_scale: float = 0.0) -> None:
    """Make FFN channel `channel` of a BERT layer (anything with .intermediate.dense and
    .output.dense) output ~`size` after GELU on every token, read gently by the next linear (x0.05):
    the outlier channel trained BERTs have at [CLS]. row_scale multiplies the channel's input
    weights (0: none; LiteRT's quantizer needs a row that is not all zero, whose int8 scale would be 0)."""
    import torch

    with torch.no_grad():
        layer.intermediate.dense.weight[channel].mul_(row_scale)
        layer.intermediate.dense.bias[channel] = size
        layer.output.dense.weight[:, channel] *= 0.05


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    teacher_base = make_tiny_model_dir(root / "teacher_base", classifier=False)
    teacher_cls = make_tiny_model_dir(root / "teacher_cls", classifier=True)
    train = write_tsv(root / "train.tsv", sentences(48, seed=1))
    dev = write_tsv(root / "dev.tsv", sentences(20, seed=2))
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(t for t, _ in sentences(40, seed=3)) + "\n")
    return {"root": root, "teacher_base": teacher_base, "teacher_cls": teacher_cls, "train": train, "dev": dev,
            "corpus": corpus}


@pytest.fixture(scope="session")
def real_assets():
    """The embedded default (MiniLM teacher, Rotten Tomatoes, corpus), fetched once into the cache."""
    from tinybert_edge.fetch import fetch_default

    return fetch_default()
