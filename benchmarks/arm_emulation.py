"""Run shipped bundles on an emulated aarch64 Linux and check their outputs against this host's.

    python -m tinybert_edge.benchmarks.arm_emulation [--bundle DIR ...] [--data dev.tsv] [--max-examples 32]
                                       [--executorch] [--out benchmarks/results/arm_emulation]

What it does, all offline except Debian's and PyPI's registries:
1. an aarch64 Debian bookworm userland (python3.11, glibc 2.36 >= the 2.34 ai-edge-litert needs),
   extracted with `mmdebstrap --variant=extract` (or `debootstrap --foreign`) into the cache;
2. the aarch64 cp311 wheels of the runtimes, installed by the host's pip with `--target` and
   explicit aarch64 platform tags, pinned to the versions installed on this host;
3. the kit's runtime side (this installed package's files, pure Python) and
   `tinybert_edge.benchmarks.arm_runner` (numpy + tokenizers + jsonschema + the runtime, no torch
   for .tflite) run by the aarch64 python3.11 under `qemu-aarch64` with QEMU_CPU=cortex-a72, on
   inputs tokenized here;
4. its logits compared with the same bundle's logits on this host: same label on every input,
   max |difference| within --atol.

LiteRT bundles are checked by default. ExecuTorch's Python runtime links libtorch, and PyPI's
aarch64 torch is a CUDA build whose CUDA libraries must be present for `import torch`
(about 4.6 GB): `--executorch` installs them and checks .pte bundles too.

Emulated timings are recorded only as the cost of the check, labelled "emulated", and never
reported as ARM speed. On a real board run arm_runner (or `tinybert-edge bench`) natively.

Exit status: 0 every check passed, 2 bad input or missing tools, 3 a check failed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata as _md
from pathlib import Path

import numpy as np

import tinybert_edge
from tinybert_edge import benchmarks as kit_benchmarks
from tinybert_edge import converters as kit_converters
from tinybert_edge.converters.bundle import BundleError, load_bundle
from tinybert_edge.converters.runtime import tokenize
from tinybert_edge.fetch import cache_dir
from tinybert_edge.files import write_bytes_atomically, write_json_atomically
from tinybert_edge.taskfiles import iter_task_examples

from .harness import machine_info

SUITE = "bookworm"
QEMU_CPU = "cortex-a72"
AARCH64_TAGS = [f"manylinux_2_{i}_aarch64" for i in range(17, 37)] + ["manylinux2014_aarch64", "linux_aarch64"]
# what `import ai_edge_litert.interpreter` pulls in (its wheel's Requires-Dist)
LITERT_PACKAGES = ("ai-edge-litert", "numpy", "ml_dtypes", "flatbuffers", "protobuf", "backports.strenum", "tqdm",
                   "typing-extensions")
# what the kit's runtime side imports besides numpy: the tokenizer, and jsonschema (with its
# dependencies) for the bundle metadata
KIT_RUNTIME_PACKAGES = ("tokenizers", "jsonschema")
# `import torch` (with its CUDA libraries, which pip resolves as torch's dependencies) + executorch
EXECUTORCH_PACKAGES = ("torch",)
EXECUTORCH_NO_DEPS = ("executorch", "ruamel.yaml", "tabulate")  # what its pybindings import
DEFAULT_TEXTS = ["a gripping, beautifully acted film", "dull, overlong and badly written", "Café déjà vu!",
                 "電影很好看", "great 😀 film", "?!?!...,,,", "it is neither good nor bad, just there",
                 " ".join(["brilliant"] * 200)]


class ArmCheckError(RuntimeError):
    """A tool is missing or a step failed; the message says what to install or fix."""


def _pinned(pkg: str) -> str:
    """pkg==<this host's version> (same runtime on both sides), or pkg when it is not installed here."""
    try:
        return f"{pkg}=={_md.version(pkg).split('+')[0]}"  # 2.13.0+cpu: PyPI's aarch64 wheel has no +cpu
    except _md.PackageNotFoundError:
        return pkg


def require_tools() -> dict[str, str]:
    """Paths of qemu-aarch64 and of an aarch64 userland builder.

    Raises:
        ArmCheckError: a tool is missing (names the Debian packages to install).
    """
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    builder = shutil.which("mmdebstrap") or shutil.which("debootstrap")
    if not qemu or not builder:
        missing = [n for n, p in (("qemu-aarch64", qemu), ("mmdebstrap or debootstrap", builder)) if not p]
        raise ArmCheckError(f"{' and '.join(missing)} not found; install them with "
                            "`apt-get install qemu-user mmdebstrap`")
    return {"qemu": qemu, "builder": builder}


