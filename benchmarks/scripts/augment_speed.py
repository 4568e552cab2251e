"""Augmentation speed: the batched implementation vs a per-word, batch-1 loop (issue #5).

    python -m benchmarks.augment_speed [--sentences 200] [--out benchmarks/results/augment]

Both run Algorithm 1 on the same Rotten Tomatoes training sentences with the same settings,
the same tiny masked LM (built here: BertConfig with BERT's 30,522-token vocabulary, 2 layers,
hidden 128, random weights: speed only) and the same word-vector source (the teacher's input
embeddings). The baseline is the public TinyBERT code's loop shape, kept here as the reference:
one MLM forward per single-piece word at batch 1, autograd left on, no cache. The batched
implementation (tinybert_edge.augment) sends every masked position of a chunk through the MLM
in batches of 64 under inference_mode and caches word-vector neighbours. The baseline does not
copy the public code's answer leak: its input is the masked sentence alone, like ours.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def per_word_loop(rows, mlm, vectors, settings) -> list[list[str]]:
    """The baseline: Algorithm 1 with one batch-1 MLM forward per single-piece word."""
    from tinybert_edge.augment import draw, word_spans, eligible, split_words

    tok, model = mlm.tok, mlm.model
    out = []
    for index, ex in rows:
        words = split_words(ex.text)
        cands = {}
        for i, w in enumerate(words):
            if not eligible(w):
                continue
            if mlm.is_single_piece(w):
                ids = torch.tensor([mlm._masked_input(words, i)])
                logits = model(input_ids=ids).logits[0]  # autograd on, as in the public code
                at = int((ids[0] == tok.mask_token_id).nonzero()[0, 0])
                scores = logits[at].detach().float()
                scores[~mlm.allowed[: scores.shape[0]]] = float("-inf")
                top = tok.convert_ids_to_tokens(torch.topk(scores, settings.k + 1).indices.tolist())
                cands[i] = [t for t in top if t != w.lower()][: settings.k]
            else:
                vectors._cache.clear()  # no cache in the baseline
                cands[i] = vectors.neighbours(w, settings.k)
        rng = np.random.default_rng([settings.seed, index])
        spans = word_spans(ex.text)
        seen, variants = {ex.text}, []
        for _ in range(settings.n):
            t = draw(ex.text, spans, cands, settings.p, rng)
            if t not in seen:
                seen.add(t)
                variants.append(t)
        out.append([ex.text] + variants)
    return out


def main(argv=None) -> int:
    from transformers import BertConfig, BertForMaskedLM

    from tinybert_edge.augment import AugmentSettings, Augmenter, MaskedLMCandidates, teacher_embedding_neighbours
    from tinybert_edge.data import iter_task_examples
    from tinybert_edge.fetch import fetch_default
    from tinybert_edge.files import write_bytes_atomically, write_json_atomically
    from tinybert_edge.models import load_tokenizer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sentences", type=int, default=200)
    p.add_argument("--out", default="benchmarks/results/augment")
    a = p.parse_args(argv)
    paths = fetch_default()
    rows = []
    for i, ex in enumerate(iter_task_examples(paths.train)):
        if i >= a.sentences:
            break
        rows.append((i, ex))
    settings = AugmentSettings(n=20, p=0.4, k=15, seed=42)
    with tempfile.TemporaryDirectory() as tmp:
        tok = load_tokenizer(paths.teacher)
        torch.manual_seed(0)
        BertForMaskedLM(BertConfig(vocab_size=len(tok.get_vocab()), hidden_size=128, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=512, max_position_embeddings=128)
                        ).save_pretrained(tmp)
        tok.save_pretrained(tmp)
        vectors = teacher_embedding_neighbours(paths.teacher)
        mlm = MaskedLMCandidates(tmp, batch_size=64)
        mlm.model.eval()
        per_word_loop(rows[:5], mlm, vectors, settings)  # warm-up of both paths
        Augmenter(settings, vectors, mlm).augment_rows(rows[:5])
        t = time.perf_counter()
        base = per_word_loop(rows, mlm, vectors, settings)
        base_s = time.perf_counter() - t
        vectors._cache.clear()
        aug = Augmenter(settings, vectors, mlm)
        t = time.perf_counter()
        ours = aug.augment_rows(rows)
        ours_s = time.perf_counter() - t
    same = np.mean([[g[0] for g in o] == b for o, b in zip(ours, base)])
    report = {"schema": "tinybert-edge/augment-speed", "schema_version": 1,
              "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "sentences": len(rows), "settings": settings.__dict__, "torch_threads": torch.get_num_threads(),
              "mlm": "BertForMaskedLM 2 layers, hidden 128, 30,522 tokens, random weights (speed only)",
              "mlm_words": aug.stats["mlm_words"], "vector_words": aug.stats["vector_words"],
              "baseline_s": base_s, "batched_s": ours_s, "baseline_sentences_per_s": len(rows) / base_s,
              "batched_sentences_per_s": len(rows) / ours_s, "speedup": base_s / ours_s,
              "same_output_fraction": float(same)}
    from tinybert_edge.benchmarks.harness import machine_info

    report["machine"] = machine_info()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(out / "augment_speed.json", report)
    md = (f"Augmentation speed {report['date']} on {report['machine']['cpu']} ({report['torch_threads']} torch threads), "
          f"{len(rows)} Rotten Tomatoes sentences, N={settings.n} p={settings.p} K={settings.k}, tiny random MLM "
          f"(speed only).\n\n| implementation | seconds | sentences/s |\n|---|---:|---:|\n"
          f"| per-word batch-1 loop (baseline) | {base_s:.2f} | {report['baseline_sentences_per_s']:.1f} |\n"
          f"| batched (tinybert_edge.augment) | {ours_s:.2f} | {report['batched_sentences_per_s']:.1f} |\n\n"
          f"Speedup {report['speedup']:.1f}x; {report['mlm_words']} MLM words and {report['vector_words']} "
          f"word-vector words; same variants for {100 * same:.1f} % of sentences.\n")
    write_bytes_atomically(out / "augment_speed.md", md.encode())
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
