"""Bundles re-scored on a held-out split: label agreement with their fp32 model where nothing was chosen.

`export` validates each artifact on --data (the dev split), and the static int8 recipes were chosen
on that same split, so a bundle just over the 99 % bar may be over it by selection. This scores
bundles as they are, failed ones too, on another labelled file (e.g. the test split): each text
through the bundle's own runtime and through the eager fp32 model it was exported from, on the
same padded inputs (as `export` compares them), giving label agreement, mean and max |difference|,
SQNR, and both accuracies, next to the agreement recorded at export.

Usage:
    python -m benchmarks.scripts.heldout --bundle DIR [--bundle DIR ...] --data test.tsv \
        [--out benchmarks/results/heldout]
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path


def measure(bundles: list[Path], data: Path, columns=None) -> dict:
    """Score every bundle and its fp32 source model on the texts of `data`.

    Every bundle, its source model and the data are checked before the first one is scored, so a
    bad argument fails in seconds, not after minutes of scoring.

    Args:
        bundles: bundle directories (passed or failed) of classifiers.
        data: a labelled task file the bundles were not validated on.
        columns: tinybert_edge.data.Columns of the file (None: text, text_pair, label).

    Returns:
        The report: one result per bundle, in the order given.

    Raises:
        tinybert_edge.errors.KitError: a bundle that does not load, a regression bundle, a source
            model that is gone or is not the one the bundle was exported from (sha256), or
            unreadable or empty data (labels the model does not know included).
    """
    import numpy as np

    from tinybert_edge.benchmarks.harness import machine_info
    from tinybert_edge.converters.bundle import BundleError, load_bundle
    from tinybert_edge.converters.export import eager_logits, load_for_export, read_validation_data, source_sha256
    from tinybert_edge.converters.runtime import ParityReport, tokenize
    from tinybert_edge.errors import DataError

    loaded = []
    for path in bundles:
        bundle = load_bundle(path, allow_failed=True)  # every file checked against metadata.json
        meta = bundle.metadata
        if meta["task"]["problem_type"] == "regression":
            raise BundleError(f"{path} is a regression bundle; label agreement and accuracy are for classifiers")
        source = Path(meta["source_model"]["path"])
        if not source.is_dir():
            raise BundleError(f"{path} was exported from {source}, which is gone; the fp32 reference needs it")
        if source_sha256(source) != meta["source_model"]["sha256"]:
            raise BundleError(f"{source} is not the model {path} was exported from (its weights' sha256 differs: "
                              "trained again in place?); export the bundle again from it")
        # the reference `export` held the artifact against: ExecuTorch's XNNPACK-shaped graph, with the
        # keep-mask attention for its static schemes (the same function as the plain model, up to float noise)
        static = meta["quantization"]["name"] in ("int8-static", "int8-qat")
        wrapper, tok, config = load_for_export(source, probabilities=bundle.outputs_probabilities,
                                               xnnpack=meta["format"] == "executorch",
                                               keep_mask=meta["format"] == "executorch" and static)
        texts, pairs, gold = read_validation_data(data, config, columns)
        if not texts:
            raise DataError(f"{data} has no rows to score; pass a labelled file with rows")
        loaded.append((path, bundle, meta, wrapper, tok, tokenize(tok, texts, pairs, meta["max_seq_len"]), gold))
    results = []
    for path, bundle, meta, wrapper, tok, rows, gold in loaded:
        runner = bundle.runner(threads=2)
        reference = eager_logits(wrapper, rows, runner.policy, tok.pad_token_id)
        candidate = runner.scores(rows)
        parity = ParityReport.compare(reference, candidate)
        g = np.asarray(gold)
        results.append({"bundle": path.name, "format": meta["format"], "quantization": meta["quantization"]["name"],
                        "status": meta["status"], "examples": parity.examples,
                        "label_agreement": parity.label_agreement, "mean_abs_diff": parity.mean_abs,
                        "max_abs_diff": parity.max_abs, "sqnr_db": parity.to_dict()["sqnr_db"],
                        "fp32_accuracy": float((reference.argmax(-1) == g).mean()),
                        "accuracy": float((candidate.argmax(-1) == g).mean()),
                        "interval": _interval(parity.label_agreement, parity.examples),
                        "export_agreement": meta["validation"]["label_agreement"],
                        "export_interval": _interval(meta["validation"]["label_agreement"], meta["validation"]["examples"]),
                        "export_data": meta["validation"].get("data")})
        print(f"{path.name}: agreement {100 * parity.label_agreement:.2f} % on {parity.examples} rows of {data.name} "
              f"({100 * meta['validation']['label_agreement']:.2f} % at export)", flush=True)
    return {"schema": "tinybert-edge/heldout", "date": date.today().isoformat(), "machine": machine_info()["cpu"],
            "data": str(data), "results": results}


def _interval(agreement: float, rows: int) -> list[float]:
    """The agreement's 95 % Wilson interval on `rows` rows (agreement is a row count over rows)."""
    from tinybert_edge.evaluate import agreement_interval

    return list(agreement_interval(round(agreement * rows), rows))


