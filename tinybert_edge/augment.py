"""TinyBERT data augmentation (Algorithm 1 of the paper), faithful, batched, deterministic and
resumable.

For every sentence, N_a variants are drawn; in each, every eligible word is replaced with
probability p_t by one of its K candidates:

* eligible: purely alphabetic and not a stop word (others are copied as they are);
* a word that is one WordPiece gets candidates from a masked LM: the word is replaced by
  [MASK] and the MLM sees the rest of the sentence only (the public code appended the original
  sentence to the masked one, showing the model the answer);
* a word of several pieces, or every word when no MLM is given, gets its K nearest neighbours
  in a word-vector space: a GloVe/word2vec text file, or by default the teacher's own input
  embeddings (mean of a word's WordPiece vectors, cosine against whole-word vocabulary tokens).

Variants equal to the original or to each other are dropped; the original is kept first; labels
are carried over; in pair tasks each side is augmented on its own words (the public code mixed
sentence B into A's positions).

Speed: the masked positions of a whole chunk of sentences go through the MLM in batched forwards
under inference_mode; word-vector neighbours are computed once per distinct word and cached.
Determinism: every sentence draws from its own generator, seeded by (seed, row index), and
candidate lists do not depend on the batch a sentence was in (word-vector neighbours are ranked
in float64 with an index tie-break; MLM rows are independent of their batch mates, as the
padding is masked), so the output bytes depend on the seed only, not on --batch-size,
--chunk-rows or --workers; the tests check byte equality across all three. A BLAS that picked
a different summation order per batch shape could still flip an exact MLM near-tie.
Streaming: rows are read one at a time and written per chunk to OUT.partial with a progress file;
an interrupted run resumes after the last complete chunk (no lost or duplicated rows); the
finished file is renamed into place with a sidecar OUT.json holding the source and parameters.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing as mp
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from transformers import AutoModel, AutoModelForMaskedLM

from .errors import ConfigError, DataError, ModelError
from .files import sha256_file, write_json_atomically
from .models import load_tokenizer, resolve_model_dir
from .taskfiles import Columns, Example, iter_task_examples

# NLTK's English stop words (the list TinyBERT's augmentation skips), lowercase
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself it
its itself they them their theirs themselves what which who whom this that these those am is are was were be been
being have has had having do does did doing a an the and but if or because as until while of at by for with about
against between into through during before after above below to from up down in out on off over under again further
then once here there when where why how all any both each few more most other some such no nor not only own same so
than too very s t can will just don should now d ll m o re ve y ain aren couldn didn doesn hadn hasn haven isn ma
mightn mustn needn shan shouldn wasn weren won wouldn
""".split())
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
SIDECAR_SCHEMA = "tinybert-edge/augment"


@dataclass(frozen=True)
class AugmentSettings:
    """Algorithm 1's parameters.

    Attributes:
        n: variants drawn per sentence (N_a), >= 1.
        p: replacement probability per eligible word (p_t), in [0, 1].
        k: candidates per word (K), >= 1.
        seed: random seed.
    """

    n: int = 20
    p: float = 0.4
    k: int = 15
    seed: int = 42

    def check(self) -> None:
        """Raises ConfigError for a value outside its range."""
        if self.n < 1:
            raise ConfigError(f"--n {self.n}: draw at least 1 variant per sentence (the paper uses 20)")
        if not 0.0 <= self.p <= 1.0:
            raise ConfigError(f"--p {self.p}: the replacement probability must be in [0, 1] (the paper uses 0.4)")
        if self.k < 1:
            raise ConfigError(f"--k {self.k}: keep at least 1 candidate per word (the paper uses 15)")


def split_words(text: str) -> list[str]:
    """Words and punctuation marks, as BERT's basic tokenizer splits them (case kept)."""
    return _WORD.findall(text)


def word_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _WORD.finditer(text)]


