"""Quantization-aware distillation (int8-qat) through the real PT2E quantizer, the real
ExecuTorch exporter and ExecuTorch's Python runtime, on a tiny classifier built here: the
training repeats exactly and stays near post-training int8, LayerNorm and Add & Norm stay out of
the static ranges, the FFN outlier split keeps the fp32 function and tightens static int8, the
.pte runs what PyTorch ran, and bad requests are refused with nothing written."""

import copy

import pytest
import torch

from tinybert_edge.converters import ExportError, SeqLenPolicy, get_format
from conftest import WORDS, make_tiny_model_dir, plant_ffn_outlier, write_tsv

pytestmark = pytest.mark.slow

TEXTS = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(3 + (i * 5) % 40)) for i in range(24)]
TRAIN = [" ".join(WORDS[(i * 3 + j * 5) % len(WORDS)] for j in range(2 + i % 9)) for i in range(160)]


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("cls") / "m", classifier=True, layers=2, seed=7,
                               logit_scale=300.0)


def _task_files(tmp_path):
    """dev.tsv (TEXTS, labels alternating) and train.tsv (TRAIN) in tmp_path."""
    return (write_tsv(tmp_path / "dev.tsv", [(t, "neg" if i % 2 else "pos") for i, t in enumerate(TEXTS)]),
            write_tsv(tmp_path / "train.tsv", [(t, "pos") for t in TRAIN]))


def _rows(model_dir, texts, max_len=48):
    from tinybert_edge.converters.export import load_for_export
    from tinybert_edge.converters.runtime import tokenize

    wrapper, tok, _ = load_for_export(model_dir, xnnpack=True, keep_mask=True)
    return wrapper, tokenize(tok, texts, None, max_len)


def test_length_batches_are_unpadded_and_seeded(tiny_classifier):
    from tinybert_edge.converters.qat import length_batches

    _, rows = _rows(tiny_classifier, TRAIN)
    a = length_batches(rows, 8, seed=3)
    assert sum(b[0].shape[0] for b in a) == sum(len(r[0]) >= 2 for r in rows)
    for ids, mask, types in a:
        assert ids.shape == mask.shape == types.shape and ids.shape[0] <= 8
        assert bool(mask.all()), "a QAD batch holds padding"
    b = length_batches(rows, 8, seed=3)
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a, b))
    c = length_batches(rows, 8, seed=4)
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c) if x[0].shape == y[0].shape)


def test_layer_norm_is_left_out_of_the_static_ranges(tiny_classifier):
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from tinybert_edge.converters.qat import is_layer_norm, static_int8_quantizer

    wrapper, rows = _rows(tiny_classifier, TEXTS[:2])
    ids = torch.tensor([rows[0][0]])
    ep = torch.export.export(wrapper, (ids, torch.ones_like(ids), torch.zeros_like(ids)))
    assert any(is_layer_norm(n) for n in ep.graph.nodes)
    from executorch.backends.xnnpack.quantizer import xnnpack_quantizer as xq

    def observed_variance(quantizer):
        prepared = prepare_pt2e(ep.module(), quantizer)
        return prepared, {str(a.target) for n in prepared.graph.nodes if "rsqrt" in str(n.target) for a in n.args
                          if getattr(a, "op", None) == "call_module"}

    # control: the stock static config does put an observer on LayerNorm's variance
    stock = xq.XNNPACKQuantizer().set_global(xq.get_symmetric_quantization_config(is_per_channel=True))
    assert observed_variance(stock)[1], "control failed: the stock quantizer no longer observes the variance"
    prepared, observed = observed_variance(static_int8_quantizer(qat=False))
    assert not observed, f"LayerNorm's variance gets a static int8 range: {observed}"
    assert any("activation_post_process" in str(n.target) for n in prepared.graph.nodes)  # the rest is quantized


