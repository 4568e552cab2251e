"""The package's shape as contracts (issue #12): one import root in the wheel, the layers checked by
import-linter (and shown to fail on a planted back edge), no private names across packages, imports
at module top except the optional runtimes, and a LiteRT bench row that never loads torch."""

import ast
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"tinybert_edge": ROOT / "tinybert_edge", "tinybert_edge.converters": ROOT / "converters",
           "tinybert_edge.benchmarks": ROOT / "benchmarks"}
# Optional runtimes and converters: imported lazily, each from one module (the registry, the plot).
OPTIONAL = ("executorch", "litert_torch", "ai_edge_litert", "mediapipe", "matplotlib", "tflite_support")
LAZY_ALLOWED = {
    # the format registry reaches each format's export and runtime modules only when asked
    ROOT / "converters" / "__init__.py": (".litert", ".executorch", ".litert_runtime", ".executorch_runtime"),
    # an eager bench row measures PyTorch; a bundle row must not load it (test below)
    ROOT / "benchmarks" / "worker.py": ("torch", "transformers", "tinybert_edge.models"),
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True)
    return next(out.glob("tinybert_edge-*.whl"))


@pytest.fixture(scope="module")
def unpacked(wheel, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(d)
    return d


@pytest.mark.slow
def test_the_wheel_installs_exactly_one_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"tinybert_edge"}, top
    for expected in ("tinybert_edge/converters/runtime.py", "tinybert_edge/benchmarks/worker.py",
                     "tinybert_edge/benchmarks/arm_runner.py", "tinybert_edge/schemas/bundle.schema.json"):
        assert expected in names, expected
    assert not [n for n in names if "/scripts/" in n or n.endswith("reproduce.py")], "one-off scripts are not installed"


def _lint_imports(site: Path, cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    return subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(cwd)})


@pytest.mark.slow
def test_import_contract_holds_and_fails_on_a_planted_back_edge(unpacked, tmp_path):
    # import-linter reads the package as the wheel lays it out (converters/ and benchmarks/ inside
    # tinybert_edge), so it runs on the unpacked wheel, from a directory without the source tree
    ok = _lint_imports(unpacked, tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Contracts: 3 kept, 0 broken" in ok.stdout
    planted = tmp_path / "planted"
    shutil.copytree(unpacked, planted)
    models = planted / "tinybert_edge" / "models.py"
    models.write_text(models.read_text() + "\nfrom .converters import bundle  # planted back edge\n")
    broken = _lint_imports(planted, tmp_path)
    assert broken.returncode != 0
    assert "the core never imports converters" in broken.stdout and "BROKEN" in broken.stdout
    assert "tinybert_edge.models -> tinybert_edge.converters" in broken.stdout


def _modules():
    for pkg, d in SOURCES.items():
        for f in d.rglob("*.py"):
            if "scripts" in f.parts:
                continue
            yield pkg, f


def _layer(module: str) -> str:
    for pkg in ("tinybert_edge.converters", "tinybert_edge.benchmarks"):
        if module == pkg or module.startswith(pkg + "."):
            return pkg
    return "tinybert_edge" if module.split(".")[0] == "tinybert_edge" else "external"


def _absolute(pkg: str, f: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    parts = pkg.split(".")
    if f.name != "__init__.py":
        parts += [f.stem]
    base = parts[: len(parts) - node.level]
    return ".".join(base + ([node.module] if node.module else []))


def test_no_private_names_are_imported_across_packages():
    bad = []
    for pkg, f in _modules():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = _absolute(pkg, f, node)
                if _layer(target) not in (pkg, "external"):
                    bad += [f"{f.relative_to(ROOT)}: from {target} import {a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, bad


def test_imports_are_at_module_top_except_optional_runtimes():
    lazy = []
    for _, f in _modules():
        tree = ast.parse(f.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    mods = ["." * node.level + (node.module or "")]
                else:
                    continue
                for m in mods:
                    if m.split(".")[0] in OPTIONAL or m in LAZY_ALLOWED.get(f, ()):
                        continue
                    lazy.append(f"{f.relative_to(ROOT)}:{node.lineno} {m}")
    assert not lazy, lazy


@pytest.mark.slow
def test_a_litert_bench_row_never_imports_torch_or_transformers(tmp_path):
    from tinybert_edge.cli import main
    from conftest import make_tiny_model_dir, sentences, write_tsv

    model = make_tiny_model_dir(tmp_path / "student", classifier=True, layers=2, seed=1)
    dev = write_tsv(tmp_path / "dev.tsv", sentences(8, seed=2))
    assert main(["export", "--model", str(model), "--format", "tflite", "--quantize", "int8", "--seq-len", "32",
                 "--data", str(dev), "--out", str(tmp_path / "b"), "--threshold", "50"]) == 0
    bundle = next((tmp_path / "b").iterdir())
    spec = {"kind": "bundle", "path": str(bundle), "threads": 1, "workload": "real", "seq_len": 32,
            "data": str(dev), "warmup": 1, "runs": 3, "max_examples": None, "tokenizer": None, "accuracy": True}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    subprocess.run([sys.executable, "-m", "tinybert_edge.benchmarks.worker", str(tmp_path / "spec.json"),
                    str(tmp_path / "out.json")], check=True, cwd=tmp_path)
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["status"] == "ok", out
    assert out["modules"] == {"torch": False, "transformers": False}
    assert 0.0 <= out["accuracy"] <= 1.0 and out["accuracy_examples"] == 8
