"""The mediapipe bundle through the real MediaPipe Tasks TextClassifier (PyPI mediapipe, issue #13):
it loads with no code of ours, returns the kit's probabilities and labels, and the tokenizer
differences are found and named."""

import json

import numpy as np
import pytest

from tinybert_edge.benchmarks import mediapipe_check
from tinybert_edge.cli import main
from conftest import make_tiny_model_dir, sentences, write_tsv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp")
    model = make_tiny_model_dir(root / "student", classifier=True, labels=("bad", "good", "meh"), layers=2, seed=4)
    dev = write_tsv(root / "dev.tsv", [(t, "good" if i % 3 == 0 else "bad" if i % 3 == 1 else "meh")
                                       for i, (t, _) in enumerate(sentences(30, seed=5))])
    assert main(["export", "--model", str(model), "--format", "mediapipe", "--quantize", "int8", "--seq-len", "32",
                 "--data", str(dev), "--out", str(root / "b"), "--threshold", "50"]) == 0
    return next((root / "b").iterdir()), dev


def test_mediapipe_loads_the_bundle_and_agrees_with_predict(bundle):
    path, dev = bundle
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["format"] == "mediapipe" and meta["mediapipe"]["loadable"] and meta["outputs"][0]["kind"] == \
        "probabilities"
    texts = [line.split("\t")[0] for line in dev.read_text().splitlines()[1:]]
    r = mediapipe_check.compare(path, texts)
    assert r["label_agreement"] == 1.0 and r["tokenizers_differ"] == 0  # plain ASCII: the same ids
    assert r["max_prob_diff"] < 1e-5
    probe = {p["text"]: p for p in r["probes"]}
    assert probe["an absolute joy to watch"]["prob_diff"] < 1e-5
    # MediaPipe keeps accents that BERT strips: the ids differ, and the report says why
    accents = probe["Café déjà vu, naïve"]
    assert accents["kinds"] == ["accents"]


def test_mediapipe_scores_are_the_models_probabilities_with_the_kits_labels(bundle):
    path, _ = bundle
    mp = mediapipe_check.MediaPipeClassifier(path / "model.tflite", 3)
    try:
        p = mp.probabilities("good fun film")
    finally:
        mp.close()
    assert np.isclose(p.sum(), 1.0, atol=1e-5)  # softmax inside the model: MediaPipe applies none
    from tinybert_edge.converters.bundle import load_bundle

    kit, _ = load_bundle(path).classify(["good fun film"])
    assert np.allclose(kit[0], p, atol=1e-6)


def test_a_bucketed_tflite_is_not_offered_to_mediapipe(bundle, tmp_path, capsys):
    model = make_tiny_model_dir(tmp_path / "m", classifier=True, layers=2)
    assert main(["export", "--model", str(model), "--format", "mediapipe", "--buckets", "16,32", "--seq-len", "32",
                 "--out", str(tmp_path / "b")]) == 2
    assert "mediapipe does not support a buckets sequence length" in capsys.readouterr().err
