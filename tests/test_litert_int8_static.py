"""`export --format tflite --quantize int8-static` (static int8 LiteRT: int8 activations and
weights; LayerNorm, the Add & Norm adds, the attention matmuls, softmax and GELU in float; the FFN
outlier channels split off), through
the real litert-torch converter, the real ai-edge-quantizer and the real ai-edge-litert runtime,
on a tiny 5-class classifier with one planted FFN outlier channel (what trained BERTs have at
[CLS]) and data unlike Rotten Tomatoes: five labels and a first row longer than every bucket."""

import json

import numpy as np
import pytest
import torch

from conftest import FIVE_LABELS as LABELS
from conftest import five_class_rows as _rows
from conftest import make_tiny_model_dir, plant_ffn_outlier, write_tsv
from tinybert_edge.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A 2-layer 5-class classifier whose FFN channel 5 of layer 1 outputs ~40 after GELU (read
    gently by the next linear), logits scaled to a trained classifier's size."""
    from transformers import AutoModelForSequenceClassification

    root = tmp_path_factory.mktemp("int8static")
    d = make_tiny_model_dir(root / "cls5", classifier=True, labels=LABELS, layers=2, seed=3, logit_scale=300.0)
    model = AutoModelForSequenceClassification.from_pretrained(d)
    # small, not zero: an all-zero weight row gets a zero int8 scale, and its bias no int32 value
    plant_ffn_outlier(model.bert.encoder.layer[1], row_scale=0.01)
    model.save_pretrained(d)
    return {"model": d, "dev": write_tsv(root / "dev.tsv", _rows(40, seed=4, long_first=True)),
            "train": write_tsv(root / "train.tsv", _rows(80, seed=5))}


