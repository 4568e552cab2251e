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


def test_buckets_share_one_quantization_table_per_weight(tiny_classifier, tmp_path):
    """Each bucket is its own subgraph over the same int8 weight buffers; their per-channel scales
    and zero points are written once and referenced from every subgraph (they were repeated per
    bucket: +0.5 MB per signature for the 4L-312D student), and the short tensor names keep the
    subgraphs' inputs and outputs as they were. The rewritten file still matches eager PyTorch."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as tfl
    from ai_edge_litert.interpreter import Interpreter

    from tinybert_edge.converters.runtime import SeqLenPolicy

    r = get_format("tflite").export(tiny_classifier, tmp_path / "b.tflite", quantization="int8",
                                    policy=SeqLenPolicy.make(16, buckets=[8, 16]))
    raw = r.path.read_bytes()
    model = tfl.Model.GetRootAs(raw, 0)
    assert model.SubgraphsLength() == 2
    where: dict[int, set[int]] = {}  # weight buffer -> file positions of its quantization tables
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        ends = {sg.Inputs(i) for i in range(sg.InputsLength())} | {sg.Outputs(i) for i in range(sg.OutputsLength())}
        for i in range(sg.TensorsLength()):
            t = sg.Tensors(i)
            if i not in ends:
                assert t.Name() == f"t{i}".encode()
            q = t.Quantization()
            if t.Type() == tfl.TensorType.INT8 and q is not None and q.ScaleLength() > 1 and t.Buffer() > 0:
                where.setdefault(t.Buffer(), set()).add(q._tab.Pos)
    assert where and all(len(pos) == 1 for pos in where.values()), where
    # the interpreter runs the rewritten file: probabilities, and parity with eager PyTorch
    it = Interpreter(model_path=str(r.path))
    ids = np.array([[2, 7, 9, 11, 3, 0, 0, 0]], np.int32)  # the tiny vocabulary has 100 entries
    mask = (ids > 0).astype(np.int32)
    out = it.get_signature_runner("seq8")(args_0=ids, args_1=mask, args_2=np.zeros_like(ids))["output_0"]
    assert out.shape == (1, 2) and abs(float(out.sum()) - 1.0) < 1e-5
    assert r.parity.label_agreement == 1.0
