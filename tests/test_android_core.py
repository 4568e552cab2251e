"""The Android app's pure-JVM core (issue #6), compiled and tested in this run against golden
vectors the Python kit makes here from a real bundle: BERT's real 30,522-token vocabulary (the
embedded MiniLM teacher's tokenizer) on a tiny random-weight classifier, exported to int8 .tflite
with length buckets. Needs a JDK (javac 17) and JUnit 5's console launcher (apt-get install
junit5; .ci/run installs it)."""

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tinybert_edge.benchmarks.android import device_row, validate_device_results
from tinybert_edge.schema import SchemaError
from tinybert_edge.converters.golden import TABLES_PATH, char_tables
from tinybert_edge.cli import main

pytestmark = pytest.mark.slow
CORE = Path(__file__).resolve().parent.parent / "android_demo" / "core"
JUNIT = Path("/usr/share/java/junit-platform-console-standalone.jar")


def test_committed_char_tables_equal_the_installed_tokenizers():
    # a tokenizers upgrade that moves a character class shows up here, not as drifted ids on phones
    assert TABLES_PATH.read_text(encoding="utf-8") == char_tables(), \
        "regenerate with: python -m tinybert_edge.converters.golden --tables (and commit the file)"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification

    from tinybert_edge.fetch import fetch_default
    from tinybert_edge.models import load_tokenizer

    root = tmp_path_factory.mktemp("android")
    tok = load_tokenizer(fetch_default().teacher)
    cfg = BertConfig(vocab_size=len(tok.get_vocab()), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=2,
                     id2label={0: "fresh", 1: "rotten"}, label2id={"fresh": 0, "rotten": 1})
    import torch

    torch.manual_seed(0)
    model_dir = root / "model"
    BertForSequenceClassification(cfg).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    dev = root / "dev.tsv"
    dev.write_text("text\tlabel\n" + "".join(f"film {i} was {'great' if i % 2 else 'dull'}\t"
                                             f"{'fresh' if i % 2 else 'rotten'}\n" for i in range(20)))
    assert main(["export", "--model", str(model_dir), "--format", "tflite", "--quantize", "int8", "--seq-len", "64",
                 "--buckets", "16,32,64", "--data", str(dev), "--out", str(root / "bundles"), "--threshold", "50"]) == 0
    return next((root / "bundles").iterdir())


@pytest.mark.skipif(not shutil.which("javac") or not JUNIT.is_file(),
                    reason="needs javac and JUnit 5 (apt-get install default-jdk-headless junit5; .ci/run does)")
def test_jvm_core_matches_the_python_kit(bundle, tmp_path, capsys):
    golden = tmp_path / "golden.json"
    assert main(["golden", "--bundle", str(bundle), "--out", str(golden), "--random", "10000"]) == 0
    doc = json.loads(golden.read_text())
    assert len(doc["random"]) == 10_000 and {c["name"] for c in doc["cases"]} >= {
        "accents", "cjk", "emoji", "control_chars", "very_long", "empty", "whitespace_only", "punctuation_runs"}
    bench_out = tmp_path / "bench-device.json"
    proc = subprocess.run(["bash", str(CORE / "run_jvm_tests.sh"), str(golden), str(bundle), str(bench_out)],
                          capture_output=True, text=True, timeout=600)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    with capsys.disabled():
        print(f"\nandroid_demo/core on the JVM: {summary}")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed, failed = (int(x.split()[0]) for x in summary.split(", "))
    assert failed == 0 and passed >= 15
    assert "random strings: 10000 of 10000 tokenized exactly as in Python" in proc.stdout
    # the benchmark mode's results document, written by the core, is what bench --device merges
    result = json.loads(bench_out.read_text())
    validate_device_results(result)
    assert device_row(result, name=bundle.name)["status"] == "ok"
    # the core ran the bundle's on-device self-test (selftest.json) before it timed anything
    meta = json.loads((bundle / "metadata.json").read_text())
    assert result["self_test"]["passed"] is True and result["self_test"]["cases"] == meta["self_test"]["cases"]


def _example_results() -> list[Path]:
    """Every example results file in the app's format shipped with android_demo (the Python side's
    adb tests answer with them)."""
    return sorted(CORE.parent.rglob("bench-device*.json"))


def test_example_results_of_the_app_follow_the_bench_device_schema():
    examples = _example_results()
    assert examples, "android_demo ships an example results file (core/src/test/resources/bench-device-example.json)"
    for path in examples:
        doc = json.loads(path.read_text(encoding="utf-8"))
        validate_device_results(doc, where=str(path))
        # what BenchmarkRunner writes since bundle schema v2: the self-test ran and passed before timing
        assert doc["self_test"]["passed"] is True and doc["self_test"]["cases"] >= 1, path
        assert device_row(doc, name=path.stem)["status"] == "ok"
        # the same document with a failed self-test and timings is refused: its timings are not trusted
        failed = copy.deepcopy(doc)
        failed["self_test"].update(passed=False, message="case 0 is off by 0.3")
        with pytest.raises(SchemaError, match="self-test failed"):
            validate_device_results(failed, where=str(path))
        # the self_test object must have the fields the app writes
        broken = copy.deepcopy(doc)
        del broken["self_test"]["max_abs_diff"]
        with pytest.raises(SchemaError, match="max_abs_diff"):
            validate_device_results(broken, where=str(path))


@pytest.mark.skipif(not shutil.which("kotlinc") or not shutil.which("javac"),
                    reason="needs kotlinc and javac (apt-get install kotlin; .ci/run does)")
def test_app_and_engines_type_check_against_the_api_stubs():
    # the Android SDK and Google's Maven are out of reach: the app's and engines' Kotlin is compiled
    # against bodiless declarations of the Android, ExecuTorch and LiteRT members it calls
    proc = subprocess.run(["bash", str(CORE.parent / "api-stubs" / "check.sh")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0 and "type-check passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