def test_residual_adds_before_layer_norm_stay_out_of_the_static_ranges(tiny_classifier):
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from tinybert_edge.converters.qat import is_add_and_norm, static_int8_quantizer

    wrapper, rows = _rows(tiny_classifier, TEXTS[:2])
    ids = torch.tensor([rows[0][0]])
    ep = torch.export.export(wrapper, (ids, torch.ones_like(ids), torch.zeros_like(ids)))
    # two per Transformer layer (attention, FFN) and the embeddings' sums before their LayerNorm
    assert sum(is_add_and_norm(n) for n in ep.graph.nodes) >= 2 * 2 + 1
    prepared = prepare_pt2e(ep.module(), static_int8_quantizer(qat=False))

    def observed(node):
        return any("activation_post_process" in str(u.target) for u in node.users)

    add_norm = [n for n in prepared.graph.nodes if is_add_and_norm(n)]
    assert add_norm and not [n.name for n in add_norm if observed(n)], "an Add & Norm add got a static range"
    # control: an ordinary int8 op's output is still observed (the filter is not switching all off)
    assert any(observed(n) for n in prepared.graph.nodes if "linear" in str(n.target))


def _plant_ffn_outlier(model_dir, layer: int, channel: int, size: float):
    """A copy of the tiny classifier whose FFN channel `channel` in `layer` outputs ~`size` after GELU."""
    from tinybert_edge.converters.export import load_for_export

    wrapper, tok, _ = load_for_export(model_dir, xnnpack=True, keep_mask=True)
    plant_ffn_outlier(wrapper.model.bert.encoder.layer[layer], channel, size)
    return wrapper, tok


def test_ffn_outlier_split_keeps_the_fp32_function_and_tracks_it_closer_in_static_int8(tiny_classifier):
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from tinybert_edge.converters.outliers import ChannelSplitLinear, split_ffn_outliers
    from tinybert_edge.converters.qat import length_batches, static_int8_quantizer
    from tinybert_edge.converters.runtime import tokenize

    wrapper, tok = _plant_ffn_outlier(tiny_classifier, layer=1, channel=5, size=40.0)
    rows = tokenize(tok, TRAIN, None, 48)
    calibration = length_batches(rows, 8, seed=0)
    held_out = length_batches(tokenize(tok, TEXTS, None, 48), 8, seed=0)
    split = copy.deepcopy(wrapper)
    records = split_ffn_outliers(split, calibration[:10])
    by_layer = {r["layer"].rsplit(".", 1)[-1]: r for r in records}
    assert by_layer["1"]["channels"] == [5] and by_layer["1"]["channel_max"][0] > 30, records
    assert by_layer["0"]["channels"] == [], "an unplanted layer was split"  # control
    layers = split.model.bert.encoder.layer
    assert isinstance(layers[1].output.dense, ChannelSplitLinear) and isinstance(layers[0].output.dense,
                                                                                torch.nn.Linear)
    with torch.no_grad():
        for x in held_out:
            torch.testing.assert_close(split(*x), wrapper(*x), atol=1e-4, rtol=1e-4)

    dims = {n: {0: torch.export.Dim("b", min=1, max=8), 1: torch.export.Dim("s", min=2, max=48)}
            for n in ("input_ids", "attention_mask", "token_type_ids")}

    def static_error(module):
        ep = torch.export.export(module, calibration[0], dynamic_shapes=dims)
        q = prepare_pt2e(ep.module(), static_int8_quantizer(qat=False))
        with torch.no_grad():
            for x in calibration:
                q(*x)
            q = convert_pt2e(q)
            return sum(float((q(*x) - wrapper(*x)).abs().mean()) for x in held_out) / len(held_out)

    plain, with_split = static_error(wrapper), static_error(split)
    assert with_split < 0.7 * plain, (with_split, plain)


def test_ffn_outlier_split_refuses_no_calibration(tiny_classifier):
    from tinybert_edge.converters.outliers import split_ffn_outliers

    wrapper, _ = _rows(tiny_classifier, TEXTS[:1])
    with pytest.raises(ExportError, match="calibration texts"):
        split_ffn_outliers(wrapper, [])


