"""The independent oracles every generated gradient is compared with, and the data they are fed.

(1) SymPy composes the cost from the table definitions, differentiates it exactly and
lambdifies the partials; (2) central finite differences of the module's own cost; (3) HIPS
autograd on the same mathematics written plainly, one line per table entry. None of them
uses derive's chain rule, matrix forms or codegen's plan: each computes the gradient another way.
"""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import sympy as sp

from codegen.render import param_shapes
from derive.tables.activations import ACTIVATIONS, _softmax_def
from derive.tables.costs import COSTS


def data(spec, B: int, rng, dtype=np.float64, scale=1.0):
    """Random parameters (biases too), inputs and targets that suit the cost."""
    params = {k: (rng.standard_normal(shape) * scale).astype(dtype) for k, shape in param_shapes(spec)}
    x = rng.standard_normal((B, spec.sizes[0])).astype(dtype)
    n = spec.sizes[-1]
    if COSTS[spec.cost].one_hot:
        y = np.eye(n)[rng.integers(0, n, B)].astype(dtype)
    else:
        y = rng.uniform(0.05, 0.95, (B, n)).astype(dtype)
    return params, x, y


def batch_of(spec, rng) -> int:
    return 1 if spec.batch == "single" else int(rng.integers(2, 4))


# ---------------------------------------------------------------------------
# oracle 1: SymPy, exact
# ---------------------------------------------------------------------------

def sympy_gradients(spec, params, x, y):
    """dC/dθ for every parameter entry: sympy.diff of the cost composed from the definitions."""
    B, L, n = x.shape[0], spec.depth, spec.sizes
    P = {k: sp.Matrix(*shape, lambda i, j, k=k: sp.Symbol(f"{k}_{i}_{j}")) for k, shape in param_shapes(spec)}
    X = sp.Matrix(B, n[0], lambda e, k: sp.Symbol(f"x_{e}_{k}"))
    Yv = sp.Matrix(B, n[L], lambda e, j: sp.Symbol(f"y_{e}_{j}"))
    total = 0
    for e in range(B):
        a = list(X.row(e))
        for l in range(1, L + 1):
            W, act = P[f"W{l}"], ACTIVATIONS[spec.activation[l - 1]]
            inputs = a + [1] if spec.bias == "augmented" else a
            zs = []
            for j in range(n[l]):
                z = sum((W[k, j] if spec.convention == "row" else W[j, k]) * inputs[k] for k in range(len(inputs)))
                if spec.bias == "separate":
                    b = P[f"b{l}"]
                    z += b[0, j] if spec.convention == "row" else b[j, 0]
                zs.append(z)
            a = [act.definition(zs[j]) if act.elementwise else _softmax_def(j, zs) for j in range(n[l])]
        total += COSTS[spec.cost].definition(a, list(Yv.row(e)))
    C = total / B if spec.batch == "mean" else total
    keys = [k for k, _ in param_shapes(spec)]
    symbols = [s for k in keys for s in P[k]]
    f = sp.lambdify([symbols, list(X), list(Yv)], [sp.diff(C, s) for s in symbols], "numpy", cse=True)
    flat = f([v for k in keys for v in params[k].ravel()], list(x.ravel()), list(y.ravel()))
    out, i = {}, 0
    for k in keys:
        size = params[k].size
        out[k] = np.array(flat[i : i + size], dtype=float).reshape(params[k].shape)
        i += size
    return out


# ---------------------------------------------------------------------------
# oracle 3: autograd on the same math written plainly (one line per table entry)
# ---------------------------------------------------------------------------

def _softmax_plain(z):
    e = anp.exp(z - anp.max(z, axis=1, keepdims=True))
    return e / anp.sum(e, axis=1, keepdims=True)


PLAIN_ACTIVATIONS = {
    "sigmoid":    lambda z: 1 / (1 + anp.exp(-z)),
    "tanh":       lambda z: anp.tanh(z),
    "relu":       lambda z: anp.maximum(z, 0.0),
    "leaky_relu": lambda z: anp.maximum(z, z / 100),
    "softplus":   lambda z: anp.logaddexp(0.0, z),
    "identity":   lambda z: z,
    "softmax":    _softmax_plain,
}
PLAIN_COSTS = {
    "quadratic":      lambda a, y: 0.5 * anp.sum((a - y) ** 2),
    "cross_entropy":  lambda a, y: -anp.sum(y * anp.log(a) + (1 - y) * anp.log(1 - a)),
    "log_likelihood": lambda a, y: -anp.sum(y * anp.log(a)),
}


