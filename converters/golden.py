"""Golden vectors for the Android app's JVM core (issue #6): what the Python kit says a bundle's
tokenizer and post-processing produce, so the app's tokenizer cannot drift silently.

Two products:

* `write_golden(bundle, out)`: a JSON fixtures file with hard cases (accents, CJK, emoji,
  control characters, very long, empty, whitespace only, punctuation runs, sentence pairs),
  N random unicode strings, each with input ids / attention mask / token type ids padded as the
  bundle's policy pads them; logits of the real runtime for the hard cases with their softmax
  probabilities; and latency lists with the harness's statistics (same math on both sides).
* `char_tables()`: the character classes of HF `tokenizers`' BertNormalizer and
  BertPreTokenizer, read off the installed library by probing every code point. The app core
  ships them (android_demo/core/src/main/resources/.../bert_char_tables.txt) instead of using the
  phone's own Unicode tables: HF's are a mix of Unicode versions (old category tables, a newer
  lowercase), so any JVM's or Android's Character data disagrees on hundreds of code points.
  A test regenerates the file and compares it with the committed one.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
from tokenizers import __version__ as tokenizers_version
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

from tinybert_edge.files import write_bytes_atomically, write_json_atomically

from .bundle import load_bundle
from .runtime import latency_stats, pad_row, tokenize

GOLDEN_SCHEMA = "tinybert-edge/golden"
TABLES_HEADER = "# tinybert-edge bert_char_tables v1"
HARD_CASES = [
    ("plain", "a gripping, beautifully acted film", None),
    ("accents", "Café déjà vu, naïve ÉCOLE, Ñandú, Åström", None),
    ("accents_upper_dotted_i", "İstanbul DİYARBAKIR ǅemal ΣΊΣΥΦΟΣ", None),
    ("cjk", "電影很好看，演員也很棒", None),
    ("cjk_mixed", "这部电影 is 好看 ok", None),
    ("japanese_korean", "映画はとても良かった 영화가 좋았어요", None),
    ("emoji", "great 😀 film 👍🏽👨‍👩‍👧 🇫🇷", None),
    ("control_chars", "tab\there\x07bell\x00nul\u200bzw\u200dzwj\ufeffbom\r\nnewline\x1b[0m", None),
    ("very_long", " ".join(["brilliant"] * 300), None),
    ("very_long_word", "a" * 150 + " ok", None),
    ("empty", "", None),
    ("whitespace_only", " \t\n\u3000\u00a0 ", None),
    ("punctuation_runs", "?!?!...,,,---''\"\"((()))$$$%%%^^^", None),
    ("unknown_chars", "\U0001d11e \u2603 \U00010348 ☃☃", None),
    ("numbers", "10/10 would watch 3.5x again in 2026!!!", None),
    ("pair_short", "a man is eating", "someone eats"),
    ("pair_long_first", " ".join(["good"] * 90), "short one"),
    ("pair_long_second", "short", " ".join(["bad"] * 90)),
    ("pair_both_long", " ".join(["good"] * 70), " ".join(["bad"] * 75)),
    ("pair_equal_long", " ".join(["good"] * 80), " ".join(["bad"] * 80)),
    ("pair_empty_second", "only the first", ""),
]
# blocks the random strings draw from, besides the whole code space: the cases tokenizers get wrong
_RANDOM_POOLS = [
    (0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
    (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x3000, 0x30FF), (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xF900, 0xFAFF), (0xFE00, 0xFE0F), (0xFF00, 0xFFEF), (0x1F300, 0x1FAFF),
    (0x20000, 0x2A6DF), (0x2B800, 0x2B9FF), (0xE000, 0xE0FF), (0x0, 0x1F), (0x7F, 0x9F),
]


def _is_surrogate(cp: int) -> bool:
    return 0xD800 <= cp <= 0xDFFF


def random_texts(n: int, seed: int = 0) -> list[str]:
    """n random strings: words from mixed scripts, emoji, combining marks, controls, any code point."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(0, 12)):
            r = rng.random()
            if r < 0.15:
                cp = rng.randint(0, 0x10FFFF)
            else:
                lo, hi = rng.choice(_RANDOM_POOLS)
                cp = rng.randint(lo, hi)
            if _is_surrogate(cp):
                continue
            parts.append(chr(cp) * rng.choice((1, 1, 1, 2, 5)))
            if rng.random() < 0.35:
                parts.append(rng.choice((" ", "  ", "\t", "\n", "", "-", "'")))
            if rng.random() < 0.2:
                parts.append(rng.choice(("the", "film", "Über", "naïve", "café", "unbelievably", "x" * 120)))
        out.append("".join(parts))
    return out


