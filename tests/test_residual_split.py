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
from conftest import WORDS, make_tokenizer, plant_ffn_outlier, tiny_config, write_tsv

pytestmark = pytest.mark.slow

TEXTS = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(3 + (i * 5) % 40)) for i in range(24)]
TRAIN = [" ".join(WORDS[(i * 3 + j * 5) % len(WORDS)] for j in range(2 + i % 9)) for i in range(160)]
OUTLIER_DIM = 7


def _classifier(dir_, outlier: bool):
    """A 2-layer BERT classifier of hidden size 96; with `outlier`, every LayerNorm writes hidden
    dimension OUTLIER_DIM ~20 (its bias), as trained BERTs' LayerNorms write their outlier dimensions,
    and layer 1's FFN has an outlier channel (conftest.plant_ffn_outlier)."""
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
            # and an FFN outlier channel in layer 1, so that the FFN split nests inside the residual split
            plant_ffn_outlier(b.encoder.layer[1])
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
    # per layer: Q, K and V read two slices each (6 linears); the FFN input reads two slices per block
    # (two blocks where split_ffn_outliers found outlier channels); the FFN output writes head and
    # tail, each two linears where the FFN split nests inside (ChannelSplitLinear)
    layers = model.model.bert.encoder.layer
    ffn_split = [not hasattr(layer.intermediate, "dense") for layer in layers]
    assert ffn_split == [False, True], "the planted FFN outlier was not split off in layer 1"
    expected = sum(6 + 2 * (2 if split else 1) + 2 * (2 if split else 1) for split in ffn_split)
    assert len(split_linears) == expected, [module_kind(n) for n in split_linears]
    assert all(observed(n) for n in split_linears), "a linear of the split lost its int8 output range"


def test_auto_ships_what_its_rule_chooses_and_the_pte_runs_the_split_graph(models, tmp_path, monkeypatch):
    """export_bundles with --outlier-dims auto records both graphs' calibration SQNR in metadata.json
    (which the schema accepts: load_bundle validates it) and ships the graph its rule chose: forced
    to keep the split (gain threshold -inf) it writes the `split` bundle's .pte byte for byte, forced
    to refuse it (+inf) the `off` bundle's. The split .pte tracks fp32 as PyTorch's reference form
    of the split graph does."""
    import math

    from tinybert_edge.converters import executorch
    from tinybert_edge.converters.bundle import load_bundle
    from tinybert_edge.converters.export import export_bundles

    data = write_tsv(tmp_path / "dev.tsv", [(t, "neg" if i % 2 else "pos") for i, t in enumerate(TEXTS)])
    train = write_tsv(tmp_path / "train.tsv", [(t, "pos") for t in TRAIN])
    policy = SeqLenPolicy.make(48, buckets=[16, 48])

    def export(name, mode, threshold=executorch.RESIDUAL_SPLIT_GAIN_DB):
        monkeypatch.setattr(executorch, "RESIDUAL_SPLIT_GAIN_DB", threshold)
        [b] = export_bundles(models["outlier"], tmp_path / name, formats=["executorch"], quantizations=["int8-static"],
                             policy=policy, data=data, calibration_data=train, calibration_size=64, outlier_dims=mode)
        return b, load_bundle(b.path, allow_failed=True).metadata

    bundles = {"split": export("split", "split"), "off": export("off", "off"),
               "auto-on": export("auto-on", "auto", -math.inf), "auto-off": export("auto-off", "auto", math.inf)}
    record = {k: m["quantization"].get("residual_outlier_split") for k, (_, m) in bundles.items()}
    sha = {k: m["files"]["model.pte"]["sha256"] for k, (_, m) in bundles.items()}
    assert record["off"] is None and "residual" not in bundles["off"][1]["quantization"]["recipe"]
    assert record["split"]["applied"] and record["split"]["dims"] == [OUTLIER_DIM]
    assert "residual outlier dimensions [7]" in bundles["split"][1]["quantization"]["recipe"]
    assert record["auto-on"]["applied"] and sha["auto-on"] == sha["split"]
    assert not record["auto-off"]["applied"] and sha["auto-off"] == sha["off"]
    assert "under the +inf dB" in record["auto-off"]["reason"]
    for k in ("auto-on", "auto-off"):  # both graphs scored on the calibration texts, the same in both runs
        assert set(record[k]["calibration_sqnr_db"]) == {"with", "without"}
    assert record["auto-on"]["calibration_sqnr_db"] == record["auto-off"]["calibration_sqnr_db"]
    assert record["auto-on"]["calibration_sqnr_db"]["with"] == record["split"]["calibration_sqnr_db"]["with"]
    # the FFN split recorded is the shipped graph's (its activation form under the residual split)
    assert bundles["auto-off"][1]["quantization"]["ffn_outlier_split"] == \
        bundles["off"][1]["quantization"]["ffn_outlier_split"]

    # the split .pte against the split graph in PyTorch's reference form, on the validation texts
    from tinybert_edge.converters.executorch import Int8RowwiseEmbedding, _residual_outlier_split, _word_embeddings_owner
    from tinybert_edge.converters.export import calibration_sample, load_for_export
    from tinybert_edge.converters.outliers import unpadded_inputs
    from tinybert_edge.converters.runtime import tokenize

    wrapper, tok, _ = load_for_export(models["outlier"], xnnpack=True, keep_mask=True)
    base = copy.deepcopy(wrapper)
    owner, name = _word_embeddings_owner(base.model)
    setattr(owner, name, Int8RowwiseEmbedding(getattr(owner, name)))
    cal_rows = tokenize(tok, calibration_sample(TRAIN, None, 64, "test")[0], None, 48)
    rows = tokenize(tok, TEXTS, None, 48)
    graph, again, _ = _residual_outlier_split(base, None, wrapper, unpadded_inputs(cal_rows, tok.pad_token_id),
                                              cal_rows, rows, tok, 48, "split")
    assert again["calibration_sqnr_db"]["with"] == record["split"]["calibration_sqnr_db"]["with"]  # the same graph
    reference_form = executorch.logit_sqnr(graph, wrapper, unpadded_inputs(rows, tok.pad_token_id))
    shipped = bundles["split"][0].result.parity.sqnr_db
    # XNNPACK rounds its int8 linears its own way (BENCHMARKS.md: on the teacher the two differ by half
    # the quantization error), so the two track fp32 alike rather than bit for bit
    assert abs(shipped - reference_form) < 2.0, (shipped, reference_form)