def plain_cost(params, x, y, spec):
    a = x
    for l in range(1, spec.depth + 1):
        if spec.bias == "augmented":
            a = anp.concatenate([a, anp.ones((a.shape[0], 1))], axis=1)
        W = params[f"W{l}"]
        z = anp.dot(a, W) if spec.convention == "row" else anp.dot(a, W.T)
        if spec.bias == "separate":
            b = params[f"b{l}"]
            z = z + (b if spec.convention == "row" else b.T)
        a = PLAIN_ACTIVATIONS[spec.activation[l - 1]](z)
    C = PLAIN_COSTS[spec.cost](a, y)
    return C / x.shape[0] if spec.batch == "mean" else C


def autograd_gradients(spec, params, x, y):
    return autograd.grad(plain_cost)(params, x, y, spec)


# ---------------------------------------------------------------------------
# oracle 2: central finite differences of the module's cost
# ---------------------------------------------------------------------------

def fd_gradients(module, params, x, y, entries=None, through_cache=False):
    """Central differences of the module's own cost; through_cache: the cost given the forward's cache
    (a layer list's module takes its logs through z there, exactly)."""
    def C(p):
        out, cache = module.forward(p, x)
        return module.cost(out, y, cache) if through_cache else module.cost(out, y)

    grads = {}
    for k, v in params.items():
        g = np.full(v.shape, np.nan)
        idx = list(np.ndindex(v.shape)) if entries is None else entries[k]
        for i in idx:
            h = 1e-6 * max(1.0, abs(v[i]))
            p = {kk: vv.copy() for kk, vv in params.items()}
            p[k][i] = v[i] + h
            up = C(p)
            p[k][i] = v[i] - h
            g[i] = (up - C(p)) / (2 * h)
        grads[k] = g
    return grads


def assert_gradients(got, want, rtol, atol, what):
    assert set(got) == set(want), (sorted(got), sorted(want))
    for k in want:
        mask = ~np.isnan(want[k])
        np.testing.assert_allclose(got[k][mask], want[k][mask], rtol=rtol, atol=atol, err_msg=f"{what}: {k}")


def three_oracles(module, spec, params, x, y, fd_entries=None):
    out, cache = module.forward(params, x)
    grads = module.backward(params, cache, y)
    for k, v in grads.items():
        assert v.shape == params[k].shape and v.dtype == params[k].dtype, k
    assert_gradients(grads, sympy_gradients(spec, params, x, y), 1e-10, 1e-13, "sympy")
    assert_gradients(grads, fd_gradients(module, params, x, y, fd_entries), 1e-5, 1e-8, "finite differences")
    assert_gradients(grads, autograd_gradients(spec, params, x, y), 1e-10, 1e-13, "autograd")
    return grads


# ---------------------------------------------------------------------------
# a PyTorch or JAX module seen through NumPy arrays, so the oracles above check it as they check NumPy's
# ---------------------------------------------------------------------------

class ThroughNumPy:
    """forward, backward and cost of `module` taking and returning NumPy arrays: `to_array` makes the module's
    array of a NumPy one, np.asarray (after `to_host`) reads one back."""

    def __init__(self, module, to_array, to_host=lambda a: a):
        self.module, self.to_array, self.to_host = module, to_array, to_host

    def _numpy(self, values: dict) -> dict:
        return {k: np.asarray(self.to_host(v)) for k, v in values.items()}

    def _arrays(self, values: dict) -> dict:
        return {k: self.to_array(v) for k, v in values.items()}

    def forward(self, params, x):
        out, cache = self.module.forward(self._arrays(params), self.to_array(x))
        return np.asarray(self.to_host(out)), self._numpy(cache)

    def backward(self, params, cache, y):
        return self._numpy(self.module.backward(self._arrays(params), self._arrays(cache), self.to_array(y)))

    def cost(self, output, y, cache=None):
        cache = None if cache is None else self._arrays(cache)
        return float(self.module.cost(self.to_array(output), self.to_array(y), cache))