def test_qad_stays_near_post_training_static_int8_and_repeats_exactly(tiny_classifier):
    """Since the FFN outlier split and Add & Norm in fp32, post-training static int8 tracks fp32
    well, and QAD (from int8-static's ranges, held) does not beat it on the demo student: its
    error ends within 5 % of PTQ's there (BENCHMARKS.md). The claim left: QAD repeats exactly and
    stays in PTQ's neighbourhood (a too-high learning rate, 1e-4, drifts far off, and this test
    catches that)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from tinybert_edge.converters.qat import (QadSettings, length_batches, quantization_aware_distill,
                                              static_int8_quantizer)

    wrapper, rows = _rows(tiny_classifier, TRAIN)
    _, held_out = _rows(tiny_classifier, TEXTS)
    held_out = length_batches(held_out, 8, seed=0)
    settings = QadSettings(steps=60, learning_rate=1e-5, batch_size=8, freeze_observers_after=30, seed=1)
    a, sa = quantization_aware_distill(wrapper, wrapper, rows, 48, settings, progress=False)
    b, sb = quantization_aware_distill(wrapper, wrapper, rows, 48, settings, progress=False)
    assert sa == sb

    # post-training static int8 of the same graph, calibrated on every training batch
    train = length_batches(rows, 8, seed=0)
    dims = {n: {0: torch.export.Dim("b", min=1, max=8), 1: torch.export.Dim("s", min=2, max=48)}
            for n in ("input_ids", "attention_mask", "token_type_ids")}
    ptq = prepare_pt2e(torch.export.export(wrapper, train[0], dynamic_shapes=dims).module(),
                       static_int8_quantizer(qat=False))
    with torch.no_grad():
        for x in train:
            ptq(*x)
        ptq = convert_pt2e(ptq)

        def error(m):
            return sum(float((m(*x) - wrapper(*x)).abs().mean()) for x in held_out) / len(held_out)

        assert all(torch.equal(a(*x), b(*x)) for x in held_out)
        assert not all(torch.equal(a(*x), ptq(*x)) for x in held_out), "QAD changed nothing"
        assert 0 < error(a) < 2.0 * error(ptq), (error(a), error(ptq))


def _activation_scales(converted) -> list[float]:
    """The distinct per-tensor (activation) quantize scales of a converted PT2E graph, sorted (a
    range used by several ops has one quantize node per use)."""
    target = torch.ops.quantized_decomposed.quantize_per_tensor.default
    return sorted({float(n.args[1]) for n in converted.graph.nodes if n.target is target})


def test_qad_starts_from_int8_static_ranges_and_keeps_them(tiny_classifier):
    """int8-qat's activation ranges are int8-static's histogram ranges on the same calibration rows,
    set before the first step and unchanged by training (the QAT config's own moving-average ranges
    left the demo student at 1.46x int8-static's error, BENCHMARKS.md); the weights still train."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from tinybert_edge.converters.qat import QadSettings, quantization_aware_distill, static_int8_quantizer

    wrapper, rows = _rows(tiny_classifier, TRAIN)
    calibration = [(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), torch.tensor([types]))
                   for ids, types in rows[:64] if len(ids) >= 2]
    dims = {n: {0: torch.export.Dim("b", min=1, max=8), 1: torch.export.Dim("s", min=2, max=48)}
            for n in ("input_ids", "attention_mask", "token_type_ids")}
    sample = tuple(t.repeat(2, 1) for t in calibration[0])
    ptq = prepare_pt2e(torch.export.export(wrapper, sample, dynamic_shapes=dims).module(),
                       static_int8_quantizer(qat=False))
    with torch.no_grad():
        for x in calibration:
            ptq(*x)
    ptq = convert_pt2e(ptq)

    # no training to speak of: the artifact is int8-static's, ranges and outputs
    still, summary = quantization_aware_distill(wrapper, wrapper, rows, 48, QadSettings(steps=1, learning_rate=1e-12,
                                                batch_size=8), progress=False, calibration=calibration)
    assert summary["activation_ranges"]["calibration_rows"] == len(calibration)
    assert summary["activation_ranges"]["tensors"] >= len(_activation_scales(ptq)) > 10
    assert _activation_scales(still) == pytest.approx(_activation_scales(ptq), rel=1e-6)
    with torch.no_grad():
        assert all(torch.allclose(still(*x), ptq(*x), atol=1e-5) for x in calibration[:8])

    # real training: the weights move, the activation ranges do not
    trained, _ = quantization_aware_distill(wrapper, wrapper, rows, 48, QadSettings(steps=30, learning_rate=1e-5,
                                            batch_size=8), progress=False, calibration=calibration)
    assert _activation_scales(trained) == pytest.approx(_activation_scales(ptq), rel=1e-6)
    with torch.no_grad():
        assert not all(torch.equal(trained(*x), ptq(*x)) for x in calibration[:8]), "QAD changed nothing"


