"""General distillation is done once and reused, as in the paper: a cache of GD students.

The paper distils BERT-base into TinyBERT on Wikipedia once and starts every task from that
student. Here a finished `distill general` run is copied into the kit's cache under a key made
of everything that determines its weights: the teacher's files, the corpus, the student's shape,
the init, the layer map, the projection and the training settings. A later run with the same key
(the demo, or `distill general` again) takes the cached student instead of training; `distill
task --init auto` starts from the newest cached student of its teacher and shape.

Layout: CACHE/general/<key digest>/model/ (an HF directory) and entry.json (the key, the sha256 of
every model file, steps and minutes of the run that made it). Entries are verified on use.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError
from .fetch import cache_dir
from .files import copy_dir_atomically, publish_dir, sha256_file, write_json_atomically
from .models import resolve_model_dir
from .training import RESUME_FREE_KEYS

ENTRY = "entry.json"
WEIGHT_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")


def cache_root(root: Path | None = None) -> Path:
    """`root`, else $TINYBERT_EDGE_GD_CACHE, else CACHE/general (CACHE being $TINYBERT_EDGE_CACHE or
    ~/.cache/tinybert-edge)."""
    if root is not None:
        return Path(root)
    if os.environ.get("TINYBERT_EDGE_GD_CACHE"):
        return Path(os.environ["TINYBERT_EDGE_GD_CACHE"])
    return cache_dir() / "general"


def model_fingerprint(model_dir: str | Path) -> str:
    """sha256 over a model directory's config and weight files (what defines the teacher)."""
    d = resolve_model_dir(model_dir)
    h = hashlib.sha256()
    for name in WEIGHT_FILES:
        if (d / name).is_file():
            h.update(name.encode() + b"\0" + sha256_file(d / name).encode())
    return h.hexdigest()


def gd_key(teacher_dir: str | Path, corpus: str | Path, student: dict, init: str, distill: dict, train: dict) -> dict:
    """Everything that determines a GD student's weights (settings that only change logging or
    checkpoint frequency are left out)."""
    return {"teacher": model_fingerprint(teacher_dir), "corpus": sha256_file(corpus), "student": student,
            "init": init, "distill": distill,
            "train": {k: v for k, v in train.items() if k not in RESUME_FREE_KEYS}}


def digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class CachedStudent:
    """A verified cache entry."""

    path: Path  # the HF model directory
    key: dict
    info: dict  # steps, minutes, created

    def describe(self) -> str:
        t = self.key["train"]
        return (f"cached general-distillation student {self.path} ({self.key['init']} init, "
                f"{self.info.get('steps', '?')} steps of {t['batch_size']} x {t['max_seq_len']} tokens, "
                f"{self.info.get('minutes', 0):.1f} min when made)")


def _verify(entry_dir: Path) -> CachedStudent:
    hint = f"delete {entry_dir} (it will be made again), or pass --no-gd-cache"
    try:
        meta = json.loads((entry_dir / ENTRY).read_text())
        files, key = meta["files"], meta["key"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ModelError(f"the cached general-distillation student {entry_dir} is unreadable ({e}); {hint}") from None
    model = entry_dir / "model"
    for name, sha in files.items():
        f = model / name
        if not f.is_file():
            raise ModelError(f"the cached general-distillation student {entry_dir} is missing model/{name}; {hint}")
        if sha256_file(f) != sha:
            raise ModelError(f"the cached general-distillation student {entry_dir}: model/{name} is corrupted "
                             f"(sha256 mismatch); {hint}")
    return CachedStudent(model, key, meta.get("info", {}))


def lookup(key: dict, root: Path | None = None) -> CachedStudent | None:
    """The cached student for exactly this key, verified; None when there is none.

    Raises:
        ModelError: the entry exists but is incomplete or corrupted.
    """
    entry = cache_root(root) / digest(key)
    if not entry.exists():
        return None
    return _verify(entry)


def newest_for(teacher_dir: str | Path, student: dict, root: Path | None = None) -> CachedStudent | None:
    """The newest cached student of this teacher and student shape (any init or GD settings).

    Raises:
        ModelError: the newest matching entry is corrupted.
    """
    base = cache_root(root)
    if not base.is_dir():
        return None
    teacher = model_fingerprint(teacher_dir)
    found = []
    for entry in base.iterdir():
        try:
            meta = json.loads((entry / ENTRY).read_text())
        except (OSError, json.JSONDecodeError):
            continue  # an entry being written, or foreign files: never chosen
        k = meta.get("key", {})
        if k.get("teacher") == teacher and k.get("student") == student:
            found.append((meta.get("info", {}).get("created", 0), entry))
    if not found:
        return None
    return _verify(max(found)[1])


def store(model_dir: Path, key: dict, info: dict, root: Path | None = None) -> Path:
    """Copy a finished GD student into the cache (atomically); returns the entry directory."""
    entry = cache_root(root) / digest(key)

    def build(tmp: Path) -> None:
        copy = tmp / "model"
        copy_dir_atomically(model_dir, copy)
        files = {p.name: sha256_file(p) for p in sorted(copy.iterdir()) if p.is_file()}
        write_json_atomically(tmp / ENTRY, {"key": key, "files": files, "info": {**info, "created": time.time()}})

    return publish_dir(build, entry)
