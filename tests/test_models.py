"""Student presets and teacher checks."""

import json

import pytest

from tinybert_edge.errors import ConfigError, ModelError
from tinybert_edge.models import get_preset, load_config, load_tokenizer, resolve_model_dir, student_config
from conftest import tiny_config


def test_presets_have_the_paper_shapes():
    p4 = get_preset("tinybert-4l-312d")
    assert (p4.num_layers, p4.hidden_size, p4.intermediate_size, p4.num_heads) == (4, 312, 1200, 12)
    p6 = get_preset("tinybert-6l-768d")
    assert (p6.num_layers, p6.hidden_size, p6.intermediate_size, p6.num_heads) == (6, 768, 3072, 12)


def test_head_count_must_divide_hidden_size():
    with pytest.raises(ConfigError, match="not divisible by 12 heads"):
        get_preset("tinybert-4l-312d", hidden_size=310)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown student preset"):
        get_preset("tinybert-99l")


def test_student_config_keeps_teacher_vocab_and_family():
    t = tiny_config(6)
    s = student_config(t, get_preset("tinybert-4l-312d"), num_labels=3)
    assert (s.vocab_size, s.max_position_embeddings, s.model_type) == (t.vocab_size, 64, "bert")
    assert (s.num_hidden_layers, s.hidden_size, s.num_labels) == (4, 312, 3)
    with pytest.raises(ConfigError, match="heads"):
        student_config(t, get_preset("tinybert-4l-312d", num_heads=6))


def test_non_bert_teacher_and_missing_tokenizer_are_refused(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=16, n_head=2).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ModelError, match="'gpt2' model"):
        load_config(tmp_path / "gpt2")
    tiny_config(2).save_pretrained(tmp_path / "bert")
    with pytest.raises(ModelError, match="no tokenizer"):
        load_tokenizer(tmp_path / "bert")
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model_dir(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model_dir(tmp_path / "empty")
    assert json.loads((tmp_path / "bert" / "config.json").read_text())["model_type"] == "bert"
