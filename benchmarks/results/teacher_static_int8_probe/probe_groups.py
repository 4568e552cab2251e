"""Which part of the current ExecuTorch int8-static recipe costs the teacher its agreement?
Mirror of the exporter: keep-mask wrapper, int8 word embeddings, FFN outlier split, calibrated once on
unpadded rows (128 seeded train texts), scored unpadded on dev rows in PyTorch (convert_pt2e graph)."""
import copy, json, sys, time
import torch
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from executorch.backends.xnnpack.quantizer import xnnpack_quantizer as xq
from tinybert_edge.converters.export import load_for_export, read_validation_data, calibration_sample
from tinybert_edge.converters.runtime import tokenize
from tinybert_edge.converters.outliers import split_ffn_outliers, unpadded_inputs
from tinybert_edge.converters.executorch import Int8RowwiseEmbedding, _word_embeddings_owner, _export, _tracing_sample
from tinybert_edge.converters.qat import is_layer_norm, is_add_and_norm
from tinybert_edge.benchmarks.scripts.int8_sensitivity import _is_linear, _linear_group, _is_attention_matmul
torch.set_num_threads(2)
model, rows_n, ncal = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
only = sys.argv[4].split(",") if len(sys.argv) > 4 else None
D = "/root/.cache/tinybert-edge/data/rotten_tomatoes"
wrapper, tok, config = load_for_export(model, xnnpack=True, keep_mask=True)
texts, pairs, _ = read_validation_data(f"{D}/dev.tsv", config)
dev_rows = tokenize(tok, texts[:rows_n], None, 128)
dev = unpadded_inputs(dev_rows, tok.pad_token_id)
from tinybert_edge.converters.runtime import pad_row
bucket = lambda n: next(b for b in (32, 64, 128) if n <= b)
dev_b = [tuple(torch.from_numpy(a) for a in pad_row(i, t, bucket(len(i)), tok.pad_token_id)) for i, t in dev_rows]
tr, _, _ = read_validation_data(f"{D}/train.tsv", config)
cal_rows = tokenize(tok, calibration_sample(tr, None, ncal, "x")[0], None, 128)
cal = unpadded_inputs(cal_rows, tok.pad_token_id)
with torch.no_grad():
    ref = torch.cat([wrapper(*x) for x in dev])
module = copy.deepcopy(wrapper)
owner, name = _word_embeddings_owner(module.model); setattr(owner, name, Int8RowwiseEmbedding(getattr(owner, name)))
split_ffn_outliers(module, cal[:128])
base = lambda n: not is_layer_norm(n) and not is_add_and_norm(n)
groups = ("Q/K/V", "attention output", "FFN input (intermediate)", "FFN output", "pooler and classifier")
V = {"current recipe": base,
     **{f"{g} linears fp32": (lambda g: lambda n: base(n) and not (_is_linear(n) and _linear_group(n) == g))(g) for g in groups},
     "attention matmuls fp32": lambda n: base(n) and not _is_attention_matmul(n),
     "all but linears fp32": lambda n: base(n) and _is_linear(n),
     "softmax/mul/div fp32 (non-linear, non-matmul)": lambda n: base(n) and (_is_linear(n) or _is_attention_matmul(n))}
ep = _export(module, _tracing_sample(cal_rows, 128, tok), True, 128).module()
for vname, keep in V.items():
    if only and not any(o in vname for o in only): continue
    t = time.time()
    q = xq.XNNPACKQuantizer().set_global(xq.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    q.set_filter_function(keep)
    prepared = prepare_pt2e(copy.deepcopy(ep), q)
    with torch.no_grad():
        for x in cal: prepared(*x)
        conv = convert_pt2e(prepared)
        out = torch.cat([conv(*x) for x in dev])

    agree = float((out.argmax(-1) == ref.argmax(-1)).float().mean())

    print(json.dumps({"model": model, "variant": vname, "rows": len(dev), "calibration": ncal, "agreement": agree,
                      "mean_abs": float((out - ref).abs().mean()),
                      "s": round(time.time() - t)}), flush=True)
