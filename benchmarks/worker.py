"""One benchmark measurement in its own process: one model, one runtime, one thread count, one
workload. The harness starts one process per row because torch's and ExecuTorch's thread
pools fight inside one process, and so that peak RSS belongs to one runtime alone.

    python -m tinybert_edge.benchmarks.worker SPEC.json RESULT.json

SPEC holds: kind ("eager" | "bert-base" | "bundle"), path, threads, workload ("fixed" |
"real"), seq_len, data (labelled file or null), warmup, runs, max_examples, accuracy (bool).
RESULT gets the measured fields, or {"status": "failed", "reason": ...}.

A bundle row loads only what an app on a phone loads: numpy, `tokenizers` and the format's
runtime (ExecuTorch's Python runtime brings torch; LiteRT does not). torch and transformers are
imported only for eager rows, in _Eager: that laziness is the point of the process-per-row
design, so its peak RSS is the runtime's, not the kit's.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from tinybert_edge.converters.bundle import load_bundle
from tinybert_edge.converters.runtime import latency_stats, pad_row, quiet_native_output, tokenize
from tinybert_edge.taskfiles import iter_task_examples


def _peak_rss_mb() -> float:
    """Peak resident memory of this process. VmHWM, not getrusage's ru_maxrss: Linux carries
    ru_maxrss over fork+exec, so a worker started by a large parent would report the parent's."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rows(spec: dict, tokenizer):
    """Tokenized eval rows (ids, types) and gold ids, or synthetic rows when there is no data."""
    if spec.get("data"):
        texts, pairs, labels = [], [], []
        for ex in iter_task_examples(spec["data"]):
            if spec.get("max_examples") and len(texts) >= spec["max_examples"]:
                break
            texts.append(ex.text)
            pairs.append(ex.text_pair)
            labels.append(ex.label)
        rows = tokenize(tokenizer, texts, pairs if any(p is not None for p in pairs) else None, spec["seq_len"])
        return rows, labels
    rng = np.random.default_rng(0)  # synthetic full-length inputs drawn from the model's own vocabulary
    n = spec["seq_len"]
    # vocab_size: HF tokenizers and the bundles' own WordPieceTokenizer both have it (get_vocab is HF's only)
    return [([tokenizer.cls_token_id] + rng.integers(0, tokenizer.vocab_size, n - 2).tolist()
             + [tokenizer.sep_token_id], [0] * n) for _ in range(64)], None


class _Eager:
    """Eager PyTorch (HF's default SDPA attention), batch 1, unpadded in the real workload."""

    def __init__(self, spec: dict):
        import torch  # eager rows only (see the module docstring)
        from transformers import BertConfig, BertForSequenceClassification

        from tinybert_edge.models import load_classifier, load_tokenizer, resolve_model_dir

        torch.set_num_threads(spec["threads"])
        self.torch = torch
        if spec["kind"] == "bert-base":
            torch.manual_seed(0)
            self.model = BertForSequenceClassification(BertConfig(num_labels=2)).eval()
            # BertConfig() has bert-base-uncased's vocabulary, which the MiniLM teacher shares:
            # its tokenizer gives the real token counts of the eval texts
            self.tokenizer = load_tokenizer(spec["tokenizer"])
            self.labels = None  # random weights: no accuracy
            self.size_bytes = sum(p.numel() * p.element_size() for p in self.model.state_dict().values())
            self.quantization = "none"
        else:
            d = resolve_model_dir(spec["path"])
            self.model = load_classifier(d).eval()
            self.tokenizer = load_tokenizer(d)
            self.labels = [self.model.config.id2label[i] for i in range(len(self.model.config.id2label))]
            self.size_bytes = sum(p.stat().st_size for p in d.glob("*.safetensors"))
            self.quantization = "none"
        self.params = sum(p.numel() for p in self.model.parameters())
        c = self.model.config
        self.shape = {"layers": c.num_hidden_layers, "hidden": c.hidden_size, "ffn": c.intermediate_size}
        self.pad_id = 0
        self.backend = "pytorch-eager"

    def run(self, ids, types, length):
        t = [self.torch.from_numpy(a) for a in pad_row(ids, types, length, self.pad_id)]
        with self.torch.inference_mode():
            return self.model(input_ids=t[0], attention_mask=t[1], token_type_ids=t[2]).logits[0].float().numpy()

    def pad_length(self, n: int, spec: dict) -> int:
        return spec["seq_len"] if spec["workload"] == "fixed" else n