def test_int8_static_tflite_bundle_is_int8_but_add_and_norm_and_records_the_split(planted, tmp_path):
    from tinybert_edge.converters.bundle import load_bundle
    from tinybert_edge.converters.export import load_for_export, read_validation_data
    from tinybert_edge.converters.litert_static import op_dtypes_by_signature
    from tinybert_edge.converters.runtime import pad_row, tokenize
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "b"
    assert main(["export", "--model", str(planted["model"]), "--data", str(planted["dev"]), "--seq-len", "32",
                 "--format", "tflite", "--quantize", "int8,int8-static", "--buckets", "16,32", "--calibration-data",
                 str(planted["train"]), "--calibration-size", "24", "--threshold", "0", "--out", str(out)]) == 0
    bundle = out / "cls5-tflite-int8-static-b16-32"
    meta = json.loads((bundle / "metadata.json").read_text())
    q = meta["quantization"]
    assert meta["status"] == "passed" and q["name"] == "int8-static"
    assert q["calibration"] == {"data": str(planted["train"]), "rows": 24, "ranges": "histogram"}
    assert "every op but LayerNorm, Add & Norm, attention matmuls, softmax and GELU" in q["recipe"], q["recipe"]
    split = {r["layer"].rsplit(".", 1)[-1]: r for r in q["ffn_outlier_split"]}
    assert split["1"]["channels"] == [5] and split["1"]["channel_max"][0] > 30, split
    assert split["0"]["channels"] == []  # control: the unplanted layer is left alone

    model = (bundle / "model.tflite").read_bytes()
    by_sig = op_dtypes_by_signature(model)
    assert set(by_sig) == {"seq16", "seq32"}
    for kinds in by_sig.values():
        # every linear (6 per layer, pooler, classifier) runs at int8 with int8 inputs ... The split
        # (activation form) makes layer 1's FFN input two linears, each with its own GELU (the
        # outliers' output linear has one input channel and converts to a broadcast MUL), and
        # slices nothing: the one SLICE is the pooler's [CLS]
        assert kinds["int8"]["FULLY_CONNECTED"] == 2 * 6 + 2 + 1, kinds
        assert kinds["int8"]["SLICE"] == 1
        # ... what ExecuTorch's int8-static computes in fp32 computes in float here too: LayerNorm
        # (mean, rsqrt), the Add & Norm adds, the attention matmuls, softmax and GELU
        flt = kinds["float32"]
        assert flt["RSQRT"] == 1 + 2 * 2 and flt["MEAN"] == 2 * (1 + 2 * 2) and flt["ADD"] > 0, flt
        assert flt["BATCH_MATMUL"] == 2 * 2 and flt["SOFTMAX"] == 2 + 1 and flt["GELU"] == 2 + 1, flt
        assert "FULLY_CONNECTED" not in flt and "int16" not in kinds

    # the reported agreement is what the file gives, against the eager model as the user has it
    interp = Interpreter(model_content=model)
    wrapper, tok, config = load_for_export(planted["model"], probabilities=True)
    texts, _, _ = read_validation_data(planted["dev"], config)
    agree = []
    for ids, types in tokenize(tok, texts, None, 32):
        length = 16 if len(ids) <= 16 else 32
        feed = [a.astype(np.int32) for a in pad_row(ids, types, length, tok.pad_token_id)]
        (p,) = interp.get_signature_runner(f"seq{length}")(args_0=feed[0], args_1=feed[1], args_2=feed[2]).values()
        with torch.no_grad():
            ref = wrapper(*(torch.from_numpy(a.astype(np.int64)) for a in feed))[0].numpy()
        agree.append(p[0].argmax() == ref.argmax())
    assert meta["validation"]["label_agreement"] == pytest.approx(float(np.mean(agree)))
    b = load_bundle(bundle)
    check = b.self_test()
    assert check["passed"] and check["cases"] >= 4

    # the static-int8 report times LiteRT bundles at their buckets, against LiteRT's dynamic int8
    from benchmarks.scripts import static_int8

    report_dir = tmp_path / "report"
    dynamic = out / "cls5-tflite-int8-b16-32"
    assert static_int8.main(["--bundle", str(dynamic), "--bundle", str(bundle), "--data", str(planted["dev"]),
                             "--rows", "8", "--runs", "5", "--out", str(report_dir)]) == 0
    report = json.loads((report_dir / "static_int8.json").read_text())
    assert [(r["format"], r["quantization"], r["policy"]) for r in report["results"]] == [
        ("tflite", "int8", "b16-32"), ("tflite", "int8-static", "b16-32")]
    assert report["results"][1]["label_agreement"] == meta["validation"]["label_agreement"]
    table = (report_dir / "static_int8.md").read_text()
    assert "| 1.00x / 1.00x |" in table and "(vs " not in table


