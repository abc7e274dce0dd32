"""Speed of a generated batch-norm MLP against PyTorch's eager CPU autograd, as a ratio in the same run.

    python benchmarks/bench_layers.py [--quick] [--threads N] [--batches 1,8,32,128] [--json PATH]

The network is 64-64-64-10: two blocks of Linear + BatchNorm1d + ReLU and a Linear output into
softmax and the log-likelihood (cross-entropy) cost averaged over the batch, as a layer list
printed into a NumPy module (codegen/layer_module.py, from the layer table's proven forms) and
as torch.nn.Sequential(Linear, BatchNorm1d, ReLU, Linear, BatchNorm1d, ReLU, Linear) with
F.cross_entropy, both holding the same parameters. One step is forward + backward, both keeping
running averages of the batch statistics: the module's forward(params, x, state) then backward()
(its argument checks included); PyTorch's forward in train mode, the loss and loss.backward(),
every gradient reset first. The gradients are compared before timing.
Implementations run interleaved, round after round, each keeping its best round (CPU time of
this process, as benchmarks/bench_codegen.py measures). The column `torch / generated` is the
ratio: above 1, the generated module is faster.

Batch 1: BatchNorm1d refuses to train on one example ("Expected more than 1 value per channel
when training": the batch variance is 0). The generated module trains there (x̂ = 0, finite, as
proven; it keeps no running averages from one row), so its B = 1 step is set against PyTorch's
nearest, its training step at B = 2; and
each batch size also gets the inference row: forward(training=False) with running averages
against PyTorch's eval mode under torch.no_grad(), where B = 1 is allowed to both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_codegen import best_times, configure_threads  # noqa: E402  (the same clock and rounds)

WIDTHS, EPS = (64, 64, 64, 10), "1e-5"


def bench_spec():
    from derive.spec import validate

    layers = []
    for width in WIDTHS[1:-1]:
        layers += [{"kind": "dense", "width": width}, {"kind": "batchnorm", "eps": EPS},
                   {"kind": "activation", "activation": "relu"}]
    layers.append({"kind": "dense", "width": WIDTHS[-1], "activation": "softmax"})
    return validate(dict(name="bench_bn", inputs=WIDTHS[0], layers=layers, cost="log_likelihood", convention="row",
                         batch="mean", examples=2, notation="nielsen"), "benchmarks/bench_layers.py")


def torch_net(module, params, torch):
    """The same network in torch.nn, holding copies of the module's parameters (Linear's weight is Wᵀ)."""
    nn = torch.nn
    parts, blocks = [], {}
    for key in module.PARAM_SHAPES:
        blocks.setdefault(int(re.fullmatch(r"[a-z]+(\d+)", key, re.I).group(1)), []).append(key)
    for position in sorted(blocks):
        keys = blocks[position]
        if f"W{position}" in keys:
            W = params[f"W{position}"]
            linear = nn.Linear(W.shape[0], W.shape[1])
            linear.weight.data = torch.from_numpy(W.T.copy())
            linear.bias.data = torch.from_numpy(params[f"b{position}"][0].copy())
            parts.append(linear)
        else:
            norm = nn.BatchNorm1d(params[f"gamma{position}"].shape[1], eps=float(EPS), momentum=0.1)
            norm.weight.data = torch.from_numpy(params[f"gamma{position}"][0].copy())
            norm.bias.data = torch.from_numpy(params[f"beta{position}"][0].copy())
            parts += [norm, nn.ReLU()]
    net = nn.Sequential(*parts)
    return net.to(dtype=torch.from_numpy(params["W1"]).dtype)


def torch_grads(net, module):
    """PyTorch's gradients under the module's keys and layouts."""
    out, linear, norm = {}, iter(m for m in net if hasattr(m, "weight") and m.weight.dim() == 2), \
        iter(m for m in net if hasattr(m, "running_mean"))
    for key in module.PARAM_SHAPES:
        if key.startswith("W"):
            layer = next(linear)
            out[key], out["b" + key[1:]] = layer.weight.grad.numpy().T, layer.bias.grad.numpy()[None, :]
        elif key.startswith("gamma"):
            layer = next(norm)
            out[key], out["beta" + key[5:]] = layer.weight.grad.numpy()[None, :], layer.bias.grad.numpy()[None, :]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    p.add_argument("--threads", type=int, default=1, help="threads for BLAS and PyTorch (default 1)")
    p.add_argument("--batches", default="1,8,32,128")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    configure_threads(args.threads)

    import numpy as np
    import torch
    import torch.nn.functional as F
    from rich.console import Console
    from rich.table import Table
    from threadpoolctl import threadpool_limits

    from codegen.layer_module import load_layers

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    console = Console(width=160)
    console.print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; numpy {np.__version__}, "
                  f"torch {torch.__version__}; {args.threads} thread(s)")
    module = load_layers(bench_spec(), Path(tempfile.mkdtemp(prefix="bench_layers_")))
    rounds = 5 if args.quick else 25
    sample = 0.005 if args.quick else 0.05
    table = Table(title=f"{'-'.join(map(str, WIDTHS))} batch-norm MLP, CPU time per step (best of {rounds} interleaved rounds)")
    for col in ("dtype", "B", "step", "generated", "torch (eager)", "torch / generated"):
        table.add_column(col, justify="right")
    rows = []
    for dtype in (np.float32, np.float64):
        for B in [int(b) for b in args.batches.split(",")]:
            rng = np.random.default_rng(B)
            params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(dtype)
                      for k, v in module.init_params(0, dtype).items()}
            net = torch_net(module, params, torch)
            state = module.init_state(dtype)

            def batch(n):
                x = rng.standard_normal((n, WIDTHS[0])).astype(dtype)
                labels = rng.integers(0, WIDTHS[-1], n)
                return x, np.eye(WIDTHS[-1], dtype=dtype)[labels], labels

            x, y, labels = batch(B)
            tb = max(B, 2)  # BatchNorm1d trains on two examples at the least
            tx, _, tlabels = (x, y, labels) if B >= 2 else batch(2)
            X, L = torch.from_numpy(tx), torch.from_numpy(tlabels)

            running = state if B >= 2 else None  # both keep running averages while training (none at B = 1)

            def ours():
                out, cache = module.forward(params, x, running)
                return module.backward(params, cache, y)

            def theirs():
                for q in net.parameters():
                    q.grad = None
                F.cross_entropy(net(X), L).backward()

            if B >= 2:  # the same gradients, before any timing
                theirs()
                want, got = torch_grads(net, module), ours()
                rtol = 1e-9 if dtype == np.float64 else 2e-3
                for k in got:
                    np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=rtol, err_msg=k)

            X1 = torch.from_numpy(x)

            def ours_eval():
                return module.forward(params, x, state, training=False)[0]

            def theirs_eval():
                with torch.no_grad():
                    return net(X1)

            for m in net:  # the running averages from their start, as the module's state
                if hasattr(m, "reset_running_stats"):
                    m.reset_running_stats()
            state.update(module.init_state(dtype))
            net.eval()
            np.testing.assert_allclose(torch.softmax(theirs_eval(), 1).numpy(), ours_eval(), rtol=1e-4 if dtype == np.float32 else 1e-10,
                                       atol=1e-6)
            net.train()
            t = best_times({"ours": ours, "theirs": theirs}, rounds, sample)
            net.eval()
            e = best_times({"ours": ours_eval, "theirs": theirs_eval}, rounds, sample)
            net.train()
            name = np.dtype(dtype).name
            train_step = "train" if B >= 2 else f"train (torch at B = {tb})"
            for step, times in ((train_step, t), ("inference", e)):
                ratio = times["theirs"] / times["ours"]
                rows.append(dict(dtype=name, batch=B, step=step, generated_us=times["ours"] * 1e6,
                                 torch_us=times["theirs"] * 1e6, torch_over_generated=ratio))
                table.add_row(name, str(B), step, f"{times['ours'] * 1e6:.1f} µs", f"{times['theirs'] * 1e6:.1f} µs",
                              f"{ratio:.2f}×")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