def _run(cmd: list[str], what: str, timeout: float, env=None, cwd=None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise ArmCheckError(f"{what} took longer than {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise ArmCheckError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc


# A Cortex-A72's /proc/cpuinfo, as a real one prints it (one core: the check runs one thread).
CPUINFO_A72 = """processor\t: 0
BogoMIPS\t: 100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

"""


def describe_cpu(root: Path) -> None:
    """Give the guest an aarch64 /proc/cpuinfo and sysfs cpu tree inside the userland.

    qemu-user hands the guest the host's x86 /proc/cpuinfo and /sys, and XNNPACK's CPU
    detection (cpuinfo) then dereferences a null pointer while LiteRT creates its interpreter.
    qemu's -L prefix is searched first for every absolute path, so files under root/proc and
    root/sys are what the guest reads.
    """
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc" / "cpuinfo").write_text(CPUINFO_A72)
    cpu = root / "sys" / "devices" / "system" / "cpu"
    (cpu / "cpu0" / "topology").mkdir(parents=True, exist_ok=True)
    for name in ("possible", "present", "online", "kernel_max"):
        (cpu / name).write_text("0\n")
    for name in ("physical_package_id", "cluster_cpus_list", "core_siblings_list", "thread_siblings_list"):
        (cpu / "cpu0" / "topology" / name).write_text("0\n")


def build_rootfs(cache: Path, tools: dict[str, str]) -> Path:
    """The aarch64 userland in cache/rootfs-<suite>, built once (in a temp dir, then renamed)."""
    root = cache / f"rootfs-{SUITE}"
    if (root / "usr" / "bin" / "python3.11").exists():
        describe_cpu(root)
        return root
    tmp = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache))
    try:
        if Path(tools["builder"]).name == "mmdebstrap":
            cmd = [tools["builder"], "--variant=extract", "--architectures=arm64",
                   "--include=python3.11,libstdc++6", SUITE, str(tmp)]
        else:  # --foreign only unpacks: no aarch64 code runs during the build
            cmd = [tools["builder"], "--foreign", "--arch=arm64", "--variant=minbase", "--include=python3.11",
                   SUITE, str(tmp)]
        _run(cmd, f"building the aarch64 {SUITE} userland", 1800)
        if not (tmp / "usr" / "bin" / "python3.11").exists():
            raise ArmCheckError(f"the {SUITE} userland has no usr/bin/python3.11")
        describe_cpu(tmp)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def install_wheels(cache: Path, name: str, packages: list[str], no_deps: bool) -> Path:
    """aarch64 cp311 wheels in cache/<name>, via the host pip (--target, explicit platform tags)."""
    site = cache / name
    stamp = site / ".tinybert-edge-installed"
    if stamp.is_file() and stamp.read_text() == " ".join(packages):
        return site
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=cache))
    try:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(tmp), "--python-version", "3.11",
               "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none", "--only-binary=:all:"]
        for tag in AARCH64_TAGS:
            cmd += ["--platform", tag]
        if no_deps:
            cmd.append("--no-deps")
        _run(cmd + packages, f"pip install (aarch64) {' '.join(packages)}", 3600)
        (tmp / stamp.name).write_text(" ".join(packages))
        shutil.rmtree(site, ignore_errors=True)
        tmp.rename(site)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return site