def write_golden(bundle_path: str | Path, out: str | Path, *, n_random: int = 10_000, seed: int = 0,
                 with_logits: bool = True) -> dict:
    """Write the fixtures file for a bundle; returns a summary.

    Args:
        bundle_path: bundle directory or zip (verified like any bundle).
        out: JSON file to write (atomically).
        n_random: random unicode strings to add (the app's test needs >= 10,000).
        seed: seed of the random strings.
        with_logits: run the hard cases through the bundle's runtime for logits -> probabilities.

    Returns:
        {"path", "cases", "random", "max_seq_len"}.

    Raises:
        converters.bundle.BundleError: the bundle is missing, corrupted or failed.
        ValueError: n_random < 0.
    """
    if n_random < 0:
        raise ValueError("--random must be 0 or more")
    b = load_bundle(bundle_path)
    tok = b.tokenizer()
    max_len, pad_id = b.policy.max_len, b.metadata["tokenizer"]["pad_id"]
    runner = b.runner(threads=1) if with_logits else None

    def case(name, text, pair):
        # an empty pair string encodes as a single text, as transformers does
        ids_, types_ = tokenize(tok, [text], [pair] if pair else None, max_len)[0]
        length = b.policy.pad_length(len(ids_))
        ids, mask, types = pad_row(ids_, types_, length, pad_id)
        c = {"name": name, "text": text, "text_pair": pair, "tokens": tok.convert_ids_to_tokens(ids_),
             "input_ids": ids_, "token_type_ids": types_, "padded_length": length,
             "padded_input_ids": ids[0].tolist(), "attention_mask": mask[0].tolist(),
             "padded_token_type_ids": types[0].tolist()}
        if runner is not None:
            scores = runner.run(runner.signature_for(length), ids, mask, types)
            probs = b.probabilities(scores)
            c.update(logits=[float(x) for x in scores], probabilities=probs.tolist(),
                     top_k=[int(i) for i in np.argsort(-probs, kind="stable")], label=b.labels[int(np.argmax(probs))])
        return c

    cases = [case(name, text, pair) for name, text, pair in HARD_CASES]
    texts = random_texts(n_random, seed)
    rnd = [{"text": t, "input_ids": ids, "token_type_ids": types}
           for t, (ids, types) in zip(texts, tokenize(tok, texts, None, max_len) if texts else [])]
    rng = np.random.default_rng(seed)
    latency = []
    for n in (1, 2, 9, 10, 21, 100, 257):
        ms = (rng.lognormal(1.0, 0.5, n) * 3).round(6).tolist()
        latency.append({"ms": ms, "stats": latency_stats(ms)})
    doc = {"schema": GOLDEN_SCHEMA, "schema_version": 1, "tokenizers_version": tokenizers_version,
           "bundle": {"format": b.format, "artifact": b.metadata["artifact"],
                      "vocab_sha256": b.metadata["files"]["vocab.txt"]["sha256"]},
           "labels": b.labels, "max_seq_len": max_len, "seq_len_policy": b.policy.to_dict(),
           "tokenizer": b.metadata["tokenizer"], "cases": cases, "random": rnd, "random_seed": seed,
           "latency": latency}
    write_json_atomically(Path(out), doc)
    return {"path": str(out), "cases": len(cases), "random": len(rnd), "max_seq_len": max_len}


def _ranges(cps: list[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for cp in cps:
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return [tuple(r) for r in out]


def char_tables() -> str:
    """The character tables of the installed `tokenizers` BertNormalizer/BertPreTokenizer.

    Lines (hex code points):
        R lo-hi     removed by clean_text (controls, format, private use)
        W lo-hi     whitespace (becomes ' ' in clean_text, splits words)
        P lo-hi     punctuation (its own word)
        C lo-hi     CJK ideographs (padded with spaces)
        M lo-hi     deleted by strip_accents (non-spacing marks)
        A cp cp...  strip_accents result of one code point (NFD minus marks), Hangul excluded:
                    the core decomposes Hangul syllables algorithmically
        L cp cp...  lowercase result of one code point
    """
    clean = BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    cjk = BertNormalizer(clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False)
    acc = BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    low = BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=True)
    pre = BertPreTokenizer()
    cls: dict[str, list[int]] = {k: [] for k in "RWPCM"}
    amap, lmap = [], []
    for cp in range(0x110000):
        if _is_surrogate(cp):
            continue
        c = chr(cp)
        s = clean.normalize_str("a" + c + "a")
        if s == "aa":
            cls["R"].append(cp)
        elif s == "a a" or c == " ":
            cls["W"].append(cp)
        elif [t for t, _ in pre.pre_tokenize_str("a" + c + "a")] == ["a", c, "a"]:
            cls["P"].append(cp)
        if cjk.normalize_str(c) != c:
            cls["C"].append(cp)
        a = acc.normalize_str(c)
        if a == "":
            cls["M"].append(cp)
        elif a != c and not 0xAC00 <= cp <= 0xD7A3:
            amap.append((cp, a))
        lo = low.normalize_str(c)
        if lo != c:
            lmap.append((cp, lo))
    lines = [TABLES_HEADER, f"# read off tokenizers {tokenizers_version} by converters.golden.char_tables(); regenerate with",
             "#   python -m tinybert_edge.converters.golden --tables PATH"]
    for k in "RWPCM":
        lines += [f"{k} {lo:x}-{hi:x}" for lo, hi in _ranges(cls[k])]
    lines += [f"A {cp:x} " + " ".join(f"{ord(x):x}" for x in s) for cp, s in amap]
    lines += [f"L {cp:x} " + " ".join(f"{ord(x):x}" for x in s) for cp, s in lmap]
    return "\n".join(lines) + "\n"


TABLES_PATH = Path(__file__).resolve().parent.parent / "android_demo" / "core" / "src" / "main" / "resources" / \
    "org" / "tinybertedge" / "core" / "bert_char_tables.txt"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Regenerate the app core's BERT character tables.")
    p.add_argument("--tables", default=str(TABLES_PATH), help="where to write them")
    a = p.parse_args(argv)
    write_bytes_atomically(Path(a.tables), char_tables().encode())
    print(a.tables)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