def _op_outputs(model: bytes):
    """(output tensor detail, op name) of every op of the model's first subgraph."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    return [(tensors[o["outputs"][0]], o["op_name"]) for o in interp._get_ops_details() if len(o["outputs"])]


def _fp32_tflite(wrapper, tok, path, length=32):
    import litert_torch

    from tinybert_edge.converters.runtime import pad_row, tokenize

    ids, types = tokenize(tok, ["a brilliant film"], None, length)[0]
    litert_torch.convert(wrapper, tuple(torch.from_numpy(a) for a in pad_row(ids, types, length, tok.pad_token_id))
                         ).export(str(path))
    return path.read_bytes()


def test_add_and_norm_in_float_tracks_fp32_closer_than_every_op_int8(planted, tmp_path):
    """Add & Norm in float against every op at int8 (the control), on the same calibration rows,
    scored as mean |probability - eager fp32| on held-out rows of the fixed 32-token graph; and
    the scopes it leaves in float are LayerNorm's ops and the adds that feed it, never a linear."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer

    from tinybert_edge.converters.export import load_for_export, read_validation_data
    from tinybert_edge.converters.litert_static import (MASK_BIAS, add_and_norm_scopes, calibrate_ranges,
                                                        int8_static_recipe)
    from tinybert_edge.converters.runtime import pad_row, tokenize

    wrapper, tok, config = load_for_export(planted["model"], probabilities=True, xnnpack=True, mask_bias=MASK_BIAS)
    reference = load_for_export(planted["model"], probabilities=True)[0]
    train, _, _ = read_validation_data(planted["train"], config)
    dev, _, _ = read_validation_data(planted["dev"], config)
    cal_rows, dev_rows = tokenize(tok, train[:48], None, 32), tokenize(tok, dev, None, 32)

    def feed(row):
        return {f"args_{i}": a.astype(np.int32) for i, a in enumerate(pad_row(*row, 32, tok.pad_token_id))}

    with torch.no_grad():
        ref = np.stack([reference(*(torch.from_numpy(a.astype(np.int64)) for a in feed(r).values()))[0].numpy()
                        for r in dev_rows])

    def error(float_model, float_scopes):
        rm = int8_static_recipe(float_scopes)
        qsvs = calibrate_ranges(float_model, rm, {"serving_default": [feed(r) for r in cal_rows]}, "minmax")
        q = bytes(quantizer.Quantizer(float_model, rm.get_quantization_recipe()).quantize(
            qsvs, enable_progress_report=False).quantized_model)
        run = Interpreter(model_content=q).get_signature_runner()
        got = np.stack([next(iter(run(**feed(r)).values()))[0] for r in dev_rows])
        return float(np.abs(got - ref).mean())

    plain = _fp32_tflite(wrapper, tok, tmp_path / "plain.tflite")
    scopes = add_and_norm_scopes(plain)
    # besides the LayerNorms' own ops: the embeddings' 2 adds and each layer's 2 residual adds
    adds = [s for s in scopes if "LayerNorm4d" not in s.split(";")[0]]
    assert len(adds) == 2 + 2 * 2, adds
    # by op kind, not name: no FULLY_CONNECTED output is among the float scopes
    fc_outputs = [t["name"] for t, o in _op_outputs(plain) if o == "FULLY_CONNECTED"]
    assert fc_outputs and not set(fc_outputs) & set(scopes), fc_outputs
    every_op_int8, add_and_norm_float = error(plain, []), error(plain, scopes)
    assert add_and_norm_float < 0.7 * every_op_int8, (add_and_norm_float, every_op_int8)


class _Intermediate(torch.nn.Module):
    def __init__(self, hidden, inner):
        super().__init__()
        self.dense = torch.nn.Linear(hidden, inner)
        self.intermediate_act_fn = torch.nn.GELU()

    def forward(self, x):
        return self.intermediate_act_fn(self.dense(x))


class _Output(torch.nn.Module):
    def __init__(self, inner, hidden):
        super().__init__()
        self.dense = torch.nn.Linear(inner, hidden)


class _Ffn(torch.nn.Module):
    """BERT's feed-forward sublayer alone, LayerNorm(x + W2 GELU(W1 x)), in the module layout
    split_ffn_outliers expects (.intermediate.dense, .output.dense), with one planted outlier
    channel: GELU channel 5 is ~40 on every token, the other 63 stay under ~9."""

    def __init__(self, hidden=32, inner=64):
        from tinybert_edge.converters.export import LayerNorm4d

        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.intermediate, self.output = _Intermediate(hidden, inner), _Output(inner, hidden)
        self.norm = LayerNorm4d(torch.nn.LayerNorm(hidden))
        with torch.no_grad():
            for p in (self.intermediate.dense.weight, self.output.dense.weight):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        plant_ffn_outlier(self, row_scale=0.01)  # not zero: see the planted fixture

    def forward(self, x):
        return self.norm(x + self.output.dense(self.intermediate(x)))