def test_auto_ships_the_plain_graph_when_the_split_graph_fails_to_lower(models, tmp_path, monkeypatch):
    """XNNPACK once refused the split graph at load (a pad after a quantized tensor; fixed): auto then
    ships the plain graph and says why. The refusal is simulated here, on the first lowering only,
    because no split graph this kit builds fails any more."""
    import math

    from tinybert_edge.converters import executorch

    monkeypatch.setattr(executorch, "RESIDUAL_SPLIT_GAIN_DB", -math.inf)
    real_lower, calls = executorch._lower, []

    def failing_once(module, *args):
        calls.append(module)
        if len(calls) == 1:
            raise ExportError("XNNPACK refused a node (simulated)")
        return real_lower(module, *args)

    monkeypatch.setattr(executorch, "_lower", failing_once)
    r = executorch.export_pte(models["outlier"], tmp_path / "x.pte", quantization="int8-static",
                              policy=SeqLenPolicy.make(48, dynamic=True), texts=TEXTS, calibration_texts=TRAIN,
                              calibration_size=64)
    record = r.details["residual_outlier_split"]
    assert len(calls) == 2 and calls[0] is not calls[1]
    assert not record["applied"] and "failed to lower or run: XNNPACK refused a node (simulated)" in record["reason"]
    assert "residual outlier dimensions" not in r.details["recipe"]
    # the FFN split recorded is the plain graph's (slice form: the channels of the plain run)
    assert r.parity.sqnr_db > 10.0, r.parity


