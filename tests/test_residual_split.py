"""ExecuTorch int8-static's residual outlier split (converters/outliers.py, executorch.py): the
hidden dimensions BERT writes far larger than the rest get their own static int8 ranges.

Real components throughout: tiny HF BERT classifiers (one with a planted outlier dimension, one
without), PT2E with the XNNPACK quantizer, and the ExecuTorch runtime running the .pte.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tinybert_edge.converters import ExportError, SeqLenPolicy
from conftest import WORDS, make_tokenizer, tiny_config, write_tsv

pytestmark = pytest.mark.slow

TEXTS = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(3 + (i * 5) % 40)) for i in range(24)]
TRAIN = [" ".join(WORDS[(i * 3 + j * 5) % len(WORDS)] for j in range(2 + i % 9)) for i in range(160)]
OUTLIER_DIM = 7


def _classifier(dir_, outlier: bool):
    """A 2-layer BERT classifier of hidden size 96; with `outlier`, every LayerNorm writes hidden
    dimension OUTLIER_DIM ~20 (its bias), as trained BERTs' LayerNorms write their outlier dimensions."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(7)
    tok = make_tokenizer(dir_)
    cfg = tiny_config(2, hidden_size=96, intermediate_size=192, num_labels=2, id2label={0: "neg", 1: "pos"},
                      label2id={"neg": 0, "pos": 1})
    model = AutoModelForSequenceClassification.from_config(cfg)
    model.config.architectures = ["BertForSequenceClassification"]
    with torch.no_grad():
        model.classifier.weight.mul_(300.0)  # logits of a trained classifier's size (conftest says why)
        if outlier:
            b = model.bert
            for ln in [b.embeddings.LayerNorm] + [m for layer in b.encoder.layer
                                                  for m in (layer.attention.output.LayerNorm, layer.output.LayerNorm)]:
                ln.bias[OUTLIER_DIM] = 20.0
    model.save_pretrained(dir_)
    tok.save_pretrained(dir_)
    return dir_


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("resid")
    return {"outlier": _classifier(root / "outlier", True), "plain": _classifier(root / "plain", False)}


def _wrapper_and_inputs(model_dir, texts):
    from tinybert_edge.converters.export import load_for_export
    from tinybert_edge.converters.outliers import unpadded_inputs
    from tinybert_edge.converters.runtime import tokenize

    wrapper, tok, _ = load_for_export(model_dir, xnnpack=True, keep_mask=True)
    return wrapper, unpadded_inputs(tokenize(tok, texts, None, 48), tok.pad_token_id)


def test_finds_the_outlier_dimension_and_every_rewrite_keeps_the_function(models):
    from tinybert_edge.converters.executorch import Int8RowwiseEmbedding, _word_embeddings_owner
    from tinybert_edge.converters.outliers import (ResidualSplitLinear, RowSplitLinear, order_residual_outliers,
                                                   permute_hidden, split_ffn_outliers, split_residual_outliers)

    wrapper, cal = _wrapper_and_inputs(models["outlier"], TRAIN[:48])
    _, held = _wrapper_and_inputs(models["outlier"], TEXTS)
    model = copy.deepcopy(wrapper)
    owner, name = _word_embeddings_owner(model.model)  # as int8-static exports it: int8 rows, a scale each
    setattr(owner, name, Int8RowwiseEmbedding(getattr(owner, name)))
    with torch.no_grad():
        int8_reference = [model(*x) for x in held]
    # a random permutation of the hidden dimensions is the same function (int8 table included)
    shuffled = copy.deepcopy(model)
    with torch.no_grad():
        permute_hidden(shuffled, torch.randperm(96, generator=torch.Generator().manual_seed(0)))
        for x, ref in zip(held, int8_reference):
            torch.testing.assert_close(shuffled(*x), ref, atol=1e-4, rtol=1e-4)

    record = order_residual_outliers(model, cal)
    assert record["dims"] == [OUTLIER_DIM], record
    assert record["score"][0] > 10 * record["next_score"], record
    split_ffn_outliers(model, cal, form="activation")
    split_residual_outliers(model, 1, cal)
    layers = model.model.bert.encoder.layer
    assert all(isinstance(layer.attention.self.query, ResidualSplitLinear) for layer in layers)
    assert all(isinstance(layer.output.dense, RowSplitLinear) for layer in layers)
    with torch.no_grad():
        for x, ref in zip(held, int8_reference):
            torch.testing.assert_close(model(*x), ref, atol=1e-4, rtol=1e-4)

    # control: a model without an outlier dimension has none, and is left as it was
    plain, plain_cal = _wrapper_and_inputs(models["plain"], TRAIN[:48])
    before = copy.deepcopy(plain.state_dict())
    assert order_residual_outliers(plain, plain_cal)["dims"] == []
    assert all(torch.equal(before[k], v) for k, v in plain.state_dict().items())