def test_ranges_from_another_graph_are_refused(tiny_classifier, tmp_path):
    """start_from_static_ranges pairs each QAT fake-quant with int8-static's observer on the same
    node; given the graph of another model (one layer fewer), it refuses rather than mis-pair."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    from tinybert_edge.converters.qat import start_from_static_ranges, static_int8_quantizer

    def exported(model_dir):
        wrapper, rows = _rows(model_dir, TRAIN[:8])
        ids, types = rows[0]
        x = (torch.tensor([ids] * 2), torch.ones(2, len(ids), dtype=torch.long), torch.tensor([types] * 2))
        return torch.export.export(wrapper, x).module(), x  # static shapes: calibrated at this one shape

    graph, x = exported(tiny_classifier)
    other, _ = exported(make_tiny_model_dir(tmp_path / "one", classifier=True, layers=1, seed=7, logit_scale=300.0))
    prepared = prepare_qat_pt2e(copy.deepcopy(graph), static_int8_quantizer(qat=True))
    with pytest.raises(ExportError, match="no activation observer on the node.*use --quantize int8-static"):
        start_from_static_ranges(prepared, other, [x])
    assert start_from_static_ranges(prepared, graph, [x]) > 10  # its own graph pairs every range


def test_qad_without_calibration_texts_is_refused(tiny_classifier):
    from tinybert_edge.converters.qat import QadSettings, quantization_aware_distill

    wrapper, rows = _rows(tiny_classifier, TRAIN)
    with pytest.raises(ExportError, match="need calibration texts; pass --qad-data TRAIN"):
        quantization_aware_distill(wrapper, wrapper, rows, 48, QadSettings(steps=2), progress=False, calibration=[])


@pytest.mark.parametrize("policy", [SeqLenPolicy.make(48, dynamic=True), SeqLenPolicy.make(48, buckets=[16, 48])],
                         ids=["dynamic", "buckets"])
def test_int8_qat_pte_runs_what_it_exported(tiny_classifier, tmp_path, policy):
    """int8-qat at the dynamic length and at buckets (QAD trains on unpadded rows; every bucket is
    traced from the one converted graph): int8 sizes, the .pte tracks fp32, every matmul delegated."""
    from tinybert_edge.converters.qat import QadSettings

    fmt = get_format("executorch")
    r = fmt.export(tiny_classifier, tmp_path / "qat.pte", quantization="int8-qat", policy=policy, texts=TEXTS,
                   qad_texts=TRAIN, qad=QadSettings(steps=30, learning_rate=1e-5, batch_size=8,
                                                   freeze_observers_after=15))
    fp32 = fmt.export(tiny_classifier, tmp_path / "fp32.pte", policy=policy, texts=TEXTS)
    assert r.size_bytes < 0.7 * fp32.size_bytes  # int8 weights; the tiny model's fixed costs weigh more
    assert r.details["quantization_aware_distillation"]["steps"] == 30
    assert "quantization-aware distillation" in r.details["recipe"]
    assert [s["name"] for s in r.details["signatures"]] == (["forward"] if policy.kind == "dynamic" else
                                                            ["seq16", "seq48"])
    # the tiny random model's logits sit near zero, so labels can flip; the scores must still track fp32
    assert r.parity.sqnr_db > 10.0, r.parity
    assert not [op for op in r.details["ops_outside_delegate"] if op.split(".")[-1] in ("mm", "bmm", "linear")]


def test_bad_quantization_requests(tiny_classifier, tmp_path):
    fmt = get_format("executorch")
    with pytest.raises(ExportError, match="--qad-data"):
        fmt.export(tiny_classifier, tmp_path / "x.pte", quantization="int8-qat",
                   policy=SeqLenPolicy.make(48, dynamic=True), texts=TEXTS)
    with pytest.raises(ExportError, match="calibrates on 128 texts but only 24"):
        fmt.export(tiny_classifier, tmp_path / "x.pte", quantization="int8-static", texts=TEXTS)
    with pytest.raises(ExportError, match="--calibration-size 0 must be at least 1"):
        fmt.export(tiny_classifier, tmp_path / "x.pte", quantization="int8-static", texts=TEXTS, calibration_size=0)
    with pytest.raises(ExportError, match="freeze_observers_after 30 must be within 1..29"):
        from tinybert_edge.converters.export import QadSettings

        fmt.export(tiny_classifier, tmp_path / "x.pte", quantization="int8-qat", policy=SeqLenPolicy.make(48, dynamic=True),
                   texts=TEXTS, qad_texts=TRAIN, qad=QadSettings(steps=30, freeze_observers_after=30))
    with pytest.raises(ExportError, match="tflite does not offer quantization 'int8-qat'.*pass --format executorch"):
        from tinybert_edge.converters.export import export_bundles

        export_bundles(tiny_classifier, tmp_path / "b", formats=["tflite"], quantizations=["int8-qat"], seq_len=48)
    with pytest.raises(ExportError, match="--qad-data"):
        from tinybert_edge.converters.export import export_bundles

        export_bundles(tiny_classifier, tmp_path / "b", formats=["executorch"], quantizations=["int8-qat"],
                       seq_len=48)
    # a bad request after a good one: refused before the good one's bundle is written
    qad_file = tmp_path.parent / f"{tmp_path.name}-train.tsv"
    qad_file.write_text("text\n" + "".join(f"{t}\n" for t in TRAIN))
    with pytest.raises(ExportError, match="needs at least 1 step.*--qad-steps"):
        export_bundles(tiny_classifier, tmp_path / "b", formats=["executorch"], quantizations=["int8", "int8-qat"],
                       policy=SeqLenPolicy.make(48), qad_data=qad_file, qad_steps=0)
    with pytest.raises(ExportError, match="executorch int8-static calibrate.*--calibration-data TRAIN"):
        export_bundles(tiny_classifier, tmp_path / "b", formats=["executorch"], quantizations=["none", "int8-static"],
                       seq_len=48)
    assert not list(tmp_path.iterdir())


def test_static_int8_report_times_failed_bundles_and_refuses_fixed_ones(tiny_classifier, tmp_path):
    """benchmarks/scripts/static_int8.py: bundles that failed validation are still timed (bench
    refuses them, as an app should), each row carries its own validation, ratios are against
    dynamic int8; a fixed-length bundle is refused with exit 2."""
    import json

    from benchmarks.scripts import static_int8
    from tinybert_edge.converters.export import export_bundles

    data, train = _task_files(tmp_path)
    bundles = export_bundles(tiny_classifier, tmp_path / "b", formats=["executorch"], quantizations=["int8", "int8-qat"],
                             seq_len=48, data=data, qad_data=train, qad_steps=20)
    out = tmp_path / "report"
    assert static_int8.main([*(a for b in bundles for a in ("--bundle", str(b.path))), "--data", str(data),
                             "--rows", "8", "--runs", "5", "--out", str(out)]) == 0
    report = json.loads((out / "static_int8.json").read_text())
    assert [r["quantization"] for r in report["results"]] == ["int8", "int8-qat"]
    for r, b in zip(report["results"], bundles):
        assert r["label_agreement"] == b.validation.label_agreement and r["status"] == b.metadata["status"]
        assert r["p50_ms_fixed"] > 0 and r["p50_ms_real"] > 0
    assert "| 1.00x / 1.00x |" in (out / "static_int8.md").read_text()
    assert (out / "static_int8.png").stat().st_size > 10_000

    fixed = export_bundles(tiny_classifier, tmp_path / "f", formats=["executorch"], quantizations=["int8"],
                           policy=SeqLenPolicy.make(48), data=data)
    assert static_int8.main(["--bundle", str(fixed[0].path), "--data", str(data), "--out", str(tmp_path / "r2")]) == 2
    assert not (tmp_path / "r2").exists()


def test_smoothquant_probe_keeps_the_fp32_function_and_its_multiplies_out_of_the_ranges(tiny_classifier):
    """benchmarks/scripts/int8_sensitivity --smooth-alpha: moving per-channel range from each
    linear's input into its weight must not change what the fp32 model computes, and the 1/s
    multiplies must stay fp32 in the quantized graph (else their input gets the same per-tensor
    range smoothing was meant to avoid)."""
    from tinybert_edge.benchmarks.scripts.int8_sensitivity import SmoothedLinear, _is_smoothing_mul, smooth_linears
    from tinybert_edge.converters.runtime import pad_row

    wrapper, rows = _rows(tiny_classifier, TEXTS)
    inputs = [tuple(torch.from_numpy(a) for a in pad_row(ids, types, len(ids), 0)) for ids, types in rows]
    with torch.no_grad():
        before = [wrapper(*x) for x in inputs]
    smooth_linears(wrapper, inputs[:8], alpha=0.8)
    n_linears = sum(isinstance(m, torch.nn.Linear) for m in wrapper.modules())
    assert sum(isinstance(m, SmoothedLinear) for m in wrapper.modules()) == n_linears > 0
    with torch.no_grad():
        for x, ref in zip(inputs, before):
            torch.testing.assert_close(wrapper(*x), ref, rtol=1e-4, atol=1e-4)
    graph = torch.export.export(wrapper, inputs[0]).graph
    marked = [n for n in graph.nodes if _is_smoothing_mul(n)]
    assert len(marked) == n_linears  # one 1/s multiply per linear, and nothing else is taken for one


def test_cls_split_probe_keeps_the_fp32_function_and_gives_cls_its_own_static_range(tiny_classifier):
    """benchmarks/scripts/int8_sensitivity --split-cls: the FFN output linear applied to [CLS] and
    to the other rows separately computes the same thing in fp32, and after static calibration
    the two inputs carry different quantization scales (the point of the split)."""
    from executorch.backends.xnnpack.quantizer import xnnpack_quantizer as xq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from tinybert_edge.benchmarks.scripts.int8_sensitivity import (ClsSplitLinear, _is_ffn_output, _is_linear,
                                                                   split_cls_ffn_outputs)
    from tinybert_edge.converters.runtime import pad_row

    wrapper, rows = _rows(tiny_classifier, TEXTS)
    # one length: the exported graph's shape is static
    inputs = [tuple(torch.from_numpy(a) for a in pad_row(ids, types, 48, 0)) for ids, types in rows]
    with torch.no_grad():
        before = [wrapper(*x) for x in inputs]
    layers = wrapper.model.config.num_hidden_layers
    assert split_cls_ffn_outputs(wrapper) == layers
    assert sum(isinstance(m, ClsSplitLinear) for m in wrapper.modules()) == layers
    with torch.no_grad():
        for x, ref in zip(inputs, before):
            torch.testing.assert_close(wrapper(*x), ref, rtol=1e-5, atol=1e-5)
    quantizer = xq.XNNPACKQuantizer().set_global(xq.get_symmetric_quantization_config(is_per_channel=True,
                                                                                     is_dynamic=False))
    prepared = prepare_pt2e(torch.export.export(wrapper, inputs[0]).module(), quantizer)
    with torch.no_grad():
        for x in inputs:
            prepared(*x)
    graph = convert_pt2e(prepared).graph
    # the input scale of every linear whose module path is an FFN output
    scales = []
    for n in graph.nodes:
        if _is_linear(n) and _is_ffn_output(n):
            dq = n.args[0]  # dequantize(quantize(x)) feeds the linear
            scales.append(float(dq.args[1]))
    assert len(scales) == 2 * layers
    assert all(a != b for a, b in zip(scales[::2], scales[1::2])), scales


def test_sensitivity_probe_refuses_a_variants_filter_that_matches_nothing(tiny_classifier, tmp_path, capsys):
    """int8_sensitivity --variants with no matching variant: one clear error naming the variants
    there are, exit 2, and no report written."""
    from tinybert_edge.benchmarks.scripts.int8_sensitivity import VARIANTS, main as sensitivity_main

    out = tmp_path / "report"
    rc = sensitivity_main(["--model", str(tiny_classifier), "--data", str(tmp_path / "unused.tsv"),
                           "--variants", "no such variant", "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--variants no such variant matches none of" in err and next(iter(VARIANTS)) in err
    assert not out.exists()


def test_int8_static_bundle_calibrates_on_calibration_data_and_records_the_outlier_split(tiny_classifier, tmp_path):
    """export_bundles' int8-static takes its ranges and FFN outlier channels from --calibration-data
    (never from the texts it is validated on) and records the split per layer in metadata.json,
    which the bundle schema accepts (load_bundle validates it)."""
    from tinybert_edge.converters.bundle import load_bundle
    from tinybert_edge.converters.export import export_bundles

    data, train = _task_files(tmp_path)
    import shutil

    from transformers import AutoModelForSequenceClassification

    planted = tmp_path / "planted"
    shutil.copytree(tiny_classifier, planted)
    model = AutoModelForSequenceClassification.from_pretrained(planted)
    # FFN channel 5 of layer 1 outputs ~40 after GELU, like a trained BERT's [CLS] outlier
    plant_ffn_outlier(model.bert.encoder.layer[1])
    model.save_pretrained(planted)
    [b] = export_bundles(planted, tmp_path / "b", formats=["executorch"], quantizations=["int8-static"],
                         policy=SeqLenPolicy.make(48, dynamic=True), data=data, calibration_data=train,
                         calibration_size=64)
    q = load_bundle(b.path, allow_failed=True).metadata["quantization"]
    assert "64 --calibration-data texts" in q["recipe"] and "Add & Norm fp32" in q["recipe"], q["recipe"]
    assert "split off in 1 of 2 layers" in q["recipe"], q["recipe"]
    assert q["calibration"] == {"data": str(train), "rows": 64, "ranges": "histogram"}
    split = {r["layer"].rsplit(".", 1)[-1]: r for r in q["ffn_outlier_split"]}
    assert split["1"]["channels"] == [5] and split["1"]["channel_max"][0] > split["1"]["rest_max"], split
    assert split["0"]["channels"] == []
    assert b.validation.label_agreement is not None


def test_int8_static_buckets_take_the_unpadded_ranges_of_the_dynamic_length(tiny_classifier, tmp_path):
    """int8-static calibrates once, on unpadded rows, for every method. Calibrated per bucket on
    rows padded to it, XNNPACK's histogram observers fitted their ranges to the padding (the demo
    student at buckets 32/64/128: 98.72 % agreement, 99.28 % with one unpadded calibration;
    BENCHMARKS.md). So a bucketed .pte computes what the dynamic-length .pte calibrated on the
    same texts computes, and a bucket that no calibration text fits (every text here is longer
    than 16 tokens) still gets the real texts' ranges rather than none or a validation text's."""
    import numpy as np

    long_texts = [" ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(20 + i)) for i in range(12)]
    fmt = get_format("executorch")
    runs = {}
    for name, policy in (("dynamic", SeqLenPolicy.make(48, dynamic=True)),
                         ("buckets", SeqLenPolicy.make(48, buckets=[16, 48]))):
        runs[name] = fmt.export(tiny_classifier, tmp_path / f"{name}.pte", quantization="int8-static",
                                policy=policy, texts=TEXTS, calibration_texts=long_texts, calibration_size=12)
    dyn, bkt = runs["dynamic"], runs["buckets"]
    lengths = [len(ids) for ids, _ in _rows(tiny_classifier, TEXTS + long_texts)[1]]
    assert min(lengths[:len(TEXTS)]) <= 16 < max(lengths[:len(TEXTS)]), "the validation texts do not use both buckets"
    assert min(lengths[len(TEXTS):]) > 16
    quantization_error = np.abs(dyn.artifact_logits - dyn.reference_logits).mean()
    gap = np.abs(bkt.artifact_logits - dyn.artifact_logits).mean()
    print(f"mean |logit| gap: bucketed vs dynamic {gap:.4g}, dynamic vs fp32 {quantization_error:.4g}")
    # measured 0.085x here; with shorter calibration texts (TRAIN[:48]), which the old per-bucket
    # calibration on padded rows could also take, 0.35x that way and 0.04x this way
    assert gap < 0.15 * quantization_error, (gap, quantization_error)
    assert (bkt.artifact_logits.argmax(1) == dyn.artifact_logits.argmax(1)).all()


def test_int8_static_gptq_is_what_the_converted_graph_stores(tiny_classifier, tmp_path, monkeypatch):
    """int8-static with --weight-rounding gptq on ExecuTorch: GPTQ calibrates through the keep-mask
    export wrapper (on the bare HF model the keep-mask attention gives NaN) and rounds after the
    FFN outlier split, on XNNPACK's grid (scales floored at 2^-12), so the int8 weights of the
    exporter's own converted graph are exactly GPTQ's integers, for every linear and both halves of
    the split one; the artifact is still validated against the unrounded model. The outlier column
    carries some rows' largest weight: rounded before the split, those rows of the other half would
    be re-scaled by the quantizer (the control)."""
    import shutil

    import numpy as np
    from transformers import AutoModelForSequenceClassification

    from tinybert_edge.converters import executorch
    from tinybert_edge.converters.gptq import int8_codes
    from tinybert_edge.converters.outliers import ChannelSplitLinear

    planted = tmp_path / "planted"
    shutil.copytree(tiny_classifier, planted)
    model = AutoModelForSequenceClassification.from_pretrained(planted)
    plant_ffn_outlier(model.bert.encoder.layer[1])
    with torch.no_grad():
        w = model.bert.encoder.layer[1].output.dense.weight
        w[:4, 5] = 3 * w[:4].abs().max(dim=1).values
    model.save_pretrained(planted)
    # the exporter's own rounded module and converted graph, as it made them
    rounded, converted = [], []
    round_rows, static = executorch.gptq_round_rows, executorch._static_on_unpadded_rows
    monkeypatch.setattr(executorch, "gptq_round_rows",
                        lambda m, *a, **k: (round_rows(m, *a, **k), rounded.append(copy.deepcopy(m)))[0])
    monkeypatch.setattr(executorch, "_static_on_unpadded_rows",
                        lambda *a, **k: converted.append(static(*a, **k)) or converted[-1])
    policy = SeqLenPolicy.make(48, dynamic=True)
    fmt = get_format("executorch")
    near = fmt.export(planted, tmp_path / "n.pte", quantization="int8-static", policy=policy, texts=TEXTS,
                      calibration_texts=TRAIN, calibration_size=32)
    gptq = fmt.export(planted, tmp_path / "g.pte", quantization="int8-static", policy=policy, texts=TEXTS,
                      calibration_texts=TRAIN, calibration_size=32, weight_rounding="gptq")
    np.testing.assert_array_equal(near.reference_logits, gptq.reference_logits)
    assert np.isfinite(gptq.artifact_logits).all() and not np.allclose(near.artifact_logits, gptq.artifact_logits)
    r = gptq.details["weight_rounding"]
    assert r["method"] == "gptq" and r["calibration_rows"] == 32 and r["linears"] == 2 * 6 + 2 + 1
    assert r["min_scale"] == 2 ** -12 and r["exact_rows"] == r["rows"]
    assert [s["channels"] for s in gptq.details["ffn_outlier_split"]] == [[], [5]]

    [module] = rounded
    split = module.model.bert.encoder.layer[1].output.dense
    assert isinstance(split, ChannelSplitLinear)  # rounded after the split
    expected = {n: int8_codes(x.weight.data, min_scale=2 ** -12).numpy() for n, x in module.named_modules()
                if isinstance(x, torch.nn.Linear)}
    stored = [t.numpy() for _, t in converted[-1].named_buffers() if t.dtype == torch.int8 and t.dim() == 2]

    def in_graph(c):
        return any(s.shape == c.shape and np.array_equal(s, c) for s in stored)

    assert len(expected) == 2 * 6 + 2 + 1
    for name, c in expected.items():
        assert in_graph(c), name
    # control, on the exporter's own rounded halves: on the unsplit row's grid (where the outlier
    # column's weight sets rows 0-3's scale) those rows of the other half get other integers, and
    # only those (GPTQ rounded before the split would have been re-scaled there)
    full = torch.maximum(split.rest.weight.abs().amax(1), split.outliers.weight.abs().amax(1)) / 127
    unsplit = torch.round(split.rest.weight.data / full.clamp(min=2 ** -12)[:, None]).int().numpy()
    differs = (unsplit != expected["model.bert.encoder.layer.1.output.dense.rest"]).any(axis=1)
    assert differs[:4].all() and not differs[4:].any()
