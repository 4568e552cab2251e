"""Export a student to every registered format and quantization; report size, conversion time
and parity with eager PyTorch on a real labelled file, through each format's real runtime.

Usage:
    python benchmarks/export_parity.py --model tinybert-edge-demo/student/model \
        --data ~/.cache/tinybert-edge/data/rotten_tomatoes/dev.tsv [--seq-len 128] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import date
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--artifacts", default="/tmp/tinybert-edge-export")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args(argv)

    from converters import FORMATS
    from tinybert_edge.data import iter_task_examples

    texts = [ex.text for ex in iter_task_examples(a.data)]
    rows = []
    for fmt in FORMATS.values():
        for q in fmt.quantizations:
            r = fmt.export(a.model, Path(a.artifacts) / f"student-{q}{fmt.suffix}", quantization=q,
                           seq_len=a.seq_len, texts=texts)
            print(r.line(), flush=True)
            rows.append({"format": r.format, "quantization": q, "size_bytes": r.size_bytes,
                         "seconds": round(r.seconds, 1), "seq_len": r.seq_len, **r.parity.to_dict()})
    result = {"benchmark": "export_parity", "date": date.today().isoformat(), "model": a.model, "data": a.data,
              "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine()},
              "rows": rows,
              "command": "python benchmarks/export_parity.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "export_parity.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["| format | quant | size (MB) | convert (s) | label agreement | max abs dlogit | SQNR (dB) |",
          "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        sq = "exact" if r["sqnr_db"] is None else f"{r['sqnr_db']:.1f}"
        md.append(f"| {r['format']} | {r['quantization']} | {r['size_bytes'] / 1e6:.1f} | {r['seconds']:.1f} | "
                  f"{100 * r['label_agreement']:.2f} % | {r['max_abs']:.2e} | {sq} |")
    (out / "export_parity.md").write_text("\n".join(md) + f"\n\n{len(texts)} texts of {a.data}, seq {a.seq_len}\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
