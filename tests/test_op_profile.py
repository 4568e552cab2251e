"""Per-operator profiles (benchmarks/scripts/op_profile.py) on a tiny int8 .pte and .tflite made by
the kit's export CLI: ExecuTorch rows add up to the traced run, every portable kernel the export
left outside XNNPACK shows up, every LiteRT operator is accounted for, and bad input is one line."""

import json
import math

import pytest

from benchmarks.scripts import op_profile
from tinybert_edge.cli import main as kit
from conftest import make_tiny_model_dir

pytestmark = pytest.mark.slow

SEQ = 32
ARGS = ["--seq-len", str(SEQ), "--runs", "5", "--threads", "1"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    model = make_tiny_model_dir(tmp_path_factory.mktemp("cls") / "student", classifier=True, layers=2, seed=3)
    out = tmp_path_factory.mktemp("bundles")
    for fmt in ("executorch", "tflite"):
        assert kit(["export", "--model", str(model), "--format", fmt, "--quantize", "int8", "--seq-len", str(SEQ),
                    "--fixed", "--out", str(out)]) == 0
    return out / f"student-executorch-int8-seq{SEQ}", out / f"student-tflite-int8-seq{SEQ}"


@pytest.fixture(scope="module")
def report(bundles, tmp_path_factory):
    out = tmp_path_factory.mktemp("profile")
    assert op_profile.main(["--bundle", str(bundles[0]), "--bundle", str(bundles[1]), *ARGS, "--out", str(out)]) == 0
    return json.loads((out / "op_profile.json").read_text()), (out / "op_profile.md").read_text()


def test_every_row_is_named_counted_and_timed(report):
    profiles = report[0]["profiles"]
    assert [p["profiler"] for p in profiles] == ["executorch", "litert"]
    for p in profiles:
        assert p["total_ms"] > 0 and p["padded_len"] == SEQ and p["runs"] == 5
        assert p["rows"] == sorted(p["rows"], key=lambda r: -r["ms"])
        for r in p["rows"]:
            assert r["op"].strip() and r["where"].strip() and r["category"].strip(), r
            assert r["count"] >= 1 and math.isfinite(r["ms"]), r
            if r["op"] != op_profile.NOT_ATTRIBUTED:  # the only row that may be negative
                assert r["ms"] >= 0, r


def test_executorch_rows_add_up_to_the_traced_run(report, bundles):
    et = report[0]["profiles"][0]
    total = sum(r["ms"] for r in et["rows"])
    # medians of per-run values do not add exactly, and XNNPACK's events have 1 us resolution
    assert abs(total - et["rows_total_ms"]) <= 0.3 * et["rows_total_ms"] + 0.02, (total, et["rows_total_ms"])
    meta = json.loads((bundles[0] / "metadata.json").read_text())
    # every op the export left outside the delegate runs once per inference as a portable kernel
    assert et["portable_calls"] == meta["export"]["ops_outside_delegate_total"]
    portable = {r["op"] for r in et["rows"] if r["where"].startswith("portable")}
    assert portable and "unnamed kernel" not in portable, portable
    xnn = [r for r in et["rows"] if r["where"] == "XNNPACK" and r["op"] != op_profile.OVERHEAD_DELEGATE]
    assert any(r["category"] == "linear (GEMM)" for r in xnn), xnn
    # the export's LayerNorm runs inside XNNPACK (its means), none as a portable kernel
    assert any(r["category"] == "layer norm" for r in xnn), xnn
    assert not [op for op in portable if "layer_norm" in op], portable
    assert et["delegate_calls"] >= 1


def test_litert_accounts_for_every_operator(report, bundles):
    lt = report[0]["profiles"][1]
    ops = [r for r in lt["rows"] if r["op"] != op_profile.NOT_ATTRIBUTED]
    assert sum(r["count"] for r in ops) == lt["ops"] > 0
    assert math.isclose(sum(r["ms"] for r in lt["rows"]), lt["total_ms"], rel_tol=1e-9)
    fc = [r for r in ops if r["op"] == "FULLY_CONNECTED"]
    assert fc and fc[0]["where"] == "XNNPACK" and fc[0]["ms"] > 0
    assert 0 < lt["delegated_ops"] <= lt["ops"]


def test_markdown_has_the_comparison_and_both_tables(report, bundles):
    data, md = report
    assert "## By category" in md and "| op | where | category | count | ms | share |" in md
    for b in bundles:
        assert f"## {b.name}" in md
    cats = {c["category"] for c in data["by_category"]}
    assert {"linear (GEMM)", "layer norm", "overhead"} <= cats


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    return err[-1]


def test_missing_bundle_is_one_clear_line(tmp_path, capsys):
    missing = tmp_path / "no-such-bundle"
    assert op_profile.main(["--bundle", str(missing), *ARGS, "--out", str(tmp_path / "out")]) == 2
    line = _one_line_error(capsys)
    assert str(missing) in line and "export" in line
    assert not (tmp_path / "out").exists()


def test_not_a_bundle_is_one_clear_line(tmp_path, capsys):
    stray = tmp_path / "model.onnx"
    stray.write_bytes(b"not a bundle")
    assert op_profile.main(["--bundle", str(stray), *ARGS, "--out", str(tmp_path / "out")]) == 2
    assert "neither a bundle directory nor a zip" in _one_line_error(capsys)


def test_unsupported_format_and_length_are_refused(bundles, tmp_path, capsys, monkeypatch):
    assert op_profile.main(["--bundle", str(bundles[1]), "--seq-len", str(SEQ + 1), "--runs", "1",
                            "--out", str(tmp_path / "out")]) == 2
    assert "--seq-len" in _one_line_error(capsys)
    monkeypatch.setattr(op_profile, "PROFILERS", {"executorch": "executorch"})  # as if tflite were new
    assert op_profile.main(["--bundle", str(bundles[1]), *ARGS, "--out", str(tmp_path / "out")]) == 2
    assert "'tflite' bundle" in _one_line_error(capsys)