def draw(text: str, spans: list[tuple[int, int]], cands: dict[int, list[str]], p: float,
         rng: np.random.Generator) -> str:
    """One variant: each eligible word (a key of cands) replaced with probability p by a
    uniformly drawn candidate; everything else, spacing included, kept as it was."""
    out, last = [], 0
    for i in sorted(cands):
        # one draw per eligible word, with or without candidates, so draw sequences are fixed
        if rng.random() < p and cands[i]:
            pick = cands[i][int(rng.integers(len(cands[i])))]
            start, end = spans[i]
            if text[start].isupper():
                pick = pick[:1].upper() + pick[1:]  # "Great" stays capitalised
            out += [text[last:start], pick]
            last = end
    return "".join(out) + text[last:]


def eligible(word: str) -> bool:
    """Algorithm 1 replaces purely alphabetic words that are not stop words."""
    return word.isalpha() and word.lower() not in STOP_WORDS


# ---------------------------------------------------------------- word-vector candidates


class VectorNeighbours:
    """K nearest words by cosine in a word-vector space, computed once per word and cached.

    Args:
        words: vocabulary of candidate words (alphabetic, lowercase).
        vectors: (len(words), d) float array.
        embed: callable(word) -> vector or None (a word outside the space has no candidates).
        source: description written into the sidecar.
    """

    def __init__(self, words: list[str], vectors: np.ndarray, embed, source: str):
        v = np.asarray(vectors, dtype=np.float64)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        self.words = words
        self.unit = v / np.where(norms == 0, 1.0, norms)
        self.embed = embed
        self.source = source
        self._cache: dict[tuple[str, int], list[str]] = {}

    def neighbours(self, word: str, k: int) -> list[str]:
        key = (word.lower(), k)
        if key not in self._cache:
            vec = self.embed(key[0])
            if vec is None:
                self._cache[key] = []
            else:
                u = np.asarray(vec, dtype=np.float64)
                u = u / (np.linalg.norm(u) or 1.0)
                # one matrix-vector product per distinct word, in float64 with a stable
                # tie-break on the vocabulary index: the same candidates in any batch
                sims = np.round(self.unit @ u, 9)
                m = min(k + 1, len(sims))
                # the top m by partition, widened to every tie at the cut, then fully ordered
                cut = np.partition(sims, len(sims) - m)[len(sims) - m]
                top = np.nonzero(sims >= cut)[0]
                order = top[np.lexsort((top, -sims[top]))]
                out = []
                for i in order:
                    if self.words[i] != key[0]:
                        out.append(self.words[i])
                    if len(out) == k:
                        break
                self._cache[key] = out
        return self._cache[key]


def teacher_embedding_neighbours(model_dir: str | Path) -> VectorNeighbours:
    """The offline default: nearest neighbours in the teacher's input-embedding space.

    Candidates are the whole-word, alphabetic vocabulary tokens; a word is embedded as the mean
    of its WordPiece embeddings (so multi-piece words get neighbours too).
    """
    d = resolve_model_dir(model_dir)
    tok = load_tokenizer(d)
    emb = AutoModel.from_pretrained(d).get_input_embeddings().weight.detach().float().numpy()
    vocab = tok.get_vocab()
    words = sorted((w for w in vocab if w.isalpha() and w.islower() and w not in STOP_WORDS), key=vocab.get)
    ids = [vocab[w] for w in words]

    def embed(word: str):
        pieces = tok(word, add_special_tokens=False)["input_ids"]
        if not pieces or tok.unk_token_id in pieces:
            return None
        return emb[pieces].mean(axis=0)

    return VectorNeighbours(words, emb[ids], embed, f"teacher input embeddings ({d})")