def kit_site(cache: Path) -> Path:
    """This installed kit's pure-Python package, laid out as the wheel installs it (converters and
    benchmarks inside tinybert_edge), copied fresh into cache/site-kit for the guest."""
    site = cache / "site-kit"
    shutil.rmtree(site, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "scripts", "results")
    pkg = site / "tinybert_edge"
    shutil.copytree(Path(tinybert_edge.__file__).parent, pkg, ignore=ignore)
    for sub in (kit_converters, kit_benchmarks):
        shutil.copytree(Path(sub.__file__).parent, pkg / sub.__name__.rsplit(".", 1)[1], ignore=ignore,
                        dirs_exist_ok=True)
    return site


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def check_bundle(bundle_dir: Path, texts: list[str], root: Path, sites: list[Path], qemu: str, *, atol: float,
                 timeout: float = 1800) -> dict:
    """Logits of one bundle on emulated aarch64 vs this host; see the module docstring.

    Returns:
        dict with passed, label_agreement, max_abs_diff, n, and the emulated run's cost.

    Raises:
        converters.bundle.BundleError: the bundle is missing, corrupted or failed.
        ArmCheckError: the emulated run failed.
    """
    b = load_bundle(bundle_dir)
    rows = tokenize(b.tokenizer(), texts, None, b.policy.max_len)
    host = b.runner(threads=1).scores(rows)
    with tempfile.TemporaryDirectory(prefix="arm-check-") as tmp:
        inputs, out = Path(tmp) / "inputs.json", Path(tmp) / "out.json"
        inputs.write_text(json.dumps({"rows": [{"ids": ids, "types": types} for ids, types in rows]}))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "QEMU_CPU": QEMU_CPU, "PYTHONNOUSERSITE": "1",
               "PYTHONPATH": os.pathsep.join(str(s) for s in sites), "OMP_NUM_THREADS": "1", "HOME": tmp}
        cmd = [qemu, "-L", str(root), str(root / "usr" / "bin" / "python3.11"), "-m",
               "tinybert_edge.benchmarks.arm_runner", str(b.path.resolve()), str(inputs), str(out), "--threads", "1",
               "--runs", "0"]  # one pass: emulated timings are no ARM speed, so none are taken
        t0 = time.perf_counter()
        # cwd outside any checkout: `python -m` puts the working directory first on sys.path, and
        # a source tree's tinybert_edge/ (without converters/ and benchmarks/ inside, which the
        # wheel maps there) would shadow the kit copied for the guest
        _run(cmd, f"the emulated aarch64 run of {bundle_dir}", timeout, env=env, cwd=tmp)
        wall = time.perf_counter() - t0
        res = json.loads(out.read_text())
    arm = np.asarray(res["logits"], dtype=np.float64)
    diff = float(np.abs(arm - host).max()) if len(rows) else 0.0
    agree = float(np.mean(arm.argmax(1) == host.argmax(1))) if len(rows) else 1.0
    return {"bundle": str(bundle_dir), "format": b.format, "quantization": b.metadata["quantization"]["name"],
            "seq_len_policy": b.policy.to_dict(), "n": len(rows), "label_agreement": agree, "max_abs_diff": diff,
            "logit_scale": float(np.abs(host).max()) if len(rows) else 0.0, "atol": atol,
            "passed": agree == 1.0 and diff <= atol, "guest_arch": res["machine"]["arch"],
            "emulated_wall_s": wall, "emulated_load_s": res["load_s"]}


def _texts(data: str | None, max_examples: int) -> list[str]:
    if not data:
        return DEFAULT_TEXTS[:max_examples]
    return [ex.text for ex in itertools.islice(iter_task_examples(data), max_examples)]


def run_check(bundles: list[Path], *, data: str | None = None, max_examples: int = 32, executorch: bool = False,
              cache: Path | None = None, atol: float = 0.05, progress=print) -> dict:
    """Build (or reuse) the emulated userland and wheels, check every bundle; returns the report.

    Raises:
        ArmCheckError: tools missing, a build step failed, or an .pte bundle without --executorch.
    """
    tools = require_tools()
    cache = Path(cache or cache_dir() / "arm64")
    cache.mkdir(parents=True, exist_ok=True)
    cost = {}
    t = time.perf_counter()
    root = build_rootfs(cache, tools)
    cost["rootfs_s"], cost["rootfs_mb"] = time.perf_counter() - t, _dir_mb(root)
    progress(f"aarch64 {SUITE} userland: {root} ({cost['rootfs_mb']:.0f} MB, {cost['rootfs_s']:.1f} s)")
    t = time.perf_counter()
    sites = [install_wheels(cache, "site-litert", [_pinned(p) for p in LITERT_PACKAGES], no_deps=True),
             install_wheels(cache, "site-kit-runtime", [_pinned(p) for p in KIT_RUNTIME_PACKAGES], no_deps=False),
             kit_site(cache)]
    if executorch:
        sites += [install_wheels(cache, "site-torch", [_pinned(p) for p in EXECUTORCH_PACKAGES], no_deps=False),
                  install_wheels(cache, "site-executorch", [_pinned(p) for p in EXECUTORCH_NO_DEPS], no_deps=True)]
    cost["wheels_s"], cost["wheels_mb"] = time.perf_counter() - t, sum(_dir_mb(s) for s in sites)
    progress(f"aarch64 wheels: {cost['wheels_mb']:.0f} MB ({cost['wheels_s']:.1f} s)")
    texts = _texts(data, max_examples)
    results = []
    for bdir in bundles:
        meta = json.loads((Path(bdir) / "metadata.json").read_text()) if (Path(bdir) / "metadata.json").is_file() \
            else {}
        if meta.get("format") == "executorch" and not executorch:
            raise ArmCheckError(f"{bdir} is an ExecuTorch bundle; add --executorch (installs aarch64 torch with "
                                "its CUDA libraries, about 4.6 GB) or check a .tflite bundle")
        r = check_bundle(Path(bdir), texts, root, sites, tools["qemu"], atol=atol)
        progress(f"{'PASS' if r['passed'] else 'FAIL'} {bdir}: {r['n']} texts, same label {100 * r['label_agreement']:.1f} %,"
                 f" max |dlogit| {r['max_abs_diff']:.2e} (atol {atol}), emulated run {r['emulated_wall_s']:.1f} s")
        results.append(r)
    return {"schema": "tinybert-edge/arm-check", "schema_version": 1,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "host": machine_info(),
            "guest": {"emulator": f"qemu-user ({Path(tools['qemu']).name}), QEMU_CPU={QEMU_CPU}",
                      "userland": f"Debian {SUITE} arm64 ({Path(tools['builder']).name})", "python": "3.11"},
            "texts": len(texts), "data": data, "cost": cost, "results": results,
            "passed": all(r["passed"] for r in results) and bool(results),
            "note": "emulated timings are the cost of this check, not ARM speed"}


