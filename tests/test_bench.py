"""Benchmark harness: latency statistics, one process per row through the real runtimes, failed
rows kept with their reason, ratios, and the JSON/Markdown/PNG report."""

import json

import numpy as np
import pytest

from tinybert_edge.benchmarks.harness import (Target, add_roofline, machine_info, run_bench, to_markdown,
                                              write_report)
from tinybert_edge.converters.runtime import latency_stats
from tinybert_edge.cli import main
from conftest import make_tiny_model_dir, sentences, write_tsv


def test_latency_stats_match_numpy_and_trim_ten_percent():
    ms = [float(x) for x in range(1, 21)] + [1000.0]  # one outlier
    s = latency_stats(ms)
    assert s["p50_ms"] == np.percentile(ms, 50) and s["p99_ms"] == np.percentile(ms, 99)
    assert s["runs"] == 21 and s["mean_ms"] == pytest.approx(np.mean(ms))
    assert s["trimmed_mean_ms"] == pytest.approx(np.mean(sorted(ms)[2:-2]))  # outlier dropped
    assert s["trimmed_mean_ms"] < s["mean_ms"]


def test_machine_info_names_cpu_cores_and_versions():
    m = machine_info()
    assert m["cores"] >= 1 and m["cpu"] and m["arch"]
    assert m["versions"]["torch"] and "executorch" in m["versions"]


