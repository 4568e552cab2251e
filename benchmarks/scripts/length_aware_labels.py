"""Do length-aware bundles (dynamic sequence length, length buckets) give the same labels as the
fixed-length bundle of the same format and quantization, on a real labelled file?

Usage:
    python benchmarks/length_aware_labels.py --fixed BUNDLE --length-aware BUNDLE [BUNDLE ...] \
        --data dev.tsv [--out benchmarks/results]

Each bundle runs through its own runtime at batch 1 (fixed: padded to max_len; dynamic: the
text's own length; buckets: the smallest bucket that holds it). Writes
length_aware_labels.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", required=True, action="append", help="fixed-length bundle (repeat per format)")
    ap.add_argument("--length-aware", required=True, nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args(argv)

    import numpy as np

    from tinybert_edge.benchmarks.harness import machine_info
    from tinybert_edge.converters.bundle import load_bundle
    from tinybert_edge.converters.runtime import tokenize
    from tinybert_edge.data import iter_task_examples
    from tinybert_edge.files import write_bytes_atomically, write_json_atomically

    texts = [ex.text for ex in iter_task_examples(a.data)]
    fixed = {}
    for path in a.fixed:
        b = load_bundle(path)
        fixed[(b.format, b.metadata["quantization"]["name"])] = (path, b)

    def logits(b):
        return b.runner(threads=1).scores(tokenize(b.tokenizer(), texts, None, b.policy.max_len))

    ref = {k: logits(b) for k, (_, b) in fixed.items()}
    rows = []
    for path in a.length_aware:
        b = load_bundle(path)
        key = (b.format, b.metadata["quantization"]["name"])
        if key not in ref:
            raise SystemExit(f"no fixed-length {key} bundle given for {path}")
        out = logits(b)
        same = float((out.argmax(-1) == ref[key].argmax(-1)).mean())
        rows.append({"format": key[0], "quantization": key[1], "policy": b.policy.tag, "bundle": str(path),
                     "fixed_bundle": str(fixed[key][0]), "examples": len(texts), "same_label": same,
                     "max_abs_logit_diff": float(np.abs(out - ref[key]).max())})
        print(f"{path}: same label as {fixed[key][0]} on {100 * same:.2f} % of {len(texts)} texts", flush=True)
    result = {"benchmark": "length_aware_labels", "date": date.today().isoformat(), "data": a.data,
              "machine": machine_info(), "rows": rows,
              "command": "python benchmarks/length_aware_labels.py " + " ".join(argv or sys.argv[1:])}
    out = Path(a.out)
    write_json_atomically(out / "length_aware_labels.json", result)
    md = ["| format | quant | policy | same label as fixed | max abs logit diff | texts |", "|---|---|---|---:|---:|---:|"]
    md += [f"| {r['format']} | {r['quantization']} | {r['policy']} | {100 * r['same_label']:.2f} % | "
           f"{r['max_abs_logit_diff']:.1e} | {r['examples']} |" for r in rows]
    write_bytes_atomically(out / "length_aware_labels.md", ("\n".join(md) + "\n").encode())
    print("\n".join(md))
    return 0 if all(r["same_label"] == 1.0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
