"""Bundles on the runtime side: open, verify and run one (numpy, the format's runtime, `tokenizers`).

    <name>/
        model.pte | model.tflite
        vocab.txt          WordPiece vocabulary, one token per line, line number = id
        labels.txt         label names, line number = class id
        metadata.json      how to feed it and how it was checked (tinybert_edge/schemas/bundle.schema.json)
        golden.json        a few inputs and the outputs the artifact must reproduce (on-device self-test)

metadata.json is the only thing the Android app, the ARM runner and the benchmark harness read
to learn the inputs; it is validated against its JSON Schema when written and when read. Making
bundles (the torch side) is in export.py.
"""

from __future__ import annotations

import json
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from tinybert_edge.files import sha256_file
from tinybert_edge.schema import SchemaError, validate

from . import get_format
from .runtime import ExportError, SeqLenPolicy, WordPieceTokenizer, count_truncated, softmax, tokenize

SCHEMA = "tinybert-edge/bundle"
SCHEMA_VERSION = 2
METADATA = "metadata.json"
SELF_TEST = "selftest.json"
SELF_TEST_SCHEMA = "tinybert-edge/selftest"
# how far a device's outputs may be from the exporting host's: int8 kernels differ across CPUs
# (x86 VNNI vs ARM dot-product); the ARM check measured 3e-3 on logits of scale ~3
SELF_TEST_ATOL = {"logits": 0.05, "probabilities": 0.02}


class BundleError(ExportError):
    """A bundle is missing, corrupted, unsafe or does not match its artifact."""


def check_metadata(meta: dict, where) -> None:
    """Validate a metadata.json object against the bundle schema.

    Raises:
        BundleError: not a bundle manifest, a newer schema version, or a missing/mistyped field
            (the message names it).
    """
    if meta.get("schema") != SCHEMA or not isinstance(meta.get("schema_version"), int):
        raise BundleError(f"{where} is not a tinybert-edge bundle manifest")
    if meta["schema_version"] > SCHEMA_VERSION:
        raise BundleError(f"{where} has schema version {meta['schema_version']}; this tinybert-edge reads "
                          f"up to {SCHEMA_VERSION}, upgrade it")
    if meta["schema_version"] < SCHEMA_VERSION:
        raise BundleError(f"{where} has schema version {meta['schema_version']} (an older tinybert-edge); "
                          "export the bundle again")
    try:
        validate("bundle", meta, str(where))
    except SchemaError as e:
        raise BundleError(str(e)) from None


def _check_attached(artifact: Path, bundle_dir: Path, shown) -> None:
    """The vocab.txt and labels.txt zipped onto a .tflite (its TFLite metadata's files, what MediaPipe
    tokenizes and labels with) must be the bundle's own."""
    try:
        with zipfile.ZipFile(artifact) as z:
            attached = {n: z.read(n) for n in z.namelist()}
    except zipfile.BadZipFile:
        raise BundleError(f"{shown}: {artifact.name} carries no TFLite metadata files although metadata.json says "
                          "it does; export the bundle again") from None
    for name in ("vocab.txt", "labels.txt"):
        if attached.get(name) != (bundle_dir / name).read_bytes():
            raise BundleError(f"{shown}: the {name} inside {artifact.name}'s TFLite metadata differs from the bundle's "
                              f"{name} (another model's vocabulary or labels); export the bundle again")


def _safe_member(name: str) -> bool:
    p = PurePosixPath(name)
    return not (name.startswith(("/", "\\")) or "\\" in name or ".." in p.parts or (len(name) > 1 and name[1] == ":"))


