"""converters/gptq.py and benchmarks/scripts/gptq_weights.py: GPTQ rounding of int8 weights.

The claims: GPTQ's result sits on the exporters' per-channel int8 grid with the same scales
(so a downstream per-channel quantizer reproduces its integers exactly); it reduces the
linear's output error on the calibration inputs, not the weights' own error; with uncorrelated
inputs (a diagonal Hessian) it is nearest rounding; on a real (tiny) classifier it moves the
logits of held-out rows less than nearest rounding does, and touches nothing but linear weights.
"""

import json

import pytest
import torch

from conftest import make_tiny_model_dir, sentences, write_tsv


def _problem(seed=0, rows=96, cols=64, n=2000):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cols, generator=g) @ torch.randn(cols, cols, generator=g) * 0.3 + torch.randn(cols, generator=g)
    w = torch.randn(rows, cols, generator=g) * 0.05
    return w, x


def test_gptq_lands_on_the_exporters_grid_and_lowers_the_output_error():
    from tinybert_edge.converters.gptq import (_relative_output_error, gptq_round, int8_codes, per_channel_scale,
                                               round_nearest)

    w, x = _problem()
    h = x.double().T @ x.double()
    g = gptq_round(w, h)
    q = g.double() / per_channel_scale(w).double()[:, None]
    assert torch.allclose(q, q.round(), atol=1e-3) and q.abs().max() <= 127 + 1e-3
    # a per-channel min/max quantizer (what XNNPACK and ai-edge-quantizer do) stores GPTQ's integers
    assert torch.equal(int8_codes(g), q.round().to(torch.int32))
    assert torch.allclose(round_nearest(g), g, rtol=0, atol=1e-7)
    near = _relative_output_error(w, round_nearest(w), h)
    ours = _relative_output_error(w, g, h)
    assert ours < 0.85 * near
    # ... while each weight moves further than nearest rounding moves it (the output is what it optimises)
    assert (g - w).norm() > (round_nearest(w) - w).norm()
    assert torch.equal(gptq_round(w, h), g)  # deterministic


def test_gptq_on_a_floored_grid_is_what_xnnpack_stores():
    """ExecuTorch's XNNPACK quantizer floors each weight row's scale at 2^-12 (a TinyBERT pooler's
    rows mostly sit under 127 * 2^-12). With that floor GPTQ rounds floored rows on the floor's
    grid and does not pin their largest weight to 127 (which would inflate it); the other rows
    stay pinned, and a floored min/max quantizer stores every integer as GPTQ rounded it."""
    from tinybert_edge.converters.gptq import gptq_round, int8_codes, per_channel_scale

    eps = 2.0 ** -12
    w, x = _problem()
    w[:40] *= 0.15  # rows 0-39 now all under 127 * eps = 0.031
    floored = w.abs().amax(dim=1) / 127 < eps
    assert floored[:40].all() and not floored[40:].any()
    h = x.double().T @ x.double()
    g = gptq_round(w, h, min_scale=eps)
    scale = per_channel_scale(w, min_scale=eps)
    assert torch.equal(scale[:40], torch.full((40,), eps))
    q = g.double() / scale.double()[:, None]
    assert torch.allclose(q, q.round(), atol=1e-3)
    assert torch.equal(int8_codes(g, min_scale=eps), q.round().to(torch.int32))
    assert (q[:40].abs().amax(dim=1) < 126.5).all()  # not pinned: the floor, not the row, sets the scale
    assert torch.allclose(q[40:].abs().amax(dim=1), torch.full((56,), 127.0, dtype=torch.float64))
    # without the floor, the floored rows' integers are not what the floored quantizer stores
    assert not torch.equal(int8_codes(gptq_round(w, h), min_scale=eps)[:40],
                           (gptq_round(w, h).double()[:40] / per_channel_scale(w)[:40, None].double()).round().int())


def test_gptq_with_uncorrelated_inputs_is_nearest_rounding():
    from tinybert_edge.converters.gptq import gptq_round, round_nearest

    w, _ = _problem(seed=1)
    h = torch.diag(torch.rand(w.shape[1], dtype=torch.float64) + 0.5)
    assert torch.allclose(gptq_round(w, h), round_nearest(w), atol=1e-7)


