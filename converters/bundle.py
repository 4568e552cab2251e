"""Bundles: one directory (and optional zip) per artifact, everything an app needs to run it.

    <name>/
        model.pte | model.tflite
        vocab.txt          WordPiece vocabulary, one token per line, line number = id
        labels.txt         label names, line number = class id
        metadata.json      how to feed it and how it was checked (schema below)

metadata.json is the only thing the Android app (android_demo) and the benchmark harness read
to learn the inputs: names, dtypes, shapes, sequence-length policy and signatures, tokenizer
settings and special-token ids, labels, quantization recipe, sha256 of every file and of the
source model, tool and runtime versions, the parity report and the validation on real data.

A bundle is built in a temporary directory and renamed into place; a failed validation keeps
the bundle with "status": "failed" so the user can inspect it, and `load_bundle` refuses it
unless asked to allow failed bundles.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from importlib import metadata as _md
from pathlib import Path, PurePosixPath

import numpy as np

from tinybert_edge import __version__
from tinybert_edge.models import publish_dir, resolve_model_dir, sha256_file, write_bytes_atomically, \
    write_json_atomically

from . import get_format
from .base import ExportError, ExportResult, SeqLenPolicy, softmax, tokenize

SCHEMA = "tinybert-edge/bundle"
SCHEMA_VERSION = 1
METADATA = "metadata.json"


class BundleError(ExportError):
    """A bundle is missing, corrupted, unsafe or does not match its artifact."""


def _version(package: str) -> str | None:
    try:
        return _md.version(package)
    except _md.PackageNotFoundError:
        return None


def tokenizer_settings(tokenizer) -> dict:
    """The WordPiece settings an app needs to reproduce `tokenizer` exactly.

    Raises:
        BundleError: the tokenizer is not BERT WordPiece (bundles carry vocab.txt only).
    """
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    model, norm = state.get("model") or {}, state.get("normalizer") or {}
    if model.get("type") != "WordPiece" or norm.get("type") != "BertNormalizer":
        raise BundleError(f"bundles support BERT WordPiece tokenizers only; this model's tokenizer is "
                          f"{model.get('type')} with {norm.get('type')} normalization")
    specials = {}
    for name in ("cls", "sep", "pad", "unk", "mask"):
        tok = getattr(tokenizer, f"{name}_token")
        specials[f"{name}_token"] = tok
        specials[f"{name}_id"] = tokenizer.convert_tokens_to_ids(tok)
    return {
        "type": "bert-wordpiece",
        "vocab_file": "vocab.txt",
        "vocab_size": len(tokenizer.get_vocab()),
        "do_lower_case": bool(norm.get("lowercase", True)),
        # None means "follow do_lower_case", as in BERT's BasicTokenizer
        "strip_accents": norm.get("strip_accents"),
        "tokenize_chinese_chars": bool(norm.get("handle_chinese_chars", True)),
        "clean_text": bool(norm.get("clean_text", True)),
        "continuing_subword_prefix": model.get("continuing_subword_prefix", "##"),
        "max_input_chars_per_word": int(model.get("max_input_chars_per_word", 100)),
        **specials,
    }


def vocab_text(tokenizer) -> str:
    """vocab.txt content: tokens ordered by id, which must be dense from 0."""
    vocab = tokenizer.get_vocab()
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise BundleError("the tokenizer's vocabulary ids are not 0..N-1; it cannot be written as vocab.txt")
    return "".join(tok + "\n" for tok, _ in by_id)


def tokenizer_from_bundle(bundle_dir: Path, settings: dict):
    """A transformers BertTokenizer rebuilt from vocab.txt and metadata settings."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab=str(bundle_dir / settings["vocab_file"]), do_lower_case=settings["do_lower_case"],
                         strip_accents=settings["strip_accents"],
                         tokenize_chinese_chars=settings["tokenize_chinese_chars"],
                         unk_token=settings["unk_token"], sep_token=settings["sep_token"],
                         pad_token=settings["pad_token"], cls_token=settings["cls_token"],
                         mask_token=settings["mask_token"])


@dataclass
class Validation:
    """The artifact checked on labelled real data (or on unlabelled texts when gold is None)."""

    data: str | None
    examples: int
    threshold: float
    label_agreement: float
    fp32_accuracy: float | None = None
    artifact_accuracy: float | None = None

    @property
    def passed(self) -> bool:
        return self.label_agreement >= self.threshold

    def to_dict(self) -> dict:
        return {"data": self.data, "examples": self.examples, "threshold": self.threshold,
                "label_agreement": self.label_agreement, "fp32_accuracy": self.fp32_accuracy,
                "artifact_accuracy": self.artifact_accuracy, "passed": self.passed}


