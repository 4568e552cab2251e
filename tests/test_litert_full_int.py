"""benchmarks/scripts/litert_full_int: full-integer .tflite files through the real litert-torch
converter, the real ai-edge-quantizer and the real ai-edge-litert runtime, on a tiny classifier
built here. The probe must quantize what it says (every op but the embedding gathers at int8; only
the FFN output linears lifted to int16), and its agreement figures must be what the written files
give when run again independently against the eager model."""

import json

import numpy as np
import pytest
import torch

from conftest import make_tiny_model_dir, sentences, write_tsv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("cls") / "m", classifier=True, layers=2, seed=11,
                               logit_scale=300.0)


def test_full_integer_probe_quantizes_what_it_says_and_reports_what_the_files_give(tiny_classifier, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from tinybert_edge.benchmarks.scripts.litert_full_int import main

    data = write_tsv(tmp_path / "dev.tsv", sentences(40, seed=4))
    work, out = tmp_path / "work", tmp_path / "report"
    rc = main(["--model", str(tiny_classifier), "--data", str(data), "--seq-len", "16", "--rows", "24",
               "--calibration", "12", "--recipes", "dyn8,a8w8,a8w8+ffn16", "--timing-runs", "2",
               "--work", str(work), "--out", str(out)])
    assert rc == 0
    from tinybert_edge.converters import export

    assert export._bmm_attention.__name__ == "_bmm_attention"  # the probe's patch is undone
    report = json.loads((out / "litert_full_int.json").read_text())
    by = {r["recipe"]: r for r in report["results"]}
    assert list(by) == ["fp32", "dyn8", "a8w8", "a8w8+ffn16"]
    # static int8: every op but the embedding gathers (and the mask's int -> float cast) is integer
    assert set(by["a8w8"]["op_dtypes"]["float32"]) == {"EMBEDDING_LOOKUP", "CAST"}
    assert by["a8w8"]["op_dtypes"]["int8"]["FULLY_CONNECTED"] >= 2 * 6 and "int16" not in by["a8w8"]["op_dtypes"]
    # +ffn16: exactly one linear per layer (the FFN output, fed by the GELU) runs at int16, its
    # int8 input requantized to int16 in front of it
    assert by["a8w8+ffn16"]["op_dtypes"]["int16"] == {"FULLY_CONNECTED": 2, "QUANTIZE": 2}
    # dynamic int8 keeps float activations (every op float) and tracks fp32 closely
    assert "int8" not in by["dyn8"]["op_dtypes"] and by["dyn8"]["max_abs_prob_diff"] < 0.05
    assert "| static int8, but the FFN output linears at int16 activations (`a8w8+ffn16`) |" in \
        (out / "litert_full_int.md").read_text()

    # the reported agreement is what the kept files give, run again here
    from tinybert_edge.converters.export import load_for_export, read_validation_data
    from tinybert_edge.converters.runtime import pad_row, tokenize

    wrapper, tok, config = load_for_export(tiny_classifier, probabilities=True)
    texts, _, _ = read_validation_data(data, config)
    rows = [pad_row(ids, types, 16, tok.pad_token_id) for ids, types in tokenize(tok, texts[:24], None, 16)]
    feeds = [{f"args_{i}": a.astype(np.int32) for i, a in enumerate(r)} for r in rows]

    def labels(path):
        runner = Interpreter(model_path=str(path)).get_signature_runner()
        return np.array([next(iter(runner(**f).values()))[0].argmax() for f in feeds])

    with torch.no_grad():  # the reference: the unmodified model in eager PyTorch
        reference = np.array([wrapper(*(torch.from_numpy(a) for a in r))[0].argmax().item() for r in rows])
    assert by["fp32"]["label_agreement"] == pytest.approx(float((labels(work / "fp32.tflite") == reference).mean()))
    for kind in ("a8w8", "a8w8+ffn16"):
        assert by[kind]["label_agreement"] == pytest.approx(float((labels(work / f"{kind}.tflite") == reference).mean()))


def test_full_integer_probe_refuses_an_unknown_recipe(tiny_classifier, tmp_path, capsys):
    """One clear error naming the recipes there are, exit 2, and no report written."""
    from tinybert_edge.benchmarks.scripts.litert_full_int import main

    out = tmp_path / "report"
    rc = main(["--model", str(tiny_classifier), "--data", str(write_tsv(tmp_path / "d.tsv", sentences(8))),
               "--recipes", "a4w4", "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--recipes a4w4: use some of dyn8, a8w8" in err
    assert not out.exists()


def test_minmax_ranges_cover_every_calibration_row_and_ignore_their_order(tiny_classifier, tmp_path):
    """--ranges minmax: the range of every tensor is the envelope of all calibration rows (so it
    does not depend on their order and contains ai-edge-quantizer's moving-average range),
    unlike the default, which weighs the last rows most."""
    from ai_edge_quantizer import quantizer

    from tinybert_edge.benchmarks.scripts.litert_full_int import _calibrate, ffn_output_scopes, make_recipe
    from tinybert_edge.converters.export import load_for_export, read_validation_data
    from tinybert_edge.converters.litert import export_tflite
    from tinybert_edge.converters.runtime import pad_row, tokenize

    data = write_tsv(tmp_path / "cal.tsv", sentences(30, seed=7))
    _, tok, config = load_for_export(tiny_classifier)
    texts, _, _ = read_validation_data(data, config)
    feeds = [{f"args_{i}": a.astype(np.int32) for i, a in enumerate(pad_row(ids, types, 16, tok.pad_token_id))}
             for ids, types in tokenize(tok, texts, None, 16)]
    export_tflite(tiny_classifier, tmp_path / "fp32.tflite", seq_len=16, texts=texts[:3], keep_mask=True)
    float_model = (tmp_path / "fp32.tflite").read_bytes()
    q = quantizer.Quantizer(float_model, make_recipe("a8w8", *ffn_output_scopes(float_model)))
    minmax = _calibrate(q, float_model, feeds, "minmax")
    minmax_reversed = _calibrate(q, float_model, feeds[::-1], "minmax")
    ema = _calibrate(q, float_model, feeds, "ema")
    ema_reversed = _calibrate(q, float_model, feeds[::-1], "ema")
    tensors = [t for t in minmax if "min" in minmax[t]]
    assert len(tensors) > 20 and set(tensors) <= set(ema)
    for t in tensors:
        np.testing.assert_array_equal(minmax[t]["min"], minmax_reversed[t]["min"])
        np.testing.assert_array_equal(minmax[t]["max"], minmax_reversed[t]["max"])
        assert np.all(minmax[t]["min"] <= ema[t]["min"] + 1e-6) and np.all(minmax[t]["max"] >= ema[t]["max"] - 1e-6)
    # the moving average depends on the order and is narrower somewhere: the option changes something
    assert any(not np.allclose(ema[t]["max"], ema_reversed[t]["max"]) for t in tensors)
    assert any(np.any(minmax[t]["max"] > ema[t]["max"] + 1e-4) for t in tensors)