# ---------------------------------------------------------------------------
# convolution, pooling, attention and recurrence written plainly, for oracles 1 and 3 of layer lists
# ---------------------------------------------------------------------------
#
# Each is the textbook forward pass on a batch of shaped examples, written without derive.tables
# (no index maps, no im2col): a convolution sums the kernel's offsets over shifted slices of the
# zero-padded input, pooling takes the max or mean of those slices, attention is softmax(Q Kᵀ/√d_k) V
# per example, a recurrent layer loops over its steps. `lib` gives the elementwise functions of the
# array library (SymEngine objects or autograd), `activate(name, z)` the activations, `own` the
# layer's parameters as the equations read them (rows × features: x W).

def _padded(lib, x, pad):
    """x (B, C, *spatial) with `pad` zeros on both sides of each spatial axis."""
    for axis, p in enumerate(pad, start=2):
        if p:
            shape = list(x.shape)
            shape[axis] = p
            zeros = lib.zeros(tuple(shape))
            x = lib.concatenate([zeros, x, zeros], axis=axis)
    return x


def _offsets(x, kernel, stride, out):
    """For each offset of the kernel (row-major), the slice of x (B, C, *spatial) it meets at every output position."""
    from itertools import product
    for offs in product(*(range(k) for k in kernel)):
        index = (slice(None), slice(None)) + tuple(slice(o, o + s * (n - 1) + 1, s) for o, s, n in zip(offs, stride, out))
        yield offs, x[index]


def plain_spatial(block, own, a, lib, activate):
    """The output of one shaped layer (conv, pooling, flatten, attention, rnn) on a batch a (B, features)."""
    B = a.shape[0]
    if block.kind in ("conv2d", "conv1d"):
        C, spatial = block.shape_in[0], block.shape_in[1:]
        out = block.shape[1:]
        x = _padded(lib, a.reshape((B, C) + spatial), block.padding)
        W = own["W"].T.reshape((block.out_channels, C) + block.kernel_size)  # torch's (O, C, *kernel)
        z = 0
        for offs, piece in _offsets(x, block.kernel_size, block.stride, out):
            w = W[(slice(None), slice(None)) + offs]  # (O, C)
            z = z + (piece[:, None] * w[(None, slice(None), slice(None)) + (None,) * len(out)]).sum(axis=2)
        if "b" in own:
            z = z + own["b"].reshape((1, block.out_channels) + (1,) * len(out))
        return activate(block.activation, z).reshape((B, -1))
    if block.kind in ("maxpool2d", "avgpool2d"):
        C, spatial = block.shape_in[0], block.shape_in[1:]
        pieces = [p for _, p in _offsets(a.reshape((B, C) + spatial), block.kernel_size, block.stride, block.shape[1:])]
        y = lib.window_max(pieces) if block.kind == "maxpool2d" else sum(pieces[1:], pieces[0]) / len(pieces)
        return y.reshape((B, -1))
    if block.kind == "flatten":
        return a
    if block.kind == "attention":
        T, d = block.shape_in
        dk = block.head_dim or d
        x = a.reshape((B, T, d))
        q, k, v = (lib.matmul(x, own[w]) for w in ("Wq", "Wk", "Wv"))
        s = lib.matmul(q, lib.swapaxes(k, 1, 2)) / lib.root(dk)
        keep = np.tril(np.ones((T, T))) if block.causal else np.ones((T, T))
        e = lib.exp(s) * keep  # a causal mask leaves j > i out of each row's softmax
        p = e / e.sum(axis=2, keepdims=True)
        o = lib.matmul(p, v)
        return (lib.matmul(o, own["Wo"]) if block.out_proj else o).reshape((B, -1))
    assert block.kind == "rnn", block.kind
    T, d = block.shape_in
    h, hs = None, []
    for t in range(T):
        z = lib.matmul(a[:, t * d:(t + 1) * d], own["Wxh"])
        if h is not None:
            z = z + lib.matmul(h, own["Whh"])
        if "b" in own:
            z = z + own["b"]
        h = activate(block.nonlinearity, z)
        hs.append(h)
    return lib.concatenate(hs, axis=1) if block.output == "all" else h
