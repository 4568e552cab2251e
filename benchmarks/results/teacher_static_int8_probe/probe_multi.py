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
torch.set_num_threads(1)
model, rows_n, ncal = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
settings = [tuple(map(float, x.split(":"))) for x in sys.argv[4].split(",")]
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
from torch import nn
from tinybert_edge.converters.outliers import _ffn_pairs, input_channel_max
import numpy as np
class MultiSplitLinear(nn.Module):
    def __init__(self, linear, bounds):
        super().__init__()
        self.bounds = bounds
        self.parts = nn.ModuleList()
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            l = nn.Linear(hi - lo, linear.out_features, bias=(i == len(bounds) - 2) and linear.bias is not None)
            with torch.no_grad():
                l.weight.copy_(linear.weight[:, lo:hi])
                if l.bias is not None: l.bias.copy_(linear.bias)
            self.parts.append(l)
    def forward(self, x):
        y = self.parts[-1](x[..., self.bounds[-2]:self.bounds[-1]])
        for l, lo, hi in zip(self.parts[:-1], self.bounds[:-2], self.bounds[1:-1]):
            y = y + l(x[..., lo:hi])
        return y
def plan(m, w, G, minsize):
    # channels sorted by max desc; choose G contiguous groups minimising sum_g max_g^2 * sum w_j
    n = len(m); cw = np.concatenate([[0], np.cumsum(w)])
    INF = float("inf"); best = np.full((G + 1, n + 1), INF); arg = np.zeros((G + 1, n + 1), int); best[0, 0] = 0
    for g in range(1, G + 1):
        for e in range(1, n + 1):
            # group (s, e]: its max is m[s]
            s_ = np.arange(0, e)
            c = best[g - 1, s_] + m[s_] ** 2 * (cw[e] - cw[s_])
            k = int(np.argmin(c)); best[g, e] = c[k]; arg[g, e] = k
    g = int(np.argmin(best[1:, n])) + 1
    bounds = [n]; e = n
    while g > 0:
        e = arg[g, e]; bounds.append(e); g -= 1
    return sorted(bounds), float(best[1, n]), float(best[1:, n].min())
base = lambda n: not is_layer_norm(n) and not is_add_and_norm(n)
for G in [int(x) for x in sys.argv[4].split(",")]:
    t = time.time()
    module = copy.deepcopy(wrapper)
    owner, name = _word_embeddings_owner(module.model); setattr(owner, name, Int8RowwiseEmbedding(getattr(owner, name)))
    pairs = _ffn_pairs(module)
    amax, _ = input_channel_max(module, [(n_, o) for n_, _, _, o in pairs], cal[:128])
    recs = []
    for n_, block, inter, out in pairs:
        m = amax[n_]; order = torch.argsort(m, descending=True)
        w = (out.weight.detach() ** 2).sum(0)[order].numpy().astype(np.float64)
        bounds, c1, cg = plan(m[order].numpy().astype(np.float64), w, G, 1)
        recs.append({"bounds": [int(b) for b in bounds], "gain": round(c1 / cg, 2), "maxes": [round(float(m[order][b]), 2) for b in bounds[:-1]]})
        with torch.no_grad():
            inter.weight.copy_(inter.weight[order]); inter.bias.copy_(inter.bias[order]); out.weight.copy_(out.weight[:, order])
        block.output.dense = MultiSplitLinear(out, bounds)
    ep = _export(module, _tracing_sample(cal_rows, 128, tok), True, 128).module()
    q = xq.XNNPACKQuantizer().set_global(xq.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    q.set_filter_function(base)
    prepared = prepare_pt2e(copy.deepcopy(ep), q)
    with torch.no_grad():
        fp = torch.cat([module(*x) for x in dev[:50]])
        for x in cal: prepared(*x)
        conv = convert_pt2e(prepared)
        out_ = torch.cat([conv(*x) for x in dev])
    agree = float((out_.argmax(-1) == ref.argmax(-1)).float().mean())
    print(json.dumps({"groups": G, "fp32_same": float((fp - ref[:50]).abs().max()), "plan": recs, "agreement": agree,
                      "mean_abs": float((out_ - ref).abs().mean()), "s": round(time.time() - t)}), flush=True)