def test_gptq_refuses_a_hessian_of_the_wrong_shape_and_no_calibration():
    from tinybert_edge.converters.gptq import gptq_round, gptq_round_model

    w, _ = _problem()
    with pytest.raises(ValueError, match="does not match a weight with 64 input columns"):
        gptq_round(w, torch.eye(32, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least one calibration batch"):
        gptq_round_model(torch.nn.Linear(4, 4), [])


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("gptq") / "m", classifier=True, layers=2, seed=3,
                               logit_scale=300.0)


def test_gptq_on_a_classifier_changes_only_linear_weights_and_tracks_fp32_closer(tiny_classifier):
    from tinybert_edge.converters.gptq import gptq_round_model, int8_codes, per_channel_scale, round_nearest
    from tinybert_edge.models import load_classifier, load_tokenizer

    model = load_classifier(tiny_classifier, attn_implementation="eager").eval()
    tok = load_tokenizer(tiny_classifier)

    def batches(rows):
        texts = [t for t, _ in rows]
        enc = tok(texts, truncation=True, max_length=16, padding=True, return_tensors="pt")
        return [{k: enc[k][i:i + 8] for k in ("input_ids", "attention_mask", "token_type_ids")}
                for i in range(0, len(texts), 8)]

    cal, held_out = batches(sentences(64, seed=1)), batches(sentences(48, seed=2))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    gptq = load_classifier(tiny_classifier, attn_implementation="eager").eval()
    report = gptq_round_model(gptq, cal)
    linear = {f"{n}.weight" for n, m in gptq.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(report.linears) == {n.rsplit(".", 1)[0] for n in linear} and len(linear) >= 2 * 6 + 2
    assert report.exact_rows == report.rows > 0
    for n, p in gptq.named_parameters():
        if n in linear:
            assert not torch.equal(p, before[n])
            codes = p.data.double() / per_channel_scale(before[n]).double()[:, None]
            assert torch.equal(int8_codes(p.data), codes.round().to(torch.int32)), n
        else:
            assert torch.equal(p, before[n]), n
    assert report.tokens == sum(int(b["attention_mask"].sum()) for b in cal)  # padding left out

    nearest = load_classifier(tiny_classifier, attn_implementation="eager").eval()
    with torch.no_grad():
        for n, m in nearest.named_modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(round_nearest(m.weight))

        def logits(m):
            return torch.cat([m(**b).logits for b in held_out])

        ref = logits(model)
        assert (logits(gptq) - ref).abs().mean() < (logits(nearest) - ref).abs().mean()


def test_probe_reports_saves_a_loadable_student_and_refuses_too_few_rows(tiny_classifier, tmp_path, capsys):
    from tinybert_edge.benchmarks.scripts.gptq_weights import main
    from tinybert_edge.converters.gptq import int8_codes
    from tinybert_edge.models import load_classifier

    dev = write_tsv(tmp_path / "dev.tsv", sentences(40, seed=4))
    train = write_tsv(tmp_path / "train.tsv", sentences(50, seed=5))
    out, saved = tmp_path / "report", tmp_path / "gptq-student"
    assert main(["--model", str(tiny_classifier), "--data", str(dev), "--calibration-data", str(train),
                 "--calibration", "32", "--max-seq-len", "16", "--save", str(saved), "--out", str(out)]) == 0
    report = json.loads((out / "gptq_weights.json").read_text())
    by = {r["variant"]: r for r in report["results"]}
    assert list(by) == ["fp32", "linears int8, nearest", "linears int8, GPTQ", "linears nearest + embeddings per row",
                        "linears GPTQ + embeddings per row"]
    assert by["fp32"]["label_agreement"] == 1.0 and report["regrid_unchanged"] is True
    assert report["rows"] == 40 and report["calibration_rows"] == 32
    assert report["output_error_median"]["gptq"] < report["output_error_median"]["nearest"]
    assert "| linears int8, GPTQ |" in (out / "gptq_weights.md").read_text()
    m = load_classifier(saved)  # a plain model directory, weights already on the int8 grid
    w = m.classifier.weight.data
    assert torch.allclose(int8_codes(w).float() * (w.abs().amax(1, keepdim=True) / 127), w, rtol=1e-5, atol=0)

    bad_out = tmp_path / "bad"
    assert main(["--model", str(tiny_classifier), "--data", str(dev), "--calibration-data", str(train),
                 "--calibration", "500", "--save", str(tmp_path / "never"), "--out", str(bad_out)]) == 2
    assert "--calibration 500 needs more" in capsys.readouterr().err
    assert not bad_out.exists() and not (tmp_path / "never").exists()


def test_gptq_calibrates_through_the_export_wrapper_and_names_a_non_finite_input(tiny_classifier):
    """int8-static's keep-mask attention takes a 0/1 keep mask, which only the export wrapper
    makes: called on the HF model inside it, HF's additive mask reaches that attention and every
    activation after it is NaN. GPTQ through the wrapper rounds (finite Hessians); through the
    bare model it is one ExportError naming the first linear whose inputs were not finite and the
    way out, not a Cholesky traceback."""
    import copy

    from tinybert_edge.converters.export import gptq_round_rows, load_for_export
    from tinybert_edge.converters.runtime import ExportError, tokenize

    wrapper, tok, _ = load_for_export(tiny_classifier, xnnpack=True, keep_mask=True)
    rows = tokenize(tok, [t for t, _ in sentences(24, seed=6)], None, 32)
    assert len({len(ids) for ids, _ in rows}) > 1  # batches hold padding
    report = gptq_round_rows(copy.deepcopy(wrapper), rows, tok.pad_token_id)
    assert report["linears"] == 2 * 6 + 2 and report["exact_rows"] == report["rows"]
    with pytest.raises(ExportError, match=r"GPTQ cannot round bert\.encoder\.layer\.0\.attention\.output\.dense: "
                                          r"a linear whose calibration inputs are not finite.*--weight-rounding nearest"):
        gptq_round_rows(copy.deepcopy(wrapper).model, rows, tok.pad_token_id)