def test_only_the_activation_form_of_the_split_tightens_a_float_gelu_graph(tmp_path):
    """What export ships computes GELU in float (like ExecuTorch's int8-static); its output is
    quantized once before the FFN output linear, so slicing it (the form ExecuTorch uses) keeps
    the outlier channel's range for every channel (a slice shares its input's scale), while the
    activation form gives the other channels a GELU output and range of their own. Scored on the
    FFN sublayer alone (its output error against fp32), with the unsplit graph as the control."""
    import copy

    import litert_torch
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer

    from tinybert_edge.converters.litert_static import (FLOAT_OP_KINDS, add_and_norm_scopes, calibrate_ranges,
                                                        int8_static_recipe)
    from tinybert_edge.converters.outliers import split_ffn_outliers

    gen = torch.Generator().manual_seed(1)
    calibration, held_out = torch.randn(32, 1, 16, 32, generator=gen), torch.randn(8, 1, 16, 32, generator=gen)
    plain = _Ffn().eval()

    def error(module, name):
        path = tmp_path / f"{name}.tflite"
        litert_torch.convert(module, (calibration[0],)).export(str(path))
        float_model = path.read_bytes()
        rm = int8_static_recipe(add_and_norm_scopes(float_model, FLOAT_OP_KINDS))
        signature = next(iter(Interpreter(model_content=float_model).get_signature_list()))
        qsvs = calibrate_ranges(float_model, rm, {signature: [{"args_0": x.numpy()} for x in calibration]}, "minmax")
        q = bytes(quantizer.Quantizer(float_model, rm.get_quantization_recipe()).quantize(
            qsvs, enable_progress_report=False).quantized_model)
        run = Interpreter(model_content=q).get_signature_runner(signature)
        # the sublayer ends in a RESHAPE the quantizer keeps at int8: read its output as the app would
        (detail,) = run.get_output_details().values()
        scale, zero = detail["quantization"] if detail["dtype"] != np.float32 else (1.0, 0)
        with torch.no_grad():
            return float(np.mean([np.abs((next(iter(run(args_0=x.numpy()).values())).astype(np.float64) - zero) * scale
                                         - plain(x).numpy()).mean() for x in held_out]))

    errors = {"unsplit": error(plain, "unsplit")}
    for form in ("slice", "activation"):
        split = copy.deepcopy(plain)
        [record] = split_ffn_outliers(split, [(x,) for x in calibration], form=form)
        assert record["channels"] == [5], record
        errors[form] = error(split, form)
    assert errors["activation"] < 0.5 * errors["unsplit"], errors
    assert errors["activation"] < 0.5 * errors["slice"], errors
    assert errors["slice"] > 0.8 * errors["unsplit"], errors  # slicing a quantized GELU output barely helps


def test_int8_static_refuses_a_tflite_without_layer_norm4d(planted, tmp_path):
    from tinybert_edge.converters import ExportError
    from tinybert_edge.converters.export import load_for_export
    from tinybert_edge.converters.litert_static import add_and_norm_scopes

    wrapper, tok, _ = load_for_export(planted["model"], probabilities=True)  # torch's layer_norm, not LayerNorm4d
    with pytest.raises(ExportError, match="no LayerNorm op in this .tflite.*xnnpack=True"):
        add_and_norm_scopes(_fp32_tflite(wrapper, tok, tmp_path / "native.tflite"))


