"""Files written so that a crash leaves the old version or the new one, never a half-written one.

One argument order everywhere: the destination first, then what goes into it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def publish_dir(build, out_dir: str | Path) -> Path:
    """Build a directory with `build(tmp)` under a temporary name beside `out_dir`, then swap it in.

    A crash leaves either the old directory or the new one, never a half-written one.

    Returns:
        The final directory.
    """
    out = Path(out_dir)
    # the parents this call creates, deepest first: a failed build removes them again (if still
    # empty), so a bad input leaves nothing behind, not even an empty --out
    created = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp.chmod(0o755)
        build(tmp)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in created:
            try:
                p.rmdir()
            except OSError:  # not empty (another bundle of the same call landed there) or gone
                break
        raise
    return out


def copy_dir_atomically(src: str | Path, dst: str | Path) -> Path:
    """Copy a directory tree to `dst`, replacing it atomically."""
    return publish_dir(lambda tmp: shutil.copytree(src, tmp, dirs_exist_ok=True), dst)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    """Write bytes to a temporary file beside `path`, fsync, then rename: never a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomically(path: str | Path, obj) -> None:
    """Write JSON to a temporary file and rename it over `path`."""
    write_bytes_atomically(path, (json.dumps(obj, indent=2) + "\n").encode())
