"""Speed of the generated CNN and attention modules against PyTorch's eager CPU autograd, as ratios in the same run.

    python benchmarks/bench_spatial.py [--quick] [--threads N] [--batches 1,16,128] [--dtypes float32,float64]
                                       [--nets cnn,attention,attention_wide] [--json PATH]

The networks are layer lists printed into NumPy modules (codegen/layer_module.py, from the layer
table's proven forms), each set against the same network in torch.nn holding the same parameters:

- cnn: examples/digits_cnn.toml, the digits CNN ([1, 8, 8]; conv2d 16 channels 3x3 padding 1
  ReLU, maxpool2d 2, conv2d 32 channels, maxpool2d 2, flatten, a softmax layer of 10), against
  nn.Conv2d (oneDNN), nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Linear;
- attention: examples/attention_task.toml, the associative-recall block ([7, 24], head_dim 8, then
  flatten and a softmax layer of 8);
- attention_wide: a wider block, [32, 64] with head_dim 64, causal, with the output projection W_o,
  then flatten and a softmax layer of 10.
  The attention references are nn.Linear(bias=False) projections around
  F.scaled_dot_product_attention (PyTorch's fused CPU kernel; is_causal where the spec is causal).

Every network ends in softmax and the log-likelihood (cross-entropy) cost averaged over the batch:
F.cross_entropy on PyTorch's side. One step is forward + backward: the module's forward(params, x)
then backward(params, cache, y), its argument checks included; PyTorch's forward, the loss and
loss.backward(), every gradient reset first (the input needs none: neither computes ∂C/∂x). The
gradients are checked equal before timing. Both run on `--threads` threads (torch.set_num_threads
and OpenBLAS through threadpoolctl; default 1). Implementations run interleaved, round after round,
each keeping its best round (CPU time of this process, as benchmarks/bench_codegen.py measures).
The column `torch / generated` is the ratio: above 1 the generated module is faster; the target
is at least 0.5 (within 2x of PyTorch). The last column counts the minor page faults of 20 more
steps of each, per step (getrusage): a step that allocates its temporaries afresh after the
allocator has handed the freed heap back to the system pays one for every page it touches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_codegen import best_times, configure_threads  # noqa: E402  (the same clock and rounds)

WIDE = dict(name="bench_attention_wide", inputs=[32, 64], cost="log_likelihood", convention="row", batch="mean",
            examples=2, notation="nielsen",
            layers=[{"kind": "attention", "head_dim": 64, "causal": True, "out_proj": True}, {"kind": "flatten"},
                    {"kind": "dense", "width": 10, "activation": "softmax"}])


def specs() -> dict:
    """The benchmarked layer lists by name."""
    from derive.spec import load_spec, validate

    return {"cnn": load_spec(str(ROOT / "examples" / "digits_cnn.toml")),
            "attention": load_spec(str(ROOT / "examples" / "attention_task.toml")),
            "attention_wide": validate(WIDE, "benchmarks/bench_spatial.py")}


def _tensor(array, torch):
    return torch.from_numpy(array.copy())


def torch_net(spec, params, torch):
    """The spec's layer list in torch.nn, holding copies of the module's parameters (row convention: x W)."""
    nn, F = torch.nn, torch.nn.functional
    assert spec.convention == "row", "the references read parameters in the row convention"

    class Attention(nn.Module):
        """Q, K, V = X W_q, X W_k, X W_v; softmax(Q Kᵀ/√d_k) V by PyTorch's fused kernel; then W_o."""

        def __init__(self, block, p):
            super().__init__()
            self.shape, self.causal = block.shape_in, block.causal
            self.q, self.k, self.v = (self._linear(params[f"{w}{p}"]) for w in ("Wq", "Wk", "Wv"))
            self.o = self._linear(params[f"Wo{p}"]) if block.out_proj else None

        @staticmethod
        def _linear(W):
            layer = nn.Linear(W.shape[0], W.shape[1], bias=False)
            layer.weight.data = _tensor(W.T, torch)
            return layer

        def forward(self, x):
            x = x.reshape(-1, *self.shape)
            out = F.scaled_dot_product_attention(self.q(x), self.k(x), self.v(x), is_causal=self.causal)
            return self.o(out) if self.o is not None else out

    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
    parts = []
    for b in spec.layers:
        p = b.position
        if b.kind == "conv2d":
            conv = nn.Conv2d(b.shape_in[0], b.out_channels, b.kernel_size, b.stride, b.padding, bias=f"b{p}" in params)
            conv.weight.data = _tensor(params[f"W{p}"].T.reshape(conv.weight.shape), torch)
            if conv.bias is not None:
                conv.bias.data = _tensor(params[f"b{p}"][0], torch)
            parts += [nn.Unflatten(1, b.shape_in)] if not parts else []
            parts.append(conv)
        elif b.kind in ("maxpool2d", "avgpool2d"):
            pool = nn.MaxPool2d if b.kind == "maxpool2d" else nn.AvgPool2d
            parts.append(pool(b.kernel_size, b.stride))
        elif b.kind == "flatten":
            parts.append(nn.Flatten())
        elif b.kind == "attention":
            parts.append(Attention(b, p))
        elif b.kind == "dense":
            W = params[f"W{p}"]
            linear = nn.Linear(W.shape[0], W.shape[1], bias=f"b{p}" in params)
            linear.weight.data = _tensor(W.T, torch)
            if linear.bias is not None:
                linear.bias.data = _tensor(params[f"b{p}"][0], torch)
            parts.append(linear)
        else:
            raise SystemExit(f"bench_spatial: no PyTorch reference for a {b.kind} layer")
        if b.kind in ("conv2d", "dense") and b.activation in acts:
            parts.append(acts[b.activation]())
        elif b.kind in ("conv2d", "dense") and b.activation not in ("identity", "softmax"):
            raise SystemExit(f"bench_spatial: no PyTorch reference for activation {b.activation}")
    assert spec.layers[-1].activation == "softmax", "F.cross_entropy takes the logits of a softmax layer"
    return nn.Sequential(*parts)