def test_the_split_joins_stay_fp32_and_its_linears_int8(models):
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from tinybert_edge.converters.outliers import order_residual_outliers, split_ffn_outliers, split_residual_outliers
    from tinybert_edge.converters.qat import is_split_join, static_int8_quantizer

    model, cal = _wrapper_and_inputs(models["outlier"], TRAIN[:32])
    order_residual_outliers(model, cal)
    split_ffn_outliers(model, cal, form="activation")
    split_residual_outliers(model, 1, cal)
    prepared = prepare_pt2e(torch.export.export(model, cal[0]).module(), static_int8_quantizer(qat=False))

    def observed(node):
        return any("activation_post_process" in str(u.target) for u in node.users)

    def module_kind(node):
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        return str(stack[-1][1]) if stack else ""

    joins = [n for n in prepared.graph.nodes if is_split_join(n)]
    kinds = {str(n.target).split(".")[1] for n in joins if "aten" in str(n.target)}
    assert {"slice", "add", "linear"} <= kinds, kinds  # the input slices, the fp32 sums, the placement
    # the sums and the placement compute in fp32 (no range on their outputs); each slice's output is
    # observed as the input of its own split linear, which is the point of the split
    sums = [n for n in joins if "slice" not in str(n.target)]
    assert not [n.name for n in sums if observed(n)], "a join of the residual split got a static range"
    slices = [n for n in joins if "slice" in str(n.target)]
    assert all(observed(n) and all("linear" in str(v.target) for u in n.users for v in u.users) for n in slices)
    split_linears = [n for n in prepared.graph.nodes if "linear" in str(n.target) and not is_split_join(n)
                     and ("ResidualSplitLinear" in str(node_stack := n.meta.get("nn_module_stack")) or
                          "RowSplitLinear" in str(node_stack))]
    # Q, K, V and the FFN input linear(s) read two slices each (the FFN input is two blocks where
    # split_ffn_outliers found outlier channels); the FFN output writes head and tail
    ffn_inputs = sum(1 if hasattr(layer.intermediate, "dense") else 2 for layer in model.model.bert.encoder.layer)
    assert len(split_linears) == 2 * (3 * 2 + ffn_inputs) + 2 * 2, [module_kind(n) for n in split_linears]
    assert all(observed(n) for n in split_linears), "a linear of the split lost its int8 output range"


