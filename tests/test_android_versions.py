"""The Android demo's runtime versions stay in step with the Python export pins (issue #13).

A .pte is read by the ExecuTorch runtime inside the app, a .tflite by LiteRT's: when the export
side (pyproject.toml's `export` extra) moves to a new executorch or ai-edge-litert and the app's
version catalog (android_demo/gradle/libs.versions.toml) does not, the phone runs programs made
for another runtime. Parsing only, no build: both files are TOML."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
CATALOG = ROOT / "android_demo" / "gradle" / "libs.versions.toml"


def export_pins(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """{package: version} of the `name==version` pins of [project.optional-dependencies].export."""
    extras = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    pins = {}
    for req in extras["export"]:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;,]+)\s*(;.*)?", req)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def catalog_versions(catalog: Path = CATALOG) -> dict[str, str]:
    """[versions] of the Android version catalog."""
    return tomllib.loads(catalog.read_text(encoding="utf-8"))["versions"]


def major_minor(version: str) -> tuple[int, int]:
    parts = re.match(r"(\d+)\.(\d+)", version)
    assert parts, f"{version!r} is not a major.minor[.patch] version"
    return int(parts.group(1)), int(parts.group(2))


def drift(pins: dict[str, str], android: dict[str, str]) -> list[str]:
    """What differs, each line naming both files and the fix (empty: in step)."""
    py, cat = PYPROJECT.relative_to(ROOT), CATALOG.relative_to(ROOT)
    problems = []
    for pkg in ("executorch", "ai-edge-litert"):
        if pkg not in pins:
            problems.append(f"{py} [project.optional-dependencies] export does not pin {pkg}==X.Y.Z; pin it exactly "
                            f"so {cat} can follow it")
    for key in ("executorch", "litert"):
        if key not in android:
            problems.append(f"{cat} [versions] has no {key} entry")
    if problems:
        return problems
    if android["executorch"] != pins["executorch"]:
        problems.append(
            f"executorch drift: {py} exports .pte with executorch=={pins['executorch']} but {cat} builds the app with "
            f"org.pytorch:executorch-android {android['executorch']}; set executorch = \"{pins['executorch']}\" in {cat} "
            f"(the AAR is published with the pip package's version) or change the pin in {py}")
    if major_minor(android["litert"]) != major_minor(pins["ai-edge-litert"]):
        want = ".".join(map(str, major_minor(pins["ai-edge-litert"])))
        problems.append(
            f"LiteRT drift: {py} exports and validates .tflite with ai-edge-litert=={pins['ai-edge-litert']} but {cat} "
            f"builds the app with com.google.ai.edge.litert:litert {android['litert']}; set litert = \"{want}.x\" (the "
            f"newest {want} patch on Google Maven) in {cat}, or change the pin in {py}")
    return problems


def test_android_runtimes_are_the_versions_the_python_side_exports_with():
    problems = drift(export_pins(), catalog_versions())
    assert not problems, "the Android demo's runtimes drifted from the export pins:\n  " + "\n  ".join(problems)


def test_the_drift_check_names_both_files_and_the_fix():
    # the old catalog (executorch 1.0.1, LiteRT 1.4.0) against today's pins: both lines fire
    problems = drift({"executorch": "1.5.1", "ai-edge-litert": "2.3.0"}, {"executorch": "1.0.1", "litert": "1.4.0"})
    assert len(problems) == 2
    for line in problems:
        assert "pyproject.toml" in line and "android_demo/gradle/libs.versions.toml" in line and " set " in line
    assert 'executorch = "1.5.1"' in problems[0] and 'litert = "2.3.x"' in problems[1]
    # a newer LiteRT patch on Android is fine, a different minor is not
    assert drift({"executorch": "1.5.1", "ai-edge-litert": "2.3.0"}, {"executorch": "1.5.1", "litert": "2.3.4"}) == []
    assert drift({"executorch": "1.5.1", "ai-edge-litert": "2.3.0"}, {"executorch": "1.5.1", "litert": "2.4.0"})
    assert "does not pin executorch" in drift({"ai-edge-litert": "2.3.0"}, {"executorch": "1.5.1", "litert": "2.3.0"})[0]