@pytest.mark.parametrize("family", ["roberta", "electra"])
def test_the_rewrites_keep_roberta_and_electra_classifiers_exact(family):
    """RoBERTa and ELECTRA classifiers have no pooler (their head reads the stream's [CLS] row), and
    an ELECTRA whose embedding size differs from its hidden size projects its embeddings: the
    reordering and the split keep both the same function."""
    from transformers import (AutoModelForSequenceClassification, ElectraConfig, RobertaConfig)

    from tinybert_edge.converters.export import ExportableClassifier
    from tinybert_edge.converters.outliers import (order_residual_outliers, permute_hidden, split_ffn_outliers,
                                                   split_residual_outliers)

    torch.manual_seed(0)
    common = dict(vocab_size=120, hidden_size=96, num_hidden_layers=2, num_attention_heads=12, intermediate_size=192,
                  max_position_embeddings=64, num_labels=3)
    config = RobertaConfig(**common) if family == "roberta" else ElectraConfig(embedding_size=48, **common)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    with torch.no_grad():
        for layer in model.base_model.encoder.layer:
            layer.output.LayerNorm.bias[OUTLIER_DIM] = 20.0
    wrapper = ExportableClassifier(model).eval()
    inputs = [(ids, torch.ones_like(ids), torch.zeros_like(ids))
              for ids in (torch.randint(3, 120, (1, n), generator=torch.Generator().manual_seed(n)) for n in (5, 9, 17))]
    with torch.no_grad():
        before = [wrapper(*x) for x in inputs]
        permute_hidden(wrapper, torch.randperm(96, generator=torch.Generator().manual_seed(1)))
        for x, ref in zip(inputs, before):
            torch.testing.assert_close(wrapper(*x), ref, atol=1e-4, rtol=1e-4)
    record = order_residual_outliers(wrapper, inputs)
    assert record["dims"], record  # the planted dimension, wherever the random permutation put it
    split_ffn_outliers(wrapper, inputs, form="activation")
    split_residual_outliers(wrapper, len(record["dims"]), inputs)
    with torch.no_grad():
        for x, ref in zip(inputs, before):
            torch.testing.assert_close(wrapper(*x), ref, atol=1e-4, rtol=1e-4)


def test_auto_is_not_tried_with_gptq_or_without_calibration_texts(models, tmp_path):
    from tinybert_edge.converters.executorch import export_pte

    policy = SeqLenPolicy.make(48, dynamic=True)
    r = export_pte(models["outlier"], tmp_path / "g.pte", quantization="int8-static", policy=policy, texts=TEXTS,
                   calibration_texts=TRAIN, calibration_size=64, weight_rounding="gptq")
    assert r.details["residual_outlier_split"] == {"mode": "auto", "applied": False,
                                                   "reason": "not tried with --weight-rounding gptq"}
    r = export_pte(models["outlier"], tmp_path / "n.pte", quantization="int8-static", policy=policy, texts=TEXTS * 6,
                   calibration_size=64)
    assert r.details["residual_outlier_split"] == {"mode": "auto", "applied": False,
                                                   "reason": "not tried without calibration texts"}


def test_litert_int8_static_splits_alike_and_keeps_the_split_linears_int8(models, tmp_path):
    """--format tflite --quantize int8-static --outlier-dims split: the same rewrite, the joins (slices,
    sums, placement) in float and every fully-connected op still int8, validated through
    ai-edge-litert; --outlier-dims auto leaves LiteRT's int8-static as it was."""
    from tinybert_edge.converters.bundle import load_bundle
    from tinybert_edge.converters.export import export_bundles
    from tinybert_edge.converters.litert_static import is_split_join_scope, op_dtypes_by_signature

    data = write_tsv(tmp_path / "dev.tsv", [(t, "neg" if i % 2 else "pos") for i, t in enumerate(TEXTS)])
    train = write_tsv(tmp_path / "train.tsv", [(t, "pos") for t in TRAIN])
    metas, paths = {}, {}
    for mode in ("split", "auto"):
        [b] = export_bundles(models["outlier"], tmp_path / mode, formats=["tflite"], quantizations=["int8-static"],
                             policy=SeqLenPolicy.make(48, buckets=[16, 48]), data=data, calibration_data=train,
                             calibration_size=64, outlier_dims=mode)
        metas[mode], paths[mode] = load_bundle(b.path, allow_failed=True).metadata, b.path
        assert b.validation.label_agreement is not None
    record = metas["split"]["quantization"]["residual_outlier_split"]
    assert record["applied"] and record["dims"] == [OUTLIER_DIM], record
    assert "residual_outlier_split" not in metas["auto"]["quantization"]
    for mode, meta in metas.items():
        model = (paths[mode] / meta["artifact"]).read_bytes()
        for sig, kinds in op_dtypes_by_signature(model).items():
            floats = kinds.get("float32", {})
            assert "FULLY_CONNECTED" not in floats, (mode, sig, floats)  # every linear stays int8
            assert ("SLICE" in floats) == (mode == "split"), (mode, sig, floats)  # the split's slices, in float
    # the rule on names as litert-torch writes them: a linear inside a split module is int8 even when
    # the converter names its output after the split module (a fused name); the placement is float
    rsl = "m/tinybert_edge.converters.outliers.ResidualSplitLinear_query"
    assert is_split_join_scope(f"{rsl};x", "SLICE") and is_split_join_scope(f"{rsl};x", "ADD")
    assert not is_split_join_scope(f"{rsl}/torch.nn.modules.linear.Linear_rest;x", "FULLY_CONNECTED")
    assert not is_split_join_scope(f"{rsl};{rsl}/torch.nn.modules.linear.Linear_rest", "FULLY_CONNECTED")
    place = "m/tinybert_edge.converters.outliers.RowSplitLinear_dense/tinybert_edge.converters.outliers.Placement_place"
    assert is_split_join_scope(f"{place};x", "MUL") and is_split_join_scope(f"{place};x", "FULLY_CONNECTED")
    assert not is_split_join_scope("m/transformers.models.bert.modeling_bert.BertOutput_output;x", "ADD")


