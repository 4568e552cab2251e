"""The demo's recipes and its training precision (issue #11/#13: the quick profile within 15 minutes).

bf16 autocast is about 1.8x faster per training step where the CPU has bf16 dot products
(BENCHMARKS.md); "auto" must pick it only there, and every training step of the profile must
carry the choice, while evaluation stays fp32.
"""

import pytest

from tinybert_edge import training
from tinybert_edge.demo import get_profile, resolve_precision
from tinybert_edge.errors import ConfigError


def test_bf16_reaches_every_training_step_and_fp32_is_the_plain_recipe():
    plain = get_profile("quick", 43, "fp32")
    bf16 = get_profile("quick", 43, "bf16")
    for step in ("finetune", "intermediate", "prediction"):
        assert getattr(plain, step).mixed_precision == "no"
        assert getattr(bf16, step).mixed_precision == "bf16"
        # nothing else changes
        assert getattr(bf16, step).to_dict() | {"mixed_precision": "no"} == getattr(plain, step).to_dict()
    assert bf16.intermediate.seed == 43
    full = get_profile("full", 42, "bf16")
    assert full.intermediate.mixed_precision == full.prediction.mixed_precision == "bf16"


def test_auto_follows_the_hardware(monkeypatch):
    monkeypatch.setattr("tinybert_edge.demo.native_bf16", lambda: "CPU flag avx512_bf16")
    assert resolve_precision("auto") == ("bf16", "auto: native bf16 (CPU flag avx512_bf16)")
    monkeypatch.setattr("tinybert_edge.demo.native_bf16", lambda: None)
    assert resolve_precision("auto")[0] == "fp32"
    assert resolve_precision("bf16") == ("bf16", "asked for")


def test_native_bf16_reads_the_cpu_flags(monkeypatch, tmp_path):
    monkeypatch.setattr(training.torch.cuda, "is_available", lambda: False)
    real_open = open

    def fake(flags):
        f = tmp_path / "cpuinfo"
        f.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        return lambda path, *a, **k: real_open(f if path == "/proc/cpuinfo" else path, *a, **k)

    monkeypatch.setattr("builtins.open", fake("fpu sse2 avx2 avx512f avx512_vnni"))
    assert training.native_bf16() is None
    monkeypatch.setattr("builtins.open", fake("fpu avx512f avx512_bf16 amx_bf16 amx_tile"))
    assert training.native_bf16() == "CPU flag amx_bf16"


def test_unknown_precision_or_profile_is_one_clear_error():
    with pytest.raises(ConfigError, match="use auto, fp32 or bf16"):
        resolve_precision("fp16")
    with pytest.raises(ConfigError, match="use fp32 or bf16"):
        get_profile("quick", 42, "half")
    with pytest.raises(ConfigError, match="use quick or full"):
        get_profile("fast")