def test_int8_rows_fall_back_to_the_fp32_peak_where_pytorch_int8_gemm_is_slower():
    # numbers from the avx2-only AMD EPYC of 2026-12-04: oneDNN's int8 GEMM at 1 GOP/s is no peak
    row = {"status": "ok", "threads": 1, "quantization": "int8", "p50_ms": 52.64, "mean_input_tokens": 128,
           "shape": {"layers": 4, "hidden": 312, "ffn": 1200}}
    slow = {"status": "ok", "fp32_gflops": 33.0, "int8_gops": 1.0, "gemm": 1024, "kernels": "torch"}
    a = dict(row)
    add_roofline([a], slow)
    assert a["roofline_peak"] == "fp32"
    assert a["achieved_fraction"] == pytest.approx(a["gflop"] / 0.05264 / 33.0)
    assert 0 < a["achieved_fraction"] < 1  # against the bogus int8 figure it would read ~25x the peak
    fast = {**slow, "int8_gops": 120.0}  # a VNNI machine: the measured int8 peak stands
    b = dict(row)
    add_roofline([b], fast)
    assert b["roofline_peak"] == "int8" and b["achieved_fraction"] == pytest.approx(b["gflop"] / 0.05264 / 120.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    teacher = make_tiny_model_dir(root / "teacher", classifier=True, layers=4, seed=1)
    student = make_tiny_model_dir(root / "student", classifier=True, layers=2, seed=2)
    dev = write_tsv(root / "dev.tsv", sentences(30, seed=4))
    return root, teacher, student, dev


@pytest.mark.slow
def test_bench_cli_writes_json_md_png_with_failed_row_kept(tiny, tmp_path, capsys):
    root, teacher, student, dev = tiny
    assert main(["export", "--model", str(student), "--format", "all", "--quantize", "int8", "--seq-len", "32",
                 "--data", str(dev), "--out", str(root / "bundles"), "--threshold", "50"]) == 0
    bundles = sorted(str(p) for p in (root / "bundles").iterdir())
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(bundles[0], broken)
    (broken / "model.pte").write_bytes(b"garbage")
    out = tmp_path / "report"
    rc = main(["bench", "--teacher", str(teacher), "--no-bert-base", "--student", str(student), *bundles, str(broken),
               "--seq-len", "32", "--data", str(dev), "--runs", "5", "--warmup", "1", "--threads", "1",
               "--out", str(out)])
    assert rc == 3  # one row failed, the table is still there
    report = json.loads((out / "bench.json").read_text())
    assert report["schema"] == "tinybert-edge/bench" and report["schema_version"] == 1
    rows = {(r["name"], r["workload"]): r for r in report["rows"]}
    assert len(rows) == 2 * 6  # teacher, student eager, three bundles, the broken copy; two workloads
    bad = rows[("broken", "fixed")]
    assert bad["status"] == "failed" and "sha256 mismatch" in bad["reason"]
    for (name, _), r in rows.items():
        if name == "broken":
            continue
        assert r["status"] == "ok", r
        assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["size_bytes"] > 0 and r["peak_rss_mb"] > 0
        assert 0.0 <= r["accuracy"] <= 1.0 and r["accuracy_examples"] == 30
        assert r["speedup_vs"]["teacher"] == pytest.approx(rows[("teacher", r["workload"])]["p50_ms"] / r["p50_ms"])
    assert rows[("teacher", "real")]["mean_input_tokens"] < 32 == rows[("teacher", "fixed")]["mean_input_tokens"]
    md = (out / "bench.md").read_text()
    assert "failed: " in md and "| teacher | pytorch-eager |" in md
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_bad_input(tiny, tmp_path, capsys):
    root, teacher, student, dev = tiny
    assert main(["bench", "--teacher", str(teacher), "--threads", "0", "--out", str(tmp_path / "r")]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main(["bench", "--student", str(tmp_path), "--no-bert-base", "--out", str(tmp_path / "r")]) == 2
    assert "neither a model directory nor a bundle" in capsys.readouterr().err
    assert main(["bench", "--student", str(student), "--out", str(tmp_path / "r")]) == 2
    assert "needs a bert-base-uncased tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_unknown_eval_labels_fail_the_row_not_the_table(tiny, tmp_path):
    root, teacher, student, dev = tiny
    odd = write_tsv(tmp_path / "odd.tsv", [("good film", "maybe")] * 3)
    report = run_bench([Target("student", "eager", str(student), "student")], threads=[1], workloads=["real"],
                       seq_len=32, data=str(odd), runs=2, warmup=0)
    (row,) = report["rows"]
    assert row["status"] == "failed" and "unknown to the model" in row["reason"]
    paths = write_report(report, tmp_path / "r")
    assert "failed: " in to_markdown(report) and paths["png"].is_file()


def test_known_accuracy_is_used_and_measured_accuracy_agrees(tiny):
    # The demo hands the bench the accuracy its export validation measured on the same dev rows;
    # the row must carry it (and say so), and it must be what the timing process would measure.
    root, teacher, student, dev = tiny
    settings = dict(threads=[1], workloads=["real"], seq_len=32, data=str(dev), runs=2, warmup=0)
    measured = run_bench([Target("student", "eager", str(student), "student")], **settings)["rows"][0]
    assert measured["status"] == "ok" and "accuracy_source" not in measured
    given = run_bench([Target("student", "eager", str(student), "student",
                              known_accuracy=(measured["accuracy"], 30))], **settings)["rows"][0]
    assert given["accuracy"] == measured["accuracy"] and given["accuracy_examples"] == 30
    assert "before the benchmark" in given["accuracy_source"]


@pytest.mark.slow
def test_bench_times_a_failed_bundle_only_with_allow_failed_and_says_so(tiny, tmp_path):
    """A bundle export marked failed (here: the tiny student's .tflite with its status set to
    failed, as export writes it under --threshold) is refused by default, naming --allow-failed,
    and timed with --allow-failed, its row saying the validation failed."""
    import shutil

    root, teacher, student, dev = tiny
    assert main(["export", "--model", str(student), "--format", "tflite", "--quantize", "int8", "--seq-len", "32",
                 "--data", str(dev), "--out", str(tmp_path / "b")]) == 0
    (bundle,) = (tmp_path / "b").iterdir()
    failed = tmp_path / "failed-bundle"
    shutil.copytree(bundle, failed)
    meta = json.loads((failed / "metadata.json").read_text())
    meta["status"] = "failed"
    meta["validation"]["label_agreement"] = 0.5
    (failed / "metadata.json").write_text(json.dumps(meta))

    def bench(out, *extra):
        rc = main(["bench", "--no-bert-base", "--student", str(failed), "--workloads", "fixed", "--seq-len", "32",
                   "--runs", "3", "--warmup", "1", "--out", str(out), *extra])
        return rc, json.loads((out / "bench.json").read_text())["rows"], (out / "bench.md").read_text()

    rc, (row,), _ = bench(tmp_path / "r1")
    assert rc == 3 and row["status"] == "failed" and "failed validation" in row["reason"]
    assert "--allow-failed" in row["reason"]
    rc, (row,), md = bench(tmp_path / "r2", "--allow-failed")
    assert rc == 0 and row["status"] == "ok" and row["p50_ms"] > 0
    assert "label agreement 0.5" in row["validation_failed"]
    assert "ok, validation failed |" in md
    # a phone run takes passed bundles only: refused before anything is written
    assert main(["bench", "--no-bert-base", "--student", str(failed), "--device", "adb", "--allow-failed",
                 "--out", str(tmp_path / "r3")]) == 2
    assert not (tmp_path / "r3").exists()