def to_markdown(report: dict) -> str:
    """The report as a Markdown table, one row per bundle."""
    lines = [f"Bundles re-scored on {Path(report['data']).name} ({report['machine']}, {report['date']}): agreement "
             "with the eager fp32 model on the same padded inputs, and the agreement recorded at export; mean abs "
             "diff and SQNR are on the bundle's outputs (ExecuTorch: logits, LiteRT: probabilities); in brackets, the "
             "agreement's 95 % Wilson interval on those rows", "",
             "| bundle | status at export | agreement at export | agreement here | rows | mean abs diff | SQNR dB "
             "| accuracy (fp32) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        sqnr = "inf" if r["sqnr_db"] is None else f"{r['sqnr_db']:.1f}"
        lines.append(f"| {r['bundle']} | {r['status']} | {100 * r['export_agreement']:.2f} % {_brackets(r['export_interval'])} | "
                     f"{100 * r['label_agreement']:.2f} % {_brackets(r['interval'])} | {r['examples']} | "
                     f"{r['mean_abs_diff']:.4f} | {sqnr} | "
                     f"{100 * r['accuracy']:.2f} % ({100 * r['fp32_accuracy']:.2f} %) |")
    return "\n".join(lines) + "\n"


def _brackets(interval: list[float]) -> str:
    return f"({100 * interval[0]:.2f}-{100 * interval[1]:.2f})"


def plot(report: dict, path: Path) -> None:
    """Each bundle's export-time and held-out agreement side by side, against the 99 % bar, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(results) + 1), 4.4))
    xs = range(len(results))
    # whiskers: each agreement's 95 % interval on its rows, so a bar whose whisker crosses 99 % reads as undecided
    def whiskers(key, interval_key):
        return [[100 * (r[key] - r[interval_key][0]) for r in results], [100 * (r[interval_key][1] - r[key]) for r in results]]

    ax.bar([x - 0.2 for x in xs], [100 * r["export_agreement"] for r in results], 0.4, label="at export (its --data)",
           yerr=whiskers("export_agreement", "export_interval"), capsize=3, error_kw={"lw": 1})
    ax.bar([x + 0.2 for x in xs], [100 * r["label_agreement"] for r in results], 0.4,
           label=f"held out ({Path(report['data']).name})", yerr=whiskers("label_agreement", "interval"), capsize=3,
           error_kw={"lw": 1})
    ax.axhline(99, color="grey", ls="--", lw=1)
    # on a white patch: at the right edge the label sits over the last bundle's bar
    ax.text(len(results) - 0.5, 99.05, "99 %: pass", fontsize=8, color="grey", ha="right", va="bottom",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0})
    ax.set_xticks(list(xs))
    # the bundle's own name (model, format, scheme, rounding, lengths), broken after the format
    ax.set_xticklabels([f"{i + 1}: " + r["bundle"].replace(f"-{r['format']}-", f"-{r['format']}\n", 1)
                        for i, r in enumerate(results)], fontsize=8)
    lo = min(min(100 * r["interval"][0], 100 * r["export_interval"][0]) for r in results)
    ax.set_ylim(min(lo - 0.5, 98.0), 100.2)
    ax.set_ylabel("label agreement with fp32, % (whiskers: 95 % interval)")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(f"Agreement at export vs held out, {report['machine']}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Command line: score the bundles, then write heldout.{json,md,png} under --out.

    Returns:
        0, or 2 after one `error:` line (nothing written) for bad input.
    """
    from tinybert_edge.data import Columns
    from tinybert_edge.errors import KitError
    from tinybert_edge.files import write_bytes_atomically, write_json_atomically

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", action="append", required=True, help="bundle directory (passed or failed); repeat")
    p.add_argument("--data", required=True, help="labelled file the bundles were not validated on (e.g. test.tsv)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--text-pair-column", default="text_pair")
    p.add_argument("--label-column", default="label")
    p.add_argument("--out", default="benchmarks/results/heldout")
    a = p.parse_args(argv)
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} is a file; pass a directory", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401  (the PNG is part of the report: fail before measuring)
    except ImportError:
        print('error: matplotlib is not installed; pip install -e ".[bench]"', file=sys.stderr)
        return 2
    try:
        report = measure([Path(b) for b in a.bundle], Path(a.data),
                         Columns(a.text_column, a.text_pair_column, a.label_column))
    except ImportError as e:  # a bundle whose runtime is not installed
        print(f"error: {e}; install the runtime of that format: pip install -e \".[export]\"", file=sys.stderr)
        return 2
    except (KitError, OSError, KeyError, ValueError) as e:  # ValueError: a malformed metadata.json
        print(f"error: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    staged = out / ".heldout.tmp.png"
    plot(report, staged)  # drawn before anything is written, then every file lands whole
    write_json_atomically(out / "heldout.json", report)
    write_bytes_atomically(out / "heldout.md", to_markdown(report).encode())
    staged.replace(out / "heldout.png")
    print(f"wrote {out}/heldout.json, .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