def load_word_vectors(path: str | Path, max_words: int | None = None) -> tuple[VectorNeighbours, dict]:
    """GloVe / word2vec text vectors ("word v1 v2 ..." per line; a word2vec "count dim" header is
    skipped). Bad lines (wrong dimension, non-numbers) are skipped and counted.

    Returns:
        (neighbours, {"lines", "used", "skipped", "dim"}).

    Raises:
        DataError: the file is missing or has no usable line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"vectors file {path} does not exist; give a GloVe or word2vec text file")
    words, rows, skipped, dim, lines = [], [], 0, None, 0
    index: dict[str, int] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            parts = line.rstrip("\n").split(" ")
            if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            lines += 1
            try:
                vec = np.asarray([float(x) for x in parts[1:] if x != ""], dtype=np.float32)
            except ValueError:
                skipped += 1
                continue
            if dim is None and len(vec) > 0:
                dim = len(vec)
            if len(vec) == 0 or len(vec) != dim or not parts[0]:
                skipped += 1
                continue
            w = parts[0].lower()
            if w in index:
                continue
            index[w] = len(words)
            words.append(w)
            rows.append(vec)
            if max_words and len(words) >= max_words:
                break
    if not words:
        raise DataError(f"{path}: none of its {lines} lines is a usable 'word v1 v2 ...' vector ({skipped} skipped); "
                        "give a GloVe or word2vec text file")
    mat = np.stack(rows)
    cand = [i for i, w in enumerate(words) if w.isalpha() and w not in STOP_WORDS]
    nb = VectorNeighbours([words[i] for i in cand], mat[cand],
                          lambda w: mat[index[w]] if w in index else None, f"word vectors {path}")
    return nb, {"lines": lines, "used": len(words), "skipped": skipped, "dim": dim}


# ---------------------------------------------------------------- masked-LM candidates


class MaskedLMCandidates:
    """Top-K masked-LM predictions for single-piece words, many sentences per forward.

    Args:
        model_dir: an HF checkpoint with a masked-LM head.
        batch_size: masked inputs per forward.
        max_len: tokens per masked input (longer sentences are cut around the masked word).

    Raises:
        ModelError: the checkpoint has no MLM head (its weights would be random).
    """

    def __init__(self, model_dir: str | Path, batch_size: int = 64, max_len: int = 128):
        d = resolve_model_dir(model_dir)
        self.tok = load_tokenizer(d)
        try:
            model, info = AutoModelForMaskedLM.from_pretrained(d, output_loading_info=True)
        except (ValueError, OSError) as e:
            raise ModelError(f"{d} cannot be loaded as a masked LM ({e}); give a checkpoint with an MLM head, or use "
                             "--vectors / the default teacher-embedding source") from None
        head_missing = [k for k in info.get("missing_keys", []) if "cls." in k or "lm_head" in k or "predictions" in k]
        if head_missing:
            raise ModelError(f"{d} has no masked-LM head (missing {head_missing[:2]}); its predictions would be random. "
                             "Give a checkpoint trained with MLM (e.g. bert-base-uncased), or use --vectors / the "
                             "default teacher-embedding source")
        self.model = model.eval()
        self.batch_size = batch_size
        self.max_len = max_len
        self.source = f"masked LM {d}"
        vocab = self.tok.get_vocab()
        # candidates must be whole words: no special tokens, no ## continuations, alphabetic
        allowed = np.zeros(len(vocab), dtype=bool)
        for w, i in vocab.items():
            if i < len(allowed) and w.isalpha():
                allowed[i] = True
        self.allowed = torch.from_numpy(allowed)

    def is_single_piece(self, word: str) -> bool:
        ids = self.tok(word, add_special_tokens=False)["input_ids"]
        return len(ids) == 1 and ids[0] != self.tok.unk_token_id

    def _pieces(self, words: list[str]) -> list[list[int]]:
        """WordPiece ids of each word (the regex splits where BERT's pre-tokenizer does, so the
        concatenation equals the sentence's own ids)."""
        return self.tok(list(words), add_special_tokens=False)["input_ids"] if words else []

    def _masked_input(self, words: list[str], pos: int, pieces: list[list[int]] | None = None) -> list[int]:
        """[CLS] left [MASK] right [SEP]: the original word is not shown anywhere."""
        pieces = pieces if pieces is not None else self._pieces(words)
        left = [t for p in pieces[:pos] for t in p]
        right = [t for p in pieces[pos + 1:] for t in p]
        room = self.max_len - 3
        keep_left = min(len(left), max(room // 2, room - len(right)))
        left = left[len(left) - keep_left:]
        right = right[: room - len(left)]
        return [self.tok.cls_token_id] + left + [self.tok.mask_token_id] + right + [self.tok.sep_token_id]

    def candidates(self, queries: list[tuple[list[str], int]], k: int) -> list[list[str]]:
        """Top-k whole-word predictions for each (sentence words, position) query."""
        pieces: dict[int, list[list[int]]] = {}  # one tokenization per sentence, not per word
        inputs = []
        for w, p in queries:
            if id(w) not in pieces:
                pieces[id(w)] = self._pieces(w)
            inputs.append(self._masked_input(w, p, pieces[id(w)]))
        out: list[list[str]] = [[] for _ in queries]
        # sorted by length so each forward pads little; results go back by index, so the
        # order and the batch size change nothing but speed
        order = sorted(range(len(inputs)), key=lambda i: (len(inputs[i]), i))
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                idx = order[s:s + self.batch_size]
                width = max(len(inputs[i]) for i in idx)
                ids = torch.full((len(idx), width), self.tok.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, i in enumerate(idx):
                    ids[r, :len(inputs[i])] = torch.tensor(inputs[i])
                    mask[r, :len(inputs[i])] = 1
                at = (ids == self.tok.mask_token_id).nonzero()
                if hasattr(self.model, "bert") and hasattr(self.model, "cls"):
                    # the vocabulary projection only where the masks are, not at every position
                    hidden = self.model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
                    scores = self.model.cls(hidden[at[:, 0], at[:, 1]]).float()
                else:
                    logits = self.model(input_ids=ids, attention_mask=mask).logits
                    scores = logits[at[:, 0], at[:, 1]].float()
                scores[:, ~self.allowed[: scores.shape[1]]] = float("-inf")
                top = torch.topk(scores, k + 1, dim=-1).indices.tolist()
                for r, i in enumerate(idx):
                    original = queries[i][0][queries[i][1]].lower()
                    words = [w for w in self.tok.convert_ids_to_tokens(top[r]) if w != original]
                    out[i] = words[:k]
        return out


# ---------------------------------------------------------------- Algorithm 1


@dataclass
class Augmenter:
    """Candidate sources plus settings; `augment_rows` runs Algorithm 1 on a chunk."""

    settings: AugmentSettings
    vectors: VectorNeighbours
    mlm: MaskedLMCandidates | None = None
    stats: dict = field(default_factory=lambda: {"mlm_words": 0, "vector_words": 0})

    def _candidates(self, sentences: list[list[str]]) -> list[dict[int, list[str]]]:
        """Per sentence: {word position: candidates} for every eligible word."""
        k = self.settings.k
        per = [dict() for _ in sentences]
        mlm_q, mlm_at = [], []
        for s, words in enumerate(sentences):
            for i, w in enumerate(words):
                if not eligible(w):
                    continue
                if self.mlm is not None and self.mlm.is_single_piece(w):
                    mlm_q.append((words, i))
                    mlm_at.append((s, i))
                else:
                    per[s][i] = self.vectors.neighbours(w, k)
                    self.stats["vector_words"] += 1
        if mlm_q:
            for (s, i), cands in zip(mlm_at, self.mlm.candidates(mlm_q, k)):
                per[s][i] = cands
            self.stats["mlm_words"] += len(mlm_q)
        return per

    def _variants(self, text: str, cands: dict[int, list[str]], rng: np.random.Generator) -> list[str]:
        spans = word_spans(text)
        seen, out = {text}, []
        for _ in range(self.settings.n):
            text_new = draw(text, spans, cands, self.settings.p, rng)
            if text_new not in seen:
                seen.add(text_new)
                out.append(text_new)
        return out

    def augment_rows(self, rows: list[tuple[int, Example]]) -> list[list[tuple[str, str | None, str | None]]]:
        """Originals and variants of (row index, example) pairs: one list of (text, pair, label) each."""
        a = [split_words(ex.text) for _, ex in rows]
        b = [split_words(ex.text_pair) if ex.text_pair is not None else None for _, ex in rows]
        ca = self._candidates(a)
        cb = self._candidates([w for w in b if w is not None])
        cb_iter = iter(cb)
        out = []
        for (index, ex), wa, wb, cand_a in zip(rows, a, b, ca):
            rng = np.random.default_rng([self.settings.seed, index])
            va = self._variants(ex.text, cand_a, rng)
            group = [(ex.text, ex.text_pair, ex.label)]
            if wb is None:
                group += [(t, None, ex.label) for t in va]
            else:
                vb = self._variants(ex.text_pair, next(cb_iter), rng)
                # pairs: side A's variants with B unchanged, then B's with A unchanged, each side on its own words
                group += [(t, ex.text_pair, ex.label) for t in va] + [(ex.text, t, ex.label) for t in vb]
            out.append(group)
        return out


_WORKER: Augmenter | None = None  # the forked workers' copy (fork shares the loaded models)


def _worker_init() -> None:
    torch.set_num_threads(1)  # one thread per worker: the workers are the parallelism


def _worker_augment(rows):
    before = dict(_WORKER.stats)
    groups = _WORKER.augment_rows(rows)
    return groups, {k: _WORKER.stats[k] - before[k] for k in before}


class _Shards:
    """Augments a chunk in `workers` forked processes, contiguous slices, results in row order.
    Every sentence has its own generator and candidates do not depend on the batch, so the
    output is the same bytes as with one process."""

    def __init__(self, augmenter: Augmenter, workers: int):
        global _WORKER
        self.augmenter, self.workers, self.pool = augmenter, workers, None
        if workers > 1:
            _WORKER = augmenter
            self.pool = mp.get_context("fork").Pool(workers, initializer=_worker_init)

    def augment_rows(self, rows):
        if self.pool is None or len(rows) < 2:
            return self.augmenter.augment_rows(rows)
        step = -(-len(rows) // self.workers)
        out = []
        for groups, delta in self.pool.map(_worker_augment, [rows[i:i + step] for i in range(0, len(rows), step)]):
            out += groups
            for k, v in delta.items():
                self.augmenter.stats[k] += v
        return out

    def close(self):
        if self.pool is not None:
            self.pool.close()
            self.pool.join()


def _tsv_line(cells: Iterable[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n").writerow(
        [c.replace("\t", " ").replace("\n", " ") for c in cells])
    return buf.getvalue()


def augment_file(input_path: str | Path, out_path: str | Path, augmenter: Augmenter, *, columns: Columns = Columns(),
                 chunk_rows: int = 256, resume: bool = False, overwrite: bool = False, progress=None,
                 stop_after_chunks: int | None = None, workers: int = 1) -> dict:
    """Augment a labelled task file into OUT (TSV: text, [text_pair,] label), streaming.

    Args:
        input_path: .tsv/.csv/.jsonl task file.
        out_path: output .tsv; OUT.json gets the sidecar.
        augmenter: sources and settings.
        columns: input column names.
        chunk_rows: rows per chunk (the unit of batching and of resuming).
        resume: continue an interrupted run of the same input and settings.
        overwrite: replace an existing OUT.
        progress: called with rows done after each chunk.
        stop_after_chunks: stop early (tests simulate an interruption with it).
        workers: processes per chunk (forked; same output as 1).

    Returns:
        The sidecar dict.

    Raises:
        DataError: empty input, rows without text, OUT exists, or a resume that does not match.
    """
    if workers < 1:
        raise ConfigError(f"--workers {workers} must be at least 1")
    input_path, out_path = Path(input_path), Path(out_path)
    partial, state_path = out_path.with_name(out_path.name + ".partial"), out_path.with_name(out_path.name + ".progress")
    if out_path.exists() and not overwrite:
        raise DataError(f"{out_path} exists; pass --overwrite to replace it")
    settings = asdict(augmenter.settings)
    ident = {"input_sha256": sha256_file(input_path) if input_path.is_file() else None, "settings": settings,
             "source": augmenter.vectors.source if augmenter.mlm is None else
             f"{augmenter.mlm.source} + {augmenter.vectors.source}", "chunk_rows": chunk_rows}
    state = {"ident": ident, "rows_done": 0, "output_rows": 0, "bytes": 0}
    if resume and state_path.is_file() and partial.is_file():
        state = json.loads(state_path.read_text())
        if state["ident"] != ident:
            raise DataError(f"{partial} was made from another input or other settings; drop --resume to start again")
        with open(partial, "r+b") as f:
            f.truncate(state["bytes"])  # a chunk cut off mid-write is dropped and redone
    elif resume:
        raise DataError(f"nothing to resume: {partial} or {state_path} is missing; run without --resume")
    examples = iter_task_examples(input_path, columns)
    first = next(examples)  # raises DataError on an empty file or a row without text
    out_path.parent.mkdir(parents=True, exist_ok=True)
    has_pair = first.text_pair is not None or columns.text_pair in _header(input_path)
    shards = _Shards(augmenter, workers)
    try:
        interrupted = _stream(partial, state, state_path, has_pair, first, examples, shards, chunk_rows, progress,
                              stop_after_chunks)
    finally:
        shards.close()
    if interrupted:
        return {"interrupted": True, "rows_done": state["rows_done"]}
    sidecar = {"schema": SIDECAR_SCHEMA, "schema_version": 1, "input": str(input_path), **ident,
               "rows": state["rows_done"], "output_rows": state["output_rows"],
               "stop_words": "NLTK English", "algorithm": "TinyBERT Algorithm 1 (masked word hidden from the MLM)"}
    os.replace(partial, out_path)
    state_path.unlink(missing_ok=True)
    write_json_atomically(out_path.with_name(out_path.name + ".json"), sidecar)
    return sidecar


def _stream(partial, state, state_path, has_pair, first, examples, augmenter, chunk_rows, progress,
            stop_after_chunks) -> bool:
    """Write the chunks after row state["rows_done"], updating `state`; True when stopped early."""
    chunks = 0
    with open(partial, "ab" if state["rows_done"] else "wb") as f:
        if not state["rows_done"]:
            header = ["text"] + (["text_pair"] if has_pair else []) + ["label"]
            f.write(_tsv_line(header).encode())

        def rows():
            yield 0, first
            yield from enumerate(examples, start=1)

        buf: list[tuple[int, Example]] = []
        for i, ex in rows():
            if i < state["rows_done"]:
                continue
            buf.append((i, ex))
            if len(buf) == chunk_rows:
                _write_chunk(f, buf, augmenter, has_pair, state, state_path)
                buf, chunks = [], chunks + 1
                if progress:
                    progress(state["rows_done"])
                if stop_after_chunks is not None and chunks >= stop_after_chunks:
                    return True
        if buf:
            _write_chunk(f, buf, augmenter, has_pair, state, state_path)
            if progress:
                progress(state["rows_done"])
    return False


def _header(path: Path) -> list[str]:
    if path.suffix.lower() == ".jsonl":
        return []
    with open(path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not part of the first name
        return [h.strip() for h in f.readline().rstrip("\n").split("\t" if path.suffix.lower() == ".tsv" else ",")]


def _write_chunk(f, buf, augmenter, has_pair: bool, state: dict, state_path: Path) -> None:
    """Augment and append one chunk, make it durable, then record how far the output goes."""
    lines = []
    for group in augmenter.augment_rows(buf):
        for text, pair, label in group:
            lines.append(_tsv_line([text] + ([pair or ""] if has_pair else []) + [label or ""]))
    f.write("".join(lines).encode())
    f.flush()
    os.fsync(f.fileno())
    state.update(rows_done=buf[-1][0] + 1, output_rows=state["output_rows"] + len(lines), bytes=f.tell())
    write_json_atomically(state_path, state)