class _Bundle:
    """An exported artifact through its real runtime (ExecuTorch or ai-edge-litert)."""

    def __init__(self, spec: dict):
        b = load_bundle(spec["path"], allow_failed=spec.get("allow_failed", False))
        self.bundle = b
        v = b.metadata.get("validation", {})
        # a bundle under its threshold is timed only when asked, and says so in its row
        self.validation_note = (None if b.metadata.get("status") == "passed" else
                                f"validation failed (label agreement {v.get('label_agreement')} < {v.get('threshold')}): "
                                "timed with --allow-failed")
        self.runner = b.runner(threads=spec["threads"])
        self.self_test = b.self_test(self.runner)  # refuse to time an artifact that does not reproduce its outputs
        self.tokenizer = b.tokenizer()
        self.labels = b.labels
        self.size_bytes = b.artifact.stat().st_size
        self.params = b.metadata["source_model"].get("params")
        src = b.metadata["source_model"]
        self.shape = ({"layers": src["num_hidden_layers"], "hidden": src["hidden_size"], "ffn": src["intermediate_size"]}
                      if "intermediate_size" in src else None)
        self.quantization = b.metadata["quantization"]["name"]
        self.pad_id = b.metadata["tokenizer"]["pad_id"]
        self.backend = b.format
        self.policy = b.policy
        if b.policy.max_len != spec["seq_len"]:
            raise ValueError(f"bundle max_seq_len {b.policy.max_len} differs from the workload's seq-len "
                             f"{spec['seq_len']}; export it with --seq-len {spec['seq_len']}")

    def run(self, ids, types, length):
        return self.runner.run(self.runner.signature_for(length), *pad_row(ids, types, length, self.pad_id))

    def pad_length(self, n: int, spec: dict) -> int:
        # real workload: a length-aware artifact shrinks to the input, a fixed one takes its full
        # length anyway; fixed workload: everything at seq_len, for reports comparable to others
        return self.policy.pad_length(n) if spec["workload"] == "real" else spec["seq_len"]


def measure(spec: dict) -> dict:
    """Run one measurement; see the module docstring for SPEC."""
    t0 = time.perf_counter()
    target = _Bundle(spec) if spec["kind"] == "bundle" else _Eager(spec)
    load_s = time.perf_counter() - t0
    rows, gold = _rows(spec, target.tokenizer)
    lengths = [target.pad_length(len(ids), spec) for ids, _ in rows]
    t = time.perf_counter()
    target.run(*rows[0], lengths[0])
    first_ms = 1000 * (time.perf_counter() - t)
    for i in range(spec["warmup"]):
        target.run(*rows[i % len(rows)], lengths[i % len(rows)])
    ms = []
    stride = max(1, len(rows) // spec["runs"])  # timed inputs spread over the whole eval file
    picked = [(i * stride) % len(rows) for i in range(spec["runs"])]
    for j in picked:
        t = time.perf_counter()
        target.run(*rows[j], lengths[j])
        ms.append(1000 * (time.perf_counter() - t))
    out = {"status": "ok", "backend": target.backend, "quantization": target.quantization,
           "load_s": load_s, "first_inference_ms": first_ms, **latency_stats(ms),
           "size_bytes": int(target.size_bytes), "params": target.params, "shape": target.shape,
           "mean_input_tokens": float(np.mean([lengths[j] for j in picked])),
           "mean_real_tokens": float(np.mean([len(r[0]) for r in rows]))}
    if spec.get("accuracy") and gold is not None and target.labels is not None:
        unknown = sorted({g for g in gold if g not in target.labels})
        if unknown:
            raise ValueError(f"eval labels {unknown} are unknown to the model (labels {target.labels})")
        preds = [int(np.argmax(target.run(ids, types, n))) for (ids, types), n in zip(rows, lengths)]
        out["accuracy"] = float(np.mean([target.labels[p] == g for p, g in zip(preds, gold)]))
        out["accuracy_examples"] = len(preds)
    if getattr(target, "validation_note", None):
        out["validation_failed"] = target.validation_note
    out["peak_rss_mb"] = _peak_rss_mb()
    out["modules"] = {"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}
    return out


def main(argv=None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    spec = json.loads(Path(argv[0]).read_text())
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        with quiet_native_output("measurement"):  # runtimes' setup logs stay off the harness's terminal
            result = measure(spec)
    except Exception as e:  # every failure becomes a failed row with its reason
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        result = {"status": "failed", "reason": f"{type(e).__name__}: {msg}"}
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