def to_markdown(report: dict) -> str:
    c = report["cost"]
    lines = [f"ARM check {report['date']}: host {report['host']['cpu']}; guest {report['guest']['userland']} under "
             f"{report['guest']['emulator']}; {report['texts']} texts.", "",
             "| bundle | format | quant | texts | same label | max abs dlogit | atol | result | emulated run s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append(f"| {Path(r['bundle']).name} | {r['format']} | {r['quantization']} | {r['n']} | "
                     f"{100 * r['label_agreement']:.1f} % | {r['max_abs_diff']:.2e} | {r['atol']} | "
                     f"{'pass' if r['passed'] else 'FAIL'} | {r['emulated_wall_s']:.1f} |")
    lines += ["", f"Cost: userland {c['rootfs_mb']:.0f} MB in {c['rootfs_s']:.1f} s, wheels {c['wheels_mb']:.0f} MB in "
              f"{c['wheels_s']:.1f} s (both cached after the first run).",
              "Emulated timings are the cost of this check, never ARM speed."]
    return "\n".join(lines)


def _default_bundles() -> list[Path]:
    root = Path("tinybert-edge-demo") / "bundles"
    return sorted(p for p in root.glob("student-tflite-int8-*") if (p / "metadata.json").is_file())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Check shipped bundles on emulated aarch64 against this host.")
    p.add_argument("--bundle", action="append", help="bundle directory (repeat); default: the demo's int8 .tflite "
                   "bundles")
    p.add_argument("--data", help="labelled file whose texts are used (default: built-in hard cases)")
    p.add_argument("--max-examples", type=int, default=32)
    p.add_argument("--executorch", action="store_true", help="also check .pte bundles (installs ~4.6 GB)")
    p.add_argument("--atol", type=float, default=0.05, help="max |logit difference| allowed (default 0.05)")
    p.add_argument("--cache", help="where the userland and wheels are kept (default: <kit cache>/arm64)")
    p.add_argument("--out", default="benchmarks/results/arm_emulation")
    a = p.parse_args(argv)
    bundles = [Path(b) for b in a.bundle] if a.bundle else _default_bundles()
    if not bundles:
        print("error: no bundles given and none in tinybert-edge-demo/bundles; run `tinybert-edge demo` or pass "
              "--bundle", file=sys.stderr)
        return 2
    if a.max_examples < 1:
        print("error: --max-examples must be at least 1", file=sys.stderr)
        return 2
    try:
        report = run_check(bundles, data=a.data, max_examples=a.max_examples, executorch=a.executorch,
                           cache=Path(a.cache) if a.cache else None, atol=a.atol)
    except (ArmCheckError, BundleError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(out / "arm_check.json", report)
    write_bytes_atomically(out / "arm_check.md", (to_markdown(report) + "\n").encode())
    print(to_markdown(report))
    return 0 if report["passed"] else 3


if __name__ == "__main__":
    sys.exit(main())