def torch_grads(net) -> list:
    """PyTorch's gradients, one array per parameter tensor, in the order net.parameters() gives them."""
    return [q.grad.numpy() for q in net.parameters()]


def module_grads_in_torch_order(spec, grads: dict) -> list:
    """The module's gradients laid out as PyTorch's, in the order of torch_net's parameters."""
    out = []
    for b in spec.layers:
        p = b.position
        if b.kind == "conv2d":
            out.append(grads[f"W{p}"].T.reshape(b.out_channels, b.shape_in[0], *b.kernel_size))
        elif b.kind == "attention":
            out += [grads[f"{w}{p}"].T for w in ("Wq", "Wk", "Wv") + (("Wo",) if b.out_proj else ())]
            continue
        elif b.kind == "dense":
            out.append(grads[f"W{p}"].T)
        else:
            continue
        if f"b{p}" in grads:
            out.append(grads[f"b{p}"][0])
    return out


def page_faults(f, steps: int = 20) -> float:
    """Minor page faults per call of f, over `steps` calls."""
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        f()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    p.add_argument("--threads", type=int, default=1, help="threads for BLAS and PyTorch (default 1)")
    p.add_argument("--batches", default="1,16,128")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--nets", default="cnn,attention,attention_wide")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    configure_threads(args.threads)

    import numpy as np
    import torch
    import torch.nn.functional as F
    from rich.console import Console
    from rich.table import Table
    from threadpoolctl import threadpool_info, threadpool_limits

    from codegen.layer_module import load_layers

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    blas = ", ".join(f"{i['internal_api']} {i['version']}" for i in threadpool_info() if i["user_api"] == "blas")
    console = Console(width=160)
    console.print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; numpy {np.__version__} "
                  f"({blas}), torch {torch.__version__}; {args.threads} thread(s) each")
    rounds = 5 if args.quick else 25
    sample = 0.005 if args.quick else 0.05
    table = Table(title=f"forward + backward, CPU time per step (best of {rounds} interleaved rounds)")
    for col in ("network", "dtype", "B", "generated", "torch (eager)", "torch / generated", "page faults / step"):
        table.add_column(col, justify="right")
    rows = []
    chosen = specs()
    for name in args.nets.split(","):
        spec = chosen[name]
        module = load_layers(spec, Path(tempfile.mkdtemp(prefix="bench_spatial_")))
        classes = spec.sizes[-1]
        for dtype in (np.dtype(d).type for d in args.dtypes.split(",")):
            noise = np.random.default_rng(0)  # every parameter away from its start (W_q = W_k = 0 would hide slips)
            params = {k: (v + 0.1 * noise.standard_normal(v.shape)).astype(dtype)
                      for k, v in module.init_params(0, dtype).items()}
            net = torch_net(spec, params, torch)
            for B in [int(b) for b in args.batches.split(",")]:
                rng = np.random.default_rng(B)
                x = rng.standard_normal((B, spec.inputs)).astype(dtype)
                labels = rng.integers(0, classes, B)
                y = np.eye(classes, dtype=dtype)[labels]
                X, L = torch.from_numpy(x), torch.from_numpy(labels)

                def ours():
                    out, cache = module.forward(params, x)
                    return module.backward(params, cache, y)

                def theirs():
                    for q in net.parameters():
                        q.grad = None
                    F.cross_entropy(net(X), L).backward()

                theirs()  # the same gradients, before any timing
                rtol = 1e-9 if dtype == np.float64 else 2e-3
                for i, (got, want) in enumerate(zip(module_grads_in_torch_order(spec, ours()), torch_grads(net))):
                    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, err_msg=f"{name}: parameter {i}")
                t = best_times({"ours": ours, "theirs": theirs}, rounds, sample)
                ratio = t["theirs"] / t["ours"]
                faults = {who: page_faults(f) for who, f in (("ours", ours), ("theirs", theirs))}
                dname = np.dtype(dtype).name
                rows.append(dict(network=name, dtype=dname, batch=B, generated_us=t["ours"] * 1e6,
                                 torch_us=t["theirs"] * 1e6, torch_over_generated=ratio,
                                 generated_faults=faults["ours"], torch_faults=faults["theirs"]))
                table.add_row(name, dname, str(B), f"{t['ours'] * 1e6:.1f} µs", f"{t['theirs'] * 1e6:.1f} µs",
                              f"{ratio:.2f}×", f"{faults['ours']:.0f} / {faults['theirs']:.0f}")
                console.print(f"{name} {dname} B={B}: generated {t['ours'] * 1e6:.1f} µs, torch "
                              f"{t['theirs'] * 1e6:.1f} µs, ratio {ratio:.2f}", highlight=False)
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