@dataclass
class BundleResult:
    """What `export_bundle` made."""

    path: Path
    zip_path: Path | None
    result: ExportResult
    validation: Validation
    metadata: dict = field(repr=False)

    def line(self) -> str:
        v = self.validation
        acc = "" if v.artifact_accuracy is None else \
            f"  acc {100 * v.artifact_accuracy:5.2f} % (fp32 {100 * v.fp32_accuracy:5.2f} %)"
        status = "ok" if v.passed else f"FAILED (agreement < {100 * v.threshold:g} %)"
        return f"{self.result.line()}{acc}  {status}  {self.path}"


def _check_out_dir(model_dir, out_dir) -> tuple[Path, Path]:
    """(model_dir, out_dir) resolved; BundleError when the output would land inside the model."""
    model_dir = resolve_model_dir(model_dir).resolve()
    out_dir = Path(out_dir).resolve()
    if out_dir == model_dir or model_dir in out_dir.parents:
        raise BundleError(f"output {out_dir} is inside the model directory {model_dir}; choose another --out")
    return model_dir, out_dir


def _source_sha256(model_dir: Path) -> str:
    weights = [p for p in ("model.safetensors", "pytorch_model.bin") if (model_dir / p).is_file()]
    if not weights:
        raise BundleError(f"{model_dir} has no model.safetensors to fingerprint")
    return sha256_file(model_dir / weights[0])


def _inputs_spec(result: ExportResult, dtype: str) -> list[dict]:
    seq = "seq" if result.policy.kind != "fixed" else result.policy.max_len
    return [{"name": n, "dtype": dtype, "shape": [1, seq]} for n in ("input_ids", "attention_mask", "token_type_ids")]


def export_bundle(fmt: str, model_dir: str | Path, out_dir: str | Path, *, quantization: str = "none",
                  policy: SeqLenPolicy | None = None, texts: list[str] | None = None,
                  text_pairs: list[str] | None = None, gold: list[int] | None = None, data_name: str | None = None,
                  threshold: float = 0.99, make_zip: bool = False) -> BundleResult:
    """Export one artifact into a bundle directory, validated through its real runtime.

    Args:
        fmt: registry name ("executorch" or "tflite").
        model_dir: HF sequence-classifier directory.
        out_dir: the bundle directory to create (replaced atomically if it exists).
        quantization: as the format accepts.
        policy: sequence-length policy.
        texts, text_pairs: the validation inputs (e.g. the task's dev split).
        gold: gold label ids aligned with texts, for accuracy (optional).
        data_name: where the texts came from, recorded in metadata.
        threshold: minimum label agreement with eager fp32 PyTorch for status "passed".
        make_zip: also write <out_dir>.zip (atomically).

    Returns:
        BundleResult; check `.validation.passed`.

    Raises:
        ExportError/BundleError: bad request, failed export, unsupported tokenizer.
        tinybert_edge.errors.ModelError: not a sequence classifier.
    """
    from tinybert_edge.models import load_config, load_tokenizer

    spec = get_format(fmt)
    model_dir, out_dir = _check_out_dir(model_dir, out_dir)
    if not 0.0 <= threshold <= 1.0:
        raise BundleError(f"threshold {threshold} must be within 0..1 (0.99 means 99 %)")
    config = load_config(model_dir)
    tok = load_tokenizer(model_dir)
    settings = tokenizer_settings(tok)
    vocab = vocab_text(tok)
    labels = [config.id2label[i] for i in range(len(config.id2label))]
    holder: dict = {}

    def build(tmp: Path) -> None:
        artifact = tmp / f"model{spec.suffix}"
        r = spec.export(model_dir, artifact, quantization=quantization, policy=policy, texts=texts,
                        text_pairs=text_pairs)
        (tmp / "vocab.txt").write_text(vocab, encoding="utf-8")
        (tmp / "labels.txt").write_text("".join(f"{lab}\n" for lab in labels), encoding="utf-8")
        fp32_acc = art_acc = None
        if gold is not None and getattr(config, "problem_type", None) != "regression":
            g = np.asarray(gold)
            fp32_acc = float((r.reference_logits.argmax(-1) == g).mean())
            art_acc = float((r.artifact_logits.argmax(-1) == g).mean())
        v = Validation(data_name, r.parity.examples, threshold, r.parity.label_agreement, fp32_acc, art_acc)
        meta = {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
            "status": "passed" if v.passed else "failed",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "format": fmt, "artifact": artifact.name,
            "runtime": {"name": r.details["runtime"], "pip": spec.runtime_package,
                        "version": _version(spec.runtime_package)},
            "task": {"problem_type": getattr(config, "problem_type", None) or "single_label_classification",
                     "num_labels": len(labels), "labels": labels, "labels_file": "labels.txt"},
            "max_seq_len": r.policy.max_len,
            "seq_len_policy": r.policy.to_dict(),
            "signatures": r.details["signatures"],
            "inputs": _inputs_spec(r, r.details["input_dtype"]),
            "outputs": [{"name": "logits", "dtype": "float32", "shape": [1, len(labels)]}],
            "tokenizer": settings,
            "quantization": {"name": quantization, "recipe": r.details["recipe"]},
            "source_model": {"path": str(model_dir), "sha256": _source_sha256(model_dir),
                             "model_type": config.model_type, "num_hidden_layers": config.num_hidden_layers,
                             "hidden_size": config.hidden_size, "params": r.details.get("params")},
            "tools": {"tinybert_edge": __version__, "torch": _version("torch"),
                      "transformers": _version("transformers"), "executorch": _version("executorch"),
                      "litert_torch": _version("litert-torch"), "ai_edge_litert": _version("ai-edge-litert")},
            "export": {"seconds": round(r.seconds, 2),
                       **{k: r.details[k] for k in ("delegate", "ops_outside_delegate", "ops_outside_delegate_total")
                          if k in r.details}},
            "parity": r.parity.to_dict(),
            "validation": v.to_dict(),
            "files": {name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
                      for name in (artifact.name, "vocab.txt", "labels.txt")},
        }
        write_json_atomically(tmp / METADATA, meta)
        holder.update(result=r, validation=v, metadata=meta)

    path = publish_dir(build, out_dir)
    zip_path = write_zip(path) if make_zip else None
    r = holder["result"]
    return BundleResult(path, zip_path, dataclasses.replace(r, path=path / r.path.name), holder["validation"],
                        holder["metadata"])