def test_int8_static_tflite_without_calibration_data_exits_2_and_writes_nothing(planted, tmp_path, capsys):
    out = tmp_path / "b"
    code = main(["export", "--model", str(planted["model"]), "--data", str(planted["dev"]), "--seq-len", "32",
                 "--format", "tflite", "--quantize", "int8-static", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "tflite int8-static" in err and "--calibration-data TRAIN" in err, err
    assert not out.exists() or not any(out.iterdir())


def test_activation_form_of_the_split_keeps_the_fp32_function(planted):
    import copy

    from tinybert_edge.converters import ExportError
    from tinybert_edge.converters.export import load_for_export, read_validation_data
    from tinybert_edge.converters.outliers import SplitIntermediate, split_ffn_outliers
    from tinybert_edge.converters.runtime import pad_row, tokenize

    wrapper, tok, config = load_for_export(planted["model"], probabilities=True, xnnpack=True)
    train, _, _ = read_validation_data(planted["train"], config)
    dev, _, _ = read_validation_data(planted["dev"], config)

    def inputs(texts, length=None):
        return [tuple(torch.from_numpy(a) for a in pad_row(ids, t, length or len(ids), tok.pad_token_id))
                for ids, t in tokenize(tok, texts, None, 32)]

    split = copy.deepcopy(wrapper)
    records = split_ffn_outliers(split, inputs(train[:24]), form="activation")
    assert [r["channels"] for r in records] == [[], [5]]
    layers = split.model.bert.encoder.layer
    assert isinstance(layers[1].intermediate, SplitIntermediate)
    assert not isinstance(layers[0].intermediate, SplitIntermediate)  # control: nothing to split there
    with torch.no_grad():
        for x in inputs(dev, 32):  # padded rows too
            torch.testing.assert_close(split(*x), wrapper(*x), atol=1e-5, rtol=1e-4)
    with pytest.raises(ExportError, match="unknown FFN split form 'gelu'; use one of slice, activation"):
        split_ffn_outliers(copy.deepcopy(wrapper), inputs(train[:4]), form="gelu")


def test_activation_form_refuses_a_block_without_an_activation_and_changes_nothing(planted):
    """A model whose FFN input block is not BERT's (no intermediate_act_fn) gets one error, and the
    module is left exactly as it was (the split checks every layer before it changes any)."""
    import copy

    from tinybert_edge.converters import ExportError
    from tinybert_edge.converters.export import load_for_export, read_validation_data
    from tinybert_edge.converters.outliers import split_ffn_outliers, unpadded_inputs
    from tinybert_edge.converters.runtime import tokenize

    wrapper, tok, config = load_for_export(planted["model"], probabilities=True, xnnpack=True)
    train, _, _ = read_validation_data(planted["train"], config)
    odd = copy.deepcopy(wrapper)
    del odd.model.bert.encoder.layer[1].intermediate.intermediate_act_fn
    odd.model.bert.encoder.layer[1].intermediate.forward = lambda x, d=odd.model.bert.encoder.layer[1].intermediate.dense: \
        torch.nn.functional.gelu(d(x))
    before = {k: v.clone() for k, v in odd.state_dict().items()}
    with pytest.raises(ExportError, match="layer.1's FFN input block has no intermediate_act_fn"):
        split_ffn_outliers(odd, unpadded_inputs(tokenize(tok, train[:8], None, 32), tok.pad_token_id),
                           form="activation")
    after = odd.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_int8_static_tflite_on_a_pair_task_calibrates_and_classifies_pairs(planted, tmp_path):
    """NLI-style rows (text, text_pair): the calibration rows, the outlier split and the validation
    all see both segments, and the bundle classifies pairs like the eager model."""
    import csv

    from tinybert_edge.converters.bundle import load_bundle
    from tinybert_edge.converters.export import load_for_export
    from tinybert_edge.converters.runtime import pad_row, tokenize

    def write(path, n, seed):
        rows = _rows(2 * n, seed)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(["text", "text_pair", "label"])
            for (a, label), (b, _) in zip(rows[:n], rows[n:]):
                w.writerow([a, b, label])
        return path

    dev, train = write(tmp_path / "dev.tsv", 20, 6), write(tmp_path / "train.tsv", 40, 7)
    out = tmp_path / "b"
    assert main(["export", "--model", str(planted["model"]), "--data", str(dev), "--seq-len", "32", "--format",
                 "tflite", "--quantize", "int8-static", "--fixed", "--calibration-data", str(train),
                 "--calibration-size", "16", "--threshold", "0", "--out", str(out)]) == 0
    bundle = out / "cls5-tflite-int8-static-seq32"
    meta = json.loads((bundle / "metadata.json").read_text())
    assert meta["quantization"]["calibration"]["rows"] == 16 and meta["validation"]["examples"] == 20
    assert [r["channels"] for r in meta["quantization"]["ffn_outlier_split"]][1] == [5]
    b = load_bundle(bundle)
    probs, _ = b.classify(["a brilliant film", "awful"], ["funny and warm", "a waste of time"])
    wrapper, tok, _ = load_for_export(planted["model"], probabilities=True)
    with torch.no_grad():
        ref = np.stack([wrapper(*(torch.from_numpy(a) for a in pad_row(ids, types, 32, tok.pad_token_id)))[0].numpy()
                        for ids, types in tokenize(tok, ["a brilliant film", "awful"],
                                                   ["funny and warm", "a waste of time"], 32)])
    assert probs.shape == (2, len(LABELS)) and np.abs(probs - ref).max() < 0.1, (probs, ref)


def test_histogram_ranges_ignore_padding_and_keep_the_mask_bias_whole(planted, tmp_path):
    """int8-static's ranges (litert_static.histogram_ranges, ExecuTorch's histogram observer): the
    same rows padded to 16 or to 40 tokens give the same ranges (within 1 %; measured identical),
    since only real tokens count, while min/max over the padded rows (the control) moves with the
    padding; and the tensors that carry the mask bias (the bias and each layer's scores plus bias,
    never past the softmax) keep their min/max, so a padded key stays masked."""
    from tinybert_edge.converters.export import load_for_export, read_validation_data
    from tinybert_edge.converters.litert_static import (FLOAT_OP_KINDS, MASK_BIAS, add_and_norm_scopes,
                                                        calibrate_ranges, int8_static_recipe, mask_bias_tensors)
    from tinybert_edge.converters.runtime import pad_row, tokenize

    wrapper, tok, config = load_for_export(planted["model"], probabilities=True, xnnpack=True, mask_bias=MASK_BIAS)
    train, _, _ = read_validation_data(planted["train"], config)
    rows = [r for r in tokenize(tok, train, None, 40) if len(r[0]) <= 16][:24]
    assert len(rows) >= 12

    ranges = {}
    for length in (16, 40):  # not a width of the tiny model (48, 64, 12, 4)
        model = _fp32_tflite(wrapper, tok, tmp_path / f"f{length}.tflite", length=length)
        feeds = {"serving_default": [{f"args_{i}": a.astype(np.int32) for i, a in
                                      enumerate(pad_row(*r, length, tok.pad_token_id))} for r in rows]}
        rm = int8_static_recipe(add_and_norm_scopes(model, FLOAT_OP_KINDS))
        ranges[length] = {rule: calibrate_ranges(model, rm, feeds, rule) for rule in ("minmax", "histogram")}
        bias = mask_bias_tensors(model)
        ops = _op_outputs(model)
        softmax_inputs = {t["name"] for t, o in ops if o == "SOFTMAX"}
        kinds = {t["name"]: o for t, o in ops}
        # per layer: the scores plus bias feed the softmax; nothing after a softmax or a linear is in the set
        assert len([n for n in bias if kinds.get(n) == "ADD"]) >= config.num_hidden_layers
        assert not {n for n in bias if kinds.get(n) in ("SOFTMAX", "FULLY_CONNECTED", "BATCH_MATMUL")}
        held = {n for n in bias if n in ranges[length]["minmax"]}
        assert held, "no mask-bias tensor is calibrated"
        for n in held:
            for end in ("min", "max"):
                assert ranges[length]["histogram"][n][end] == pytest.approx(ranges[length]["minmax"][n][end]), n
        # the bias itself (and the scores plus bias) reach down to -MASK_BIAS
        assert min(float(np.min(ranges[length]["histogram"][n]["min"])) for n in held) <= -MASK_BIAS / 2

    def span(qsv):
        return float(np.max(qsv["max"]) - np.min(qsv["min"]))

    shared = sorted((set(ranges[16]["minmax"]) & set(ranges[40]["minmax"])) - mask_bias_tensors(
        (tmp_path / "f40.tflite").read_bytes()))
    shared = [n for n in shared if span(ranges[16]["minmax"][n]) > 0]  # not a constant (e.g. token types 0)
    assert len(shared) > 20, shared
    hist = [abs(span(ranges[40]["histogram"][n]) / span(ranges[16]["histogram"][n]) - 1) for n in shared]
    minmax = [abs(span(ranges[40]["minmax"][n]) / span(ranges[16]["minmax"][n]) - 1) for n in shared]
    print(f"relative range change 16 -> 40 tokens, max / mean over {len(shared)} tensors: histogram "
          f"{max(hist):.3g} / {np.mean(hist):.3g}, min/max {max(minmax):.3g} / {np.mean(minmax):.3g}")
    assert max(hist) < 0.01, sorted(zip(hist, shared))[-3:]
    assert max(minmax) > 0.1, "the control: min/max does not see the padding here, so the test shows nothing"


def test_real_tokens_cuts_only_unambiguous_token_axes():
    """histogram_ranges' padding rule: the token axis of (1, L, H), (h, L, d) and (1, L, 1, H), both
    axes of a (h, L, L) score tensor; nothing where a head count or a width equals L, (1, L, L)
    included (a hidden state of width L: cutting the wrong axis would leave channels or heads
    unobserved), nor a lone last axis (the mask, the logits)."""
    from tinybert_edge.converters.litert_static import real_tokens

    L, real = 16, 5
    for shape, kept in [((1, L, 24), (1, real, 24)), ((12, L, 26), (12, real, 26)), ((1, L, 1, 24), (1, real, 1, 24)),
                        ((12, L, L), (12, real, real)), ((1, 12, L, L), (1, 12, real, real)),
                        ((1, 1, 1, L), (1, 1, 1, L)), ((1, 5), (1, 5)),
                        ((L, L, 26), (L, L, 26)), ((1, L, L, 26), (1, L, L, 26)), ((L, L, L), (L, L, L)),
                        ((1, L, L), (1, L, L)), ((L, L), (L, L))]:
        x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        got = real_tokens(x, L, real)
        assert got.shape == kept, (shape, got.shape)
        if kept == shape:
            assert got is x
    x = np.arange(L * 3, dtype=np.float32).reshape(1, L, 3)
    np.testing.assert_array_equal(real_tokens(x, L, real), x[:, :real])


def test_histogram_ranges_refuse_a_feed_without_its_mask(planted, tmp_path):
    """histogram_ranges tells real tokens from padding by the attention mask (args_1): a feed
    without it, or with more than one row, is one ExportError naming the input."""
    from tinybert_edge.converters.export import load_for_export
    from tinybert_edge.converters.litert_static import (FLOAT_OP_KINDS, MASK_BIAS, add_and_norm_scopes,
                                                        calibrate_ranges, histogram_ranges, int8_static_recipe)
    from tinybert_edge.converters.runtime import ExportError, pad_row, tokenize

    wrapper, tok, _ = load_for_export(planted["model"], probabilities=True, xnnpack=True, mask_bias=MASK_BIAS)
    model = _fp32_tflite(wrapper, tok, tmp_path / "f.tflite", length=16)
    feed = {f"args_{i}": a.astype(np.int32) for i, a in
            enumerate(pad_row(*tokenize(tok, ["a brilliant film"], None, 16)[0], 16, tok.pad_token_id))}
    rm = int8_static_recipe(add_and_norm_scopes(model, FLOAT_OP_KINDS))
    qsvs = calibrate_ranges(model, rm, {"serving_default": [feed]}, "minmax")
    no_mask = {k: v for k, v in feed.items() if k != "args_1"}
    with pytest.raises(ExportError, match=r"attention mask args_1 of shape \(1, L\).*got None"):
        histogram_ranges(model, {"serving_default": [no_mask]}, qsvs)
    two_rows = {k: np.concatenate([v, v]) for k, v in feed.items()}
    with pytest.raises(ExportError, match=r"attention mask args_1 of shape \(1, L\).*got \(2, 16\)"):
        histogram_ranges(model, {"serving_default": [two_rows]}, qsvs)


def test_gptq_after_the_split_is_what_the_int8_static_file_stores(planted, tmp_path, monkeypatch):
    """int8-static with --weight-rounding gptq, read back from the written .tflite: GPTQ rounds after
    the FFN outlier split, so every linear's int8 weights in the file are the exporter's GPTQ
    integers, each half of the split FFN linears on its own per-channel grid. Here the outlier
    column carries some rows' largest weight: rounded before the split (the int8 order), those rows
    of the other half would be re-scaled by the quantizer and their integers would not be GPTQ's
    (the control)."""
    import copy
    import shutil

    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils
    from transformers import AutoModelForSequenceClassification

    from tinybert_edge.converters import litert
    from tinybert_edge.converters.gptq import int8_codes
    from tinybert_edge.converters.outliers import ChannelSplitLinear

    model_dir = tmp_path / "cls5"
    shutil.copytree(planted["model"], model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():  # rows 0-3 of layer 1's FFN output linear: the largest weight in the outlier column
        w = model.bert.encoder.layer[1].output.dense.weight
        w[:4, 5] = 3 * w[:4].abs().max(dim=1).values
    model.save_pretrained(model_dir)
    rounded = []  # the exporter's own rounded model, as it made it
    round_rows = litert.gptq_round_rows
    monkeypatch.setattr(litert, "gptq_round_rows",
                        lambda m, *a, **k: (round_rows(m, *a, **k), rounded.append(copy.deepcopy(m)))[0])
    out = tmp_path / "b"
    assert main(["export", "--model", str(model_dir), "--data", str(planted["dev"]), "--seq-len", "32", "--fixed",
                 "--format", "tflite", "--quantize", "int8-static", "--weight-rounding", "gptq",
                 "--calibration-data", str(planted["train"]), "--calibration-size", "24", "--threshold", "0",
                 "--out", str(out)]) == 0
    bundle = out / "cls5-tflite-int8-static-gptq-seq32"
    q = json.loads((bundle / "metadata.json").read_text())["quantization"]
    assert q["weight_rounding"]["method"] == "gptq" and q["weight_rounding"]["calibration_rows"] == 24
    assert q["weight_rounding"]["exact_rows"] == q["weight_rounding"]["rows"]
    assert [r["channels"] for r in q["ffn_outlier_split"]] == [[], [5]]

    [module] = rounded
    assert isinstance(module.model.bert.encoder.layer[1].output.dense, ChannelSplitLinear)  # rounded after the split
    # the outliers' one-column output linear converts to a broadcast MUL, not a 2-D weight
    expected = {n: int8_codes(m.weight.data).numpy() for n, m in module.named_modules()
                if isinstance(m, torch.nn.Linear) and m.in_features > 1}
    tflite = flatbuffer_utils.read_model(str(bundle / "model.tflite"))
    stored = [np.frombuffer(bytes(tflite.buffers[t.buffer].data), dtype=np.int8).reshape(t.shape)
              for t in tflite.subgraphs[0].tensors
              if t.type == schema.TensorType.INT8 and len(t.shape) == 2 and tflite.buffers[t.buffer].data is not None]

    def in_file(c):
        return any(s.shape == c.shape and np.array_equal(s, c) for s in stored)

    assert len(expected) == 2 * 6 + 2 + 1  # layer 1's FFN input is two linears
    for name, c in expected.items():
        assert in_file(c), name
    # control, on the exporter's own rounded halves: on the unsplit row's grid (where the outlier
    # column's weight sets rows 0-3's scale) those rows of the other half get other integers, and
    # only those (GPTQ rounded before the split would have been re-scaled there)
    split = module.model.bert.encoder.layer[1].output.dense
    full = torch.maximum(split.rest.weight.abs().amax(1), split.outliers.weight.abs().amax(1)) / 127
    unsplit = torch.round(split.rest.weight.data / full[:, None]).int().numpy()
    differs = (unsplit != expected["model.bert.encoder.layer.1.output.dense.rest"]).any(axis=1)
    assert differs[:4].all() and not differs[4:].any()