@dataclass
class Bundle:
    """A loaded, verified bundle.

    Attributes:
        path: the bundle directory (a temporary one for a zip, removed with the object).
        metadata: parsed metadata.json.
        policy: the artifact's sequence-length policy.
        labels: label names by class id.
    """

    path: Path
    metadata: dict
    policy: SeqLenPolicy
    labels: list[str]
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def artifact(self) -> Path:
        return self.path / self.metadata["artifact"]

    @property
    def format(self) -> str:
        return self.metadata["format"]

    @property
    def outputs_probabilities(self) -> bool:
        """True when the artifact applies softmax itself (a MediaPipe-ready .tflite)."""
        return self.metadata["outputs"][0]["kind"] == "probabilities"

    @property
    def expects_pairs(self) -> bool:
        """True when the model classifies sentence pairs: its self-test, taken from the validation
        data at export, has a second segment. (A pair model exported without --data cannot be told
        apart, as its self-test uses built-in single sentences.)"""
        info = self.metadata.get("self_test")
        if info is None:
            return False
        doc = json.loads((self.path / info["file"]).read_text(encoding="utf-8"))
        return any(case.get("text_pair") for case in doc["cases"])

    def count_truncated(self, texts: list[str], text_pairs: list[str] | None = None) -> int:
        """How many inputs are longer than the artifact's max_seq_len, so that it sees their first
        tokens only (what predict says, and an app should)."""
        return count_truncated(self.tokenizer(), texts, text_pairs, self.policy.max_len)

    def tokenizer(self) -> WordPieceTokenizer:
        """The bundle's tokenizer rebuilt from vocab.txt and metadata (what an app must do too)."""
        return WordPieceTokenizer(self.path / self.metadata["tokenizer"]["vocab_file"], self.metadata["tokenizer"])

    def runner(self, threads: int | None = None):
        """An ArtifactRunner on the real runtime of the bundle's format."""
        spec = get_format(self.format)
        return spec.runner(self.artifact, self.policy, pad_id=self.metadata["tokenizer"]["pad_id"], threads=threads)

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Class probabilities from what the artifact returned (softmax unless it is inside)."""
        return np.asarray(scores, dtype=np.float64) if self.outputs_probabilities else softmax(scores)

    def self_test(self, runner=None) -> dict:
        """Run the bundle's golden inputs (selftest.json) and compare with the outputs recorded at
        export: the tokenizer must give the recorded ids, the artifact the recorded outputs within
        the recorded atol. What the app's benchmark mode does on a phone before it times anything.

        Returns:
            {"passed": True, "cases", "max_abs_diff"}.

        Raises:
            BundleError: the bundle has no self-test, or a case differs (the message names it).
        """
        info = self.metadata.get("self_test")
        if info is None:
            raise BundleError(f"{self.path} has no self-test ({SELF_TEST}); export it again with this tinybert-edge")
        doc = json.loads((self.path / info["file"]).read_text(encoding="utf-8"))
        runner = runner or self.runner(threads=1)
        tok = self.tokenizer()
        worst = 0.0
        for i, case in enumerate(doc["cases"]):
            pair = [case["text_pair"]] if case.get("text_pair") else None
            ids, types = tokenize(tok, [case["text"]], pair, self.policy.max_len)[0]
            if ids != case["input_ids"] or types != case["token_type_ids"]:
                raise BundleError(f"{self.path}: self-test case {i} ({case['text'][:40]!r}) tokenizes differently "
                                  "from the export; the tokenizer or vocab.txt does not match the model")
            diff = float(np.abs(np.asarray(runner.run_row(ids, types)) - np.asarray(case["expected"])).max())
            worst = max(worst, diff)
            if diff > info["atol"]:
                raise BundleError(f"{self.path}: self-test case {i} ({case['text'][:40]!r}) is off by {diff:.3g} "
                                  f"(> {info['atol']}): the artifact does not reproduce its exported outputs on this "
                                  "machine; export it again or report the runtime version")
        return {"passed": True, "cases": len(doc["cases"]), "max_abs_diff": worst}

    def classify(self, texts: list[str], text_pairs: list[str] | None = None, threads: int | None = None):
        """(probabilities (n, C), per-example latency in ms) for raw texts, batch 1 each, after one warm-up."""
        tok, runner = self.tokenizer(), self.runner(threads)
        rows = tokenize(tok, texts, text_pairs, self.policy.max_len)
        if rows:
            runner.warm_up(rows[0])  # so the first timed text does not pay the runtime's setup
        probs, ms = [], []
        for row in rows:
            t0 = time.perf_counter()
            scores = runner.run_row(*row)
            ms.append(1000 * (time.perf_counter() - t0))
            probs.append(self.probabilities(scores))
        return np.stack(probs), ms


def load_bundle(path: str | Path, *, allow_failed: bool = False) -> Bundle:
    """Open a bundle directory or zip and verify every file against metadata.json.

    Args:
        path: bundle directory, its metadata.json, or a bundle .zip.
        allow_failed: accept a bundle whose validation failed.

    Returns:
        Bundle.

    Raises:
        BundleError: missing, unsafe zip entries (absolute paths, "..", links), bad or unknown
            metadata, a missing file, a sha256 mismatch, or a failed bundle.
    """
    path = Path(path)
    tmp = None
    if path.is_file() and path.name == METADATA:
        path = path.parent
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise BundleError(f"{path} is neither a bundle directory nor a zip; pass the directory that "
                              "`tinybert-edge export` printed")
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            bad = [i.filename for i in infos if not _safe_member(i.filename) or (i.external_attr >> 16) & 0o170000 ==
                   0o120000]
            if bad:
                raise BundleError(f"{path} has unsafe entries {bad[:3]} (absolute paths, '..' or links); "
                                  "refusing to extract it")
            tmp = tempfile.TemporaryDirectory(prefix="tinybert-edge-bundle-")
            z.extractall(tmp.name)
        root = Path(tmp.name)
        metas = sorted(root.rglob(METADATA))
        if len(metas) != 1:
            raise BundleError(f"{path} holds {len(metas)} metadata.json files, expected one bundle")
        path_dir = metas[0].parent
    else:
        path_dir = path
    meta_path = path_dir / METADATA
    if not meta_path.is_file():
        raise BundleError(f"{path} is not a bundle (no {METADATA}); export one with tinybert-edge export")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{meta_path} is not valid JSON ({e}); export the bundle again") from None
    check_metadata(meta, meta_path)
    for name, info in meta["files"].items():
        f = path_dir / name
        if not f.is_file():
            raise BundleError(f"{path}: {name} is missing; copy the whole bundle directory")
        if sha256_file(f) != info["sha256"]:
            raise BundleError(f"{path}: sha256 mismatch for {name} (corrupted, truncated or edited); "
                              "export the bundle again")
    if meta.get("status") != "passed" and not allow_failed:
        v = meta.get("validation", {})
        raise BundleError(f"{path} failed validation (label agreement {v.get('label_agreement')} < "
                          f"{v.get('threshold')}); re-export, or pass --allow-failed to use it anyway")
    labels = (path_dir / meta["task"]["labels_file"]).read_text(encoding="utf-8").splitlines()
    if labels != meta["task"]["labels"]:
        raise BundleError(f"{path}: labels.txt does not match metadata.json")
    if "mediapipe" in meta:
        _check_attached(path_dir / meta["artifact"], path_dir, path)
    return Bundle(path_dir, meta, SeqLenPolicy.from_dict(meta["seq_len_policy"]), labels, tmp)