def test_int8_qat_trains_the_split_graph(models, tmp_path):
    """int8-qat --outlier-dims split: QAD starts from int8-static's ranges on the split graph and
    trains it; the .pte runs and tracks fp32, and metadata and recipe say so."""
    from tinybert_edge.converters.executorch import export_pte
    from tinybert_edge.converters.export import QadSettings

    r = export_pte(models["outlier"], tmp_path / "q.pte", quantization="int8-qat",
                   policy=SeqLenPolicy.make(48, buckets=[16, 48]), texts=TEXTS, qad_texts=TRAIN,
                   qad=QadSettings(steps=20, batch_size=8), calibration_size=64, outlier_dims="split")
    record = r.details["residual_outlier_split"]
    assert record["mode"] == "split" and record["applied"] and record["dims"] == [OUTLIER_DIM], record
    assert "quantization-aware distillation" in r.details["recipe"]
    assert "residual outlier dimensions [7]" in r.details["recipe"]
    assert r.details["quantization_aware_distillation"]["steps"] == 20
    assert r.parity.sqnr_db > 10.0, r.parity
    # auto leaves int8-qat unsplit (QAD is the slow part; no second graph is trained)
    plain = export_pte(models["outlier"], tmp_path / "p.pte", quantization="int8-qat",
                       policy=SeqLenPolicy.make(48, dynamic=True), texts=TEXTS, qad_texts=TRAIN,
                       qad=QadSettings(steps=6, batch_size=8), calibration_size=64)
    assert "residual_outlier_split" not in plain.details and "residual" not in plain.details["recipe"]


def test_bad_outlier_dims_requests(models, tmp_path):
    from tinybert_edge.converters.executorch import export_pte
    from tinybert_edge.converters.export import export_bundles

    train = write_tsv(tmp_path.parent / f"{tmp_path.name}-train.tsv", [(t, "pos") for t in TRAIN])
    with pytest.raises(ExportError, match="--outlier-dims split applies to --format executorch or tflite --quantize "
                                          "int8-static"):
        export_bundles(models["outlier"], tmp_path / "b", formats=["tflite"], quantizations=["int16x8"],
                       seq_len=48, calibration_data=train, calibration_size=64, outlier_dims="split")
    with pytest.raises(ExportError, match="unknown --outlier-dims 'some'"):
        export_bundles(models["outlier"], tmp_path / "b", formats=["executorch"], quantizations=["int8-static"],
                       seq_len=48, calibration_data=train, calibration_size=64, outlier_dims="some")
    with pytest.raises(ExportError, match=r"--outlier-dims split applies to --quantize int8-static \(with "
                                          r"--calibration-data\) or int8-qat, with --weight-rounding nearest"):
        export_pte(models["outlier"], tmp_path / "x.pte", quantization="int8-static", texts=TEXTS,
                   calibration_texts=TRAIN, calibration_size=64, weight_rounding="gptq", outlier_dims="split")
    # a model without outlier dimensions: split is refused with the fix before the first bundle (int8 here)
    # is written
    with pytest.raises(ExportError, match="no hidden dimension of this model stands out.*--outlier-dims auto or off"):
        export_bundles(models["plain"], tmp_path / "b", formats=["executorch"], quantizations=["int8", "int8-static"],
                       policy=SeqLenPolicy.make(48, dynamic=True), calibration_data=train, calibration_size=64,
                       outlier_dims="split")
    assert not list(tmp_path.iterdir())
