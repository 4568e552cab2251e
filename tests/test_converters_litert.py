"""LiteRT export through the real converter (litert-torch) and runtime (ai-edge-litert),
on a tiny classifier built here: fp32 parity, int8 smaller, bad input."""

import pytest

from tinybert_edge.converters import ExportError, get_format
from tinybert_edge.errors import ModelError
from conftest import make_tiny_model_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("cls") / "m", classifier=True, layers=2, seed=3)


@pytest.fixture(scope="module")
def exported(tiny_classifier, tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite")
    fmt = get_format("tflite")
    return out, {q: fmt.export(tiny_classifier, out / f"m-{q}.tflite", quantization=q, seq_len=16)
                 for q in ("none", "int8")}


def test_fp32_tflite_matches_eager_pytorch(exported):
    _, r = exported
    fp32 = r["none"]
    assert fp32.parity.examples == 3
    assert fp32.parity.max_abs <= 1e-4, fp32.parity
    assert fp32.parity.label_agreement == 1.0
    assert fp32.size_bytes == fp32.path.stat().st_size


def test_int8_tflite_is_smaller_and_close(exported):
    out, r = exported
    assert r["int8"].size_bytes < 0.75 * r["none"].size_bytes
    assert r["int8"].parity.sqnr_db > 10.0, r["int8"].parity
    assert sorted(p.name for p in out.iterdir()) == ["m-int8.tflite", "m-none.tflite"]  # no temp files left
    assert "MB  agreement" in r["int8"].line()


def test_truncated_artifact_is_refused(exported, tmp_path):
    from tinybert_edge.converters.litert_runtime import LiteRTRunner

    _, r = exported
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(r["none"].path.read_bytes()[:2000])
    with pytest.raises(ExportError, match="not a loadable LiteRT model"):
        LiteRTRunner(bad)
    with pytest.raises(ExportError, match="does not exist"):
        LiteRTRunner(tmp_path / "missing.tflite")


def test_bad_requests(tiny_classifier, tmp_path):
    with pytest.raises(ExportError, match="unknown format 'onnx'"):
        get_format("onnx")
    with pytest.raises(ExportError, match="unknown quantization 'int4'"):
        get_format("tflite").export(tiny_classifier, tmp_path / "x.tflite", quantization="int4")
    with pytest.raises(ExportError, match="outside 3..64"):
        get_format("tflite").export(tiny_classifier, tmp_path / "x.tflite", seq_len=512)
    encoder = make_tiny_model_dir(tmp_path / "enc", classifier=False, layers=2)
    with pytest.raises(ModelError, match="not a sequence classifier"):
        get_format("tflite").export(encoder, tmp_path / "x.tflite")
    assert not list(tmp_path.glob("*.tflite"))