def test_auto_keeps_the_split_for_a_clear_gain_only_and_the_pte_runs_it(models, tmp_path):
    """export_bundles with --outlier-dims auto records the decision in metadata.json (which the
    schema accepts: load_bundle validates it) and follows its rule; split ships the split graph,
    which the ExecuTorch runtime runs as PyTorch's reference form of it computes."""
    from tinybert_edge.converters.bundle import load_bundle
    from tinybert_edge.converters.executorch import RESIDUAL_SPLIT_GAIN_DB, _residual_outlier_split, logit_sqnr
    from tinybert_edge.converters.export import export_bundles

    data = write_tsv(tmp_path / "dev.tsv", [(t, "neg" if i % 2 else "pos") for i, t in enumerate(TEXTS)])
    train = write_tsv(tmp_path / "train.tsv", [(t, "pos") for t in TRAIN])
    policy = SeqLenPolicy.make(48, buckets=[16, 48])
    bundles = {}
    for mode in ("auto", "split", "off"):
        [bundles[mode]] = export_bundles(models["outlier"], tmp_path / mode, formats=["executorch"],
                                         quantizations=["int8-static"], policy=policy, data=data,
                                         calibration_data=train, calibration_size=64, outlier_dims=mode)
    meta = {m: load_bundle(b.path, allow_failed=True).metadata["quantization"] for m, b in bundles.items()}
    auto, split = meta["auto"]["residual_outlier_split"], meta["split"]["residual_outlier_split"]
    assert auto["dims"] == split["dims"] == [OUTLIER_DIM]
    gain = auto["calibration_sqnr_db"]["with"] - auto["calibration_sqnr_db"]["without"]
    assert auto["applied"] == (gain >= RESIDUAL_SPLIT_GAIN_DB), auto
    assert split["applied"] and split["calibration_sqnr_db"]["with"] == auto["calibration_sqnr_db"]["with"]
    assert "residual outlier dimensions [7]" in meta["split"]["recipe"], meta["split"]["recipe"]
    assert "residual_outlier_split" not in meta["off"] and "residual" not in meta["off"]["recipe"]
    # the unsplit bundles are the same graph: auto that kept it computes what off computes
    if not auto["applied"]:
        assert bundles["auto"].validation.label_agreement == bundles["off"].validation.label_agreement

    # the split .pte against the split graph in PyTorch's reference form, on the validation texts
    from tinybert_edge.converters.executorch import Int8RowwiseEmbedding, _word_embeddings_owner
    from tinybert_edge.converters.export import calibration_sample, load_for_export
    from tinybert_edge.converters.outliers import unpadded_inputs
    from tinybert_edge.converters.runtime import tokenize

    wrapper, tok, _ = load_for_export(models["outlier"], xnnpack=True, keep_mask=True)
    base = copy.deepcopy(wrapper)
    owner, name = _word_embeddings_owner(base.model)
    setattr(owner, name, Int8RowwiseEmbedding(getattr(owner, name)))
    cal_rows = tokenize(tok, calibration_sample(TRAIN, None, 64, "test")[0], None, 48)
    rows = tokenize(tok, TEXTS, None, 48)
    graph, record, _ = _residual_outlier_split(base, None, wrapper, unpadded_inputs(cal_rows, tok.pad_token_id),
                                               cal_rows, rows, tok, 48, "split")
    assert record["calibration_sqnr_db"]["with"] == split["calibration_sqnr_db"]["with"]  # the same graph
    reference_form = logit_sqnr(graph, wrapper, unpadded_inputs(rows, tok.pad_token_id))
    # XNNPACK rounds its int8 linears its own way (BENCHMARKS.md: the teacher's differ by half the
    # quantization error), so the two track fp32 alike rather than bit for bit
    assert abs(bundles["split"].result.parity.sqnr_db - reference_form) < 3.0, (bundles["split"].result.parity,
                                                                             reference_form)


def test_bad_outlier_dims_requests(models, tmp_path):
    from tinybert_edge.converters.executorch import export_pte
    from tinybert_edge.converters.export import export_bundles

    train = write_tsv(tmp_path.parent / f"{tmp_path.name}-train.tsv", [(t, "pos") for t in TRAIN])
    with pytest.raises(ExportError, match="--outlier-dims split applies to --format executorch --quantize int8-static"):
        export_bundles(models["outlier"], tmp_path / "b", formats=["tflite"], quantizations=["int8-static"],
                       seq_len=48, calibration_data=train, calibration_size=64, outlier_dims="split")
    with pytest.raises(ExportError, match="unknown --outlier-dims 'some'"):
        export_bundles(models["outlier"], tmp_path / "b", formats=["executorch"], quantizations=["int8-static"],
                       seq_len=48, calibration_data=train, calibration_size=64, outlier_dims="some")
    with pytest.raises(ExportError, match="--outlier-dims split applies to --quantize int8-static with "
                                          "--weight-rounding nearest"):
        export_pte(models["outlier"], tmp_path / "x.pte", quantization="int8-static", texts=TEXTS,
                   calibration_texts=TRAIN, calibration_size=64, weight_rounding="gptq", outlier_dims="split")
    # a model without outlier dimensions: split is refused with the fix, and nothing is written
    with pytest.raises(ExportError, match="no hidden dimension of this model stands out.*--outlier-dims auto or off"):
        export_bundles(models["plain"], tmp_path / "b", formats=["executorch"], quantizations=["int8-static"],
                       policy=SeqLenPolicy.make(48, dynamic=True), calibration_data=train, calibration_size=64,
                       outlier_dims="split")
    assert not list(tmp_path.iterdir())
