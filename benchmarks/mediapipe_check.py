"""A mediapipe bundle through the real MediaPipe Tasks TextClassifier, against the kit's `predict`.

    python -m tinybert_edge.benchmarks.mediapipe_check --bundle DIR --data dev.tsv [--out DIR]

MediaPipe tokenizes with its own C++ WordPiece (the third tokenizer of the project, after HF's and
the Android core's), runs the .tflite and reports the softmax the model outputs. For every text:
the label of each side and the largest probability difference. Where the probabilities differ by
more than float noise, the two tokenizers did not give the same ids; those texts are counted and
classified by what they contain (accents, non-ASCII capitals, CJK, control or format characters,
Unicode spaces, words over 100 bytes), plus a fixed probe set of such strings.

Exit status: 0 agreement >= --min-agreement, 2 bad input, 3 under it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import unicodedata
from importlib import metadata as _md
from pathlib import Path

import numpy as np

from tinybert_edge.converters.bundle import load_bundle
from tinybert_edge.converters.runtime import require
from tinybert_edge.errors import ConfigError, KitError
from tinybert_edge.files import write_bytes_atomically, write_json_atomically
from tinybert_edge.taskfiles import iter_task_examples

from .harness import machine_info

# Same ids give the same scores up to float32 softmax vs float64 (measured: < 1e-7).
SAME_IDS_ATOL = 1e-5
PROBES = ["an absolute joy to watch", "Café déjà vu, naïve", "ÉNORME DÉCEPTION", "Фильм отличный",
          "電影很好看", "great 😀 film", "great\u00a0movie", "great\u200bmovie", "great\x07movie",
          "ＧＲＥＡＴ movie", "é" * 60, "a" * 150 + " ok", "tab\there and\nnewline", "10/10 would watch again!!!"]


def classify_text(text: str) -> list[str]:
    """What in a text makes MediaPipe's tokenizer differ from BERT's (HF's and the kit's)."""
    kinds = []
    if any(unicodedata.combining(c) for c in unicodedata.normalize("NFD", text)) and not text.isascii():
        kinds.append("accents")
    if any(c.isupper() and not c.isascii() for c in text):
        kinds.append("non-ASCII capitals")
    if any("CJK" in unicodedata.name(c, "") for c in text):
        kinds.append("CJK")
    if any(unicodedata.category(c) in ("Cc", "Cf") and c not in "\t\n\r" for c in text):
        kinds.append("control/format characters")
    if any(c.isspace() and not c.isascii() for c in text):
        kinds.append("Unicode spaces")
    if any(len(w.encode("utf-8")) > 100 for w in text.split()):
        kinds.append("word over 100 bytes")
    if not text.isascii() and not kinds:
        kinds.append("other non-ASCII")
    return kinds or ["none found"]


class MediaPipeClassifier:
    """MediaPipe Tasks' TextClassifier on a .tflite (probabilities in label-index order)."""

    def __init__(self, model: Path, num_labels: int):
        text = require("mediapipe.tasks.python.text", "mediapipe")
        core = require("mediapipe.tasks.python.core.base_options", "mediapipe")
        options = text.TextClassifierOptions(base_options=core.BaseOptions(model_asset_path=str(model)))
        self._c = text.TextClassifier.create_from_options(options)
        self.num_labels = num_labels

    def probabilities(self, text: str) -> np.ndarray:
        out = np.zeros(self.num_labels)
        for cat in self._c.classify(text).classifications[0].categories:
            out[cat.index] = cat.score
        return out

    def close(self) -> None:
        self._c.close()