def write_zip(bundle_dir: Path) -> Path:
    """<bundle_dir>.zip holding <name>/<file> entries, written atomically."""
    bundle_dir = Path(bundle_dir)
    out = bundle_dir.with_name(bundle_dir.name + ".zip")
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / out.name
        with zipfile.ZipFile(staged, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for p in sorted(bundle_dir.iterdir()):
                z.write(p, f"{bundle_dir.name}/{p.name}")
        write_bytes_atomically(staged.read_bytes(), out)
    return out


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

    def tokenizer(self):
        """The bundle's tokenizer rebuilt from vocab.txt and metadata (what an app must do too)."""
        return tokenizer_from_bundle(self.path, self.metadata["tokenizer"])

    def runner(self, threads: int | None = None):
        """An ArtifactRunner on the real runtime of the bundle's format."""
        spec = get_format(self.format)
        return spec.runner(self.artifact, self.policy, pad_id=self.metadata["tokenizer"]["pad_id"], threads=threads)

    def classify(self, texts: list[str], text_pairs: list[str] | None = None, threads: int | None = None):
        """(probabilities (n, C), per-example latency in ms) for raw texts, batch 1 each, after one warm-up."""
        import time

        tok, runner = self.tokenizer(), self.runner(threads)
        rows = tokenize(tok, texts, text_pairs, self.policy.max_len)
        if rows:
            runner.warm_up(rows[0])  # so the first timed text does not pay the runtime's setup
        probs, ms = [], []
        for row in rows:
            t0 = time.perf_counter()
            logits = runner.logits([row])[0]
            ms.append(1000 * (time.perf_counter() - t0))
            probs.append(softmax(logits))
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
    if meta.get("schema") != SCHEMA or not isinstance(meta.get("schema_version"), int):
        raise BundleError(f"{meta_path} is not a tinybert-edge bundle manifest")
    if meta["schema_version"] > SCHEMA_VERSION:
        raise BundleError(f"{meta_path} has schema version {meta['schema_version']}; this tinybert-edge reads "
                          f"up to {SCHEMA_VERSION}, upgrade it")
    for name, info in meta["files"].items():
        f = path_dir / name
        if not f.is_file():
            raise BundleError(f"{path}: {name} is missing; copy the whole bundle directory")
        if sha256_file(f) != info["sha256"]:
            raise BundleError(f"{path}: sha256 mismatch for {name} (corrupted, truncated or edited); "
                              "export the bundle again")
    if meta["format"] not in ("executorch", "tflite"):
        raise BundleError(f"{meta_path}: unknown format {meta['format']!r}")
    if meta.get("status") != "passed" and not allow_failed:
        v = meta.get("validation", {})
        raise BundleError(f"{path} failed validation (label agreement {v.get('label_agreement')} < "
                          f"{v.get('threshold')}); re-export, or pass --allow-failed to use it anyway")
    labels = (path_dir / meta["task"]["labels_file"]).read_text(encoding="utf-8").splitlines()
    if labels != meta["task"]["labels"]:
        raise BundleError(f"{path}: labels.txt does not match metadata.json")
    return Bundle(path_dir, meta, SeqLenPolicy.from_dict(meta["seq_len_policy"]), labels, tmp)



def read_validation_data(path: str | Path, config, columns=None, max_examples: int | None = None):
    """(texts, text_pairs or None, gold ids or None) of a labelled task file, for validation.

    Raises:
        tinybert_edge.errors.DataError: unreadable file, or a label the model does not know.
    """
    from tinybert_edge.data import Columns, iter_task_examples
    from tinybert_edge.evaluate import label_space_of

    space = label_space_of(config)
    texts, pairs, gold = [], [], []
    for ex in iter_task_examples(path, columns or Columns()):
        if max_examples is not None and len(texts) >= max_examples:
            break
        texts.append(ex.text)
        pairs.append(ex.text_pair)
        gold.append(space.encode(ex.label, Path(path), ex.line))
    if space.task_type == "regression":
        gold = None
    return texts, (pairs if any(p is not None for p in pairs) else None), gold


def export_bundles(model_dir: str | Path, out_dir: str | Path, *, formats: list[str], quantizations: list[str],
                   policy: SeqLenPolicy, data: str | Path | None = None, columns=None,
                   max_examples: int | None = None, threshold: float = 0.99, make_zip: bool = False,
                   on_result=None) -> list[BundleResult]:
    """Export every (format, quantization) pair into OUT/<model>-<format>-<quant>-<policy>/.

    Args:
        model_dir: HF sequence-classifier directory.
        out_dir: parent directory of the bundles.
        formats: registry names.
        quantizations: each must be accepted by every format asked for.
        policy: sequence-length policy shared by all artifacts.
        data: labelled task file for validation (None: three built-in sentences).
        columns: tinybert_edge.data.Columns of the file.
        max_examples: validate on the first N rows only.
        threshold: minimum label agreement.
        make_zip: also zip each bundle.
        on_result: called with each BundleResult as soon as it exists (to print a line).

    Returns:
        The bundles in export order, passed or failed.

    Raises:
        ExportError/BundleError: a request no format can satisfy (checked before any export).
    """
    from tinybert_edge.models import check_classifier, load_config

    model_dir, _ = _check_out_dir(model_dir, out_dir)
    specs = [get_format(f) for f in formats]
    for spec in specs:
        bad = [q for q in quantizations if q not in spec.quantizations]
        if bad:
            raise ExportError(f"{spec.name} does not offer quantization {bad[0]!r}; it offers "
                              f"{', '.join(spec.quantizations)}")
        if policy.kind not in spec.policies:
            raise ExportError(f"{spec.name} does not support a {policy.kind} sequence length "
                              f"(it supports {', '.join(spec.policies)}); "
                              + ("use --buckets 32,64,128 instead" if policy.kind == "dynamic" else ""))
    config = load_config(model_dir)

    check_classifier(config, model_dir)
    policy.check(config.max_position_embeddings)
    texts = pairs = gold = None
    if data is not None:
        texts, pairs, gold = read_validation_data(data, config, columns, max_examples)
    name = model_dir.parent.name if model_dir.name == "model" else model_dir.name
    results = []
    for spec in specs:
        for q in quantizations:
            b = export_bundle(spec.name, model_dir, Path(out_dir) / f"{name}-{spec.name}-{q}-{policy.tag}",
                              quantization=q, policy=policy, texts=texts, text_pairs=pairs, gold=gold,
                              data_name=str(data) if data else None, threshold=threshold, make_zip=make_zip)
            results.append(b)
            if on_result:
                on_result(b)
    return results