def compare(bundle_path: str | Path, texts: list[str]) -> dict:
    """MediaPipe vs the kit on `texts` (and the probe strings) for one mediapipe bundle.

    Raises:
        BundleError: not a bundle MediaPipe can load (metadata.json says so).
        ExportError: mediapipe is not installed.
    """
    bundle = load_bundle(bundle_path)
    if not bundle.metadata.get("mediapipe", {}).get("loadable"):
        raise ConfigError(f"{bundle_path} is not MediaPipe-loadable (one fixed-length signature with TFLite "
                          "metadata); export it with --format mediapipe")
    mp = MediaPipeClassifier(bundle.artifact, len(bundle.labels))
    try:
        def side_by_side(items):
            kit, _ = bundle.classify(items, threads=1)
            return kit, np.stack([mp.probabilities(t) for t in items])

        kit, med = side_by_side(texts)
        pk, pm = side_by_side(PROBES)
    finally:
        mp.close()
    diff = np.abs(kit - med).max(1)
    differ = [i for i, d in enumerate(diff) if d > SAME_IDS_ATOL]
    kinds: dict[str, int] = {}
    for i in differ:
        for k in classify_text(texts[i]):
            kinds[k] = kinds.get(k, 0) + 1
    pdiff = np.abs(pk - pm).max(1)
    return {"schema": "tinybert-edge/mediapipe-check", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(
                timespec="seconds"), "machine": machine_info(), "bundle": str(bundle_path),
            "mediapipe": _version("mediapipe"), "texts": len(texts),
            "label_agreement": float((kit.argmax(1) == med.argmax(1)).mean()),
            "max_prob_diff": float(diff.max()), "mean_prob_diff": float(diff.mean()),
            "max_prob_diff_same_ids": float(np.delete(diff, differ).max()) if len(differ) < len(texts) else None,
            "tokenizers_differ": len(differ), "differ_by_kind": kinds,
            "differ_examples": [{"text": texts[i], "kinds": classify_text(texts[i]), "prob_diff": float(diff[i]),
                                 "label_kit": bundle.labels[int(kit[i].argmax())],
                                 "label_mediapipe": bundle.labels[int(med[i].argmax())]} for i in differ[:10]],
            "probes": [{"text": t, "kinds": classify_text(t), "prob_diff": float(d),
                        "same_label": bool(pk[j].argmax() == pm[j].argmax())}
                       for j, (t, d) in enumerate(zip(PROBES, pdiff))]}


def _version(pkg: str) -> str | None:
    try:
        return _md.version(pkg)
    except _md.PackageNotFoundError:
        return None


def to_markdown(r: dict) -> str:
    lines = [f"MediaPipe Tasks TextClassifier (mediapipe {r['mediapipe']}) vs `tinybert-edge predict`, {r['date']}, "
             f"{r['machine']['cpu']}; bundle {Path(r['bundle']).name}, {r['texts']} texts.", "",
             "| label agreement | max prob diff | mean prob diff | max prob diff where ids agree | "
             "texts where the tokenizers differ |", "|---:|---:|---:|---:|---:|",
             f"| {100 * r['label_agreement']:.2f} % | {r['max_prob_diff']:.2e} | {r['mean_prob_diff']:.2e} | "
             f"{(r['max_prob_diff_same_ids'] or 0):.1e} | {r['tokenizers_differ']} "
             f"({', '.join(f'{k} {v}' for k, v in r['differ_by_kind'].items()) or '-'}) |", "",
             "Probe strings (MediaPipe's tokenizer lowercases ASCII only, does not strip accents, splits on ASCII "
             "whitespace only and keeps control characters; BERT's does all four):", "",
             "| text | what it has | prob diff | same label |", "|---|---|---:|---|"]
    for p in r["probes"]:
        shown = p["text"] if len(p["text"]) <= 40 else p["text"][:37] + "..."
        lines.append(f"| {shown!r} | {', '.join(p['kinds'])} | {p['prob_diff']:.2e} | {'yes' if p['same_label'] else 'NO'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True, help="a bundle exported with --format mediapipe")
    p.add_argument("--data", required=True, help="task file whose texts are classified")
    p.add_argument("--max-examples", type=int, default=None)
    p.add_argument("--min-agreement", type=float, default=99.9, help="in %% (default 99.9)")
    p.add_argument("--out", default="benchmarks/results/mediapipe")
    a = p.parse_args(argv)
    try:
        texts = [ex.text for ex in iter_task_examples(a.data, require_label=False)][: a.max_examples]
        report = compare(a.bundle, texts)
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    write_json_atomically(out / "mediapipe_check.json", report)
    write_bytes_atomically(out / "mediapipe_check.md", (to_markdown(report) + "\n").encode())
    print(to_markdown(report))
    return 0 if 100 * report["label_agreement"] >= a.min_agreement else 3


if __name__ == "__main__":
    sys.exit(main())
