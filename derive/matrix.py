"""The matrix forms of backpropagation, as SymPy matrix expressions with concrete values.

Each form is an abstract equation over MatrixSymbols (printable to LaTeX and to NumPy)
and its concrete value, the same expression with every symbol replaced by the explicit
matrix of the network's atoms. The proof compares these values entry by entry with
the chain rule; code generation prints the abstract expressions.

Orientation, once: in the column convention vectors are columns and a batch of B
examples sits side by side (n_l x B); in the row convention they are rows and the
batch is stacked (B x n_l). delta^{(l)} follows the convention, except in the
diagonal-matrix (D) forms, which are written for one example with delta as a column,
as in the 2-2-2 note and Nielsen's exercise. `w{l}` is always the non-bias weights
indexed [j, k]; `W{l}` is the parameter matrix in the spec's own layout.
"""

from __future__ import annotations

from dataclasses import dataclass
import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix

from derive.network import Network, Param


@dataclass(frozen=True)
class Form:
    """One matrix equation: lhs = expr, and what its entries must equal."""

    key: str  # "BP1", "BP2[1]", "dC/dW2", ...
    label: str  # human name
    lhs: MatrixSymbol
    expr: sp.MatrixExpr
    truth: str  # "delta", "delta_col", "grad", "gradT", "update"
    layer: int
    matrix: str | None = None  # "W2" / "b2" for grad forms
    example: int = 0  # the example a single-example (D) form is about


class MatrixForms:
    def __init__(self, net: Network, evaluate: bool = True):
        """evaluate=False keeps only the abstract forms (derive.proofs.scalable evaluates them in SymEngine)."""
        self.net = net
        self.evaluate = evaluate
        self.row = net.spec.convention == "row"
        self.gamma = sp.Symbol("gamma")
        self.sym: dict[str, MatrixSymbol] = {}
        self.values: dict[MatrixSymbol, sp.Matrix] = {}
        self._base()
        self.forms: list[Form] = []
        self.evaluated: dict[str, sp.Matrix] = {}  # the concrete value of every form
        self._build()
        self.forward: list[Form] = []  # z{l}: the forward pass, which code generation prints
        self._forward()

    # -- helpers -----------------------------------------------------------
    def _ms(self, name: str, rows: int, cols: int, value: sp.Matrix | None = None) -> MatrixSymbol:
        s = MatrixSymbol(name, rows, cols)
        self.sym[name] = s
        if value is not None:
            assert value.shape == (rows, cols), (name, value.shape, (rows, cols))
            self.values[s] = value
        return s

    def _batch(self, n: int, entry) -> sp.Matrix:
        """An n-neuron quantity over the batch, oriented by the convention."""
        B = self.net.E
        if self.row:
            return sp.Matrix(B, n, lambda e, j: entry(e, j))
        return sp.Matrix(n, B, lambda j, e: entry(e, j))

    def _shape(self, n: int) -> tuple[int, int]:
        return (self.net.E, n) if self.row else (n, self.net.E)

    def _base(self) -> None:
        net, row = self.net, self.row
        n, L, B = net.sizes, net.L, net.E
        aug = net.spec.bias == "augmented"
        for l in range(L + 1):
            self._ms(f"a{l}", *self._shape(n[l]), self._batch(n[l], lambda e, j, l=l: net.a[e][l][j]))
            if aug:
                A = self._batch(n[l] + 1, lambda e, j, l=l: net.a[e][l][j] if j < n[l] else sp.Integer(1))
                self._ms(f"A{l}", *A.shape, A)
            else:
                self.sym[f"A{l}"] = self.sym[f"a{l}"]
        convention = net.spec.convention
        for l in range(1, L + 1):
            layer = net.layers[l]
            shapes = dict(layer.params(n[l - 1], n[l], convention, net.spec.bias))
            W = sp.zeros(*shapes["W"])
            for (j, k), s in net.w[l].items():
                W[layer.weight_index(j, k, convention)] = s
            self._ms(f"W{l}", *W.shape, W)
            w = sp.Matrix(n[l], n[l - 1], lambda j, k: net.w[l][j, k])
            self._ms(f"w{l}", *w.shape, w)
            if "b" in shapes:
                bvec = sp.Matrix(*shapes["b"], net.b[l])
                self._ms(f"b{l}", *bvec.shape, bvec)
            if net.acts[l].elementwise:
                self._ms(f"sp{l}", *self._shape(n[l]), self._batch(n[l], lambda e, j, l=l: net.sigma_prime[e][l][j]))
            for e in range(B):
                if net.acts[l].elementwise:
                    self._ms(f"D{l}{self._ex(e)}", n[l], n[l], sp.diag(*net.sigma_prime[e][l]))
                else:
                    J = sp.Matrix(n[l], n[l], lambda m, j, e=e: net.da_dz(e, l, m, j))
                    self._ms(f"J{l}{self._ex(e)}", n[l], n[l], J)
        # the gradient of one example's cost with respect to its outputs
        grad = self._batch(n[L], lambda e, j: sp.diff(net.cost_example[e], net.a[e][L][j]))
        self._ms("g", *grad.shape, grad)
        for e in range(B):
            self._ms(f"g_col{self._ex(e)}", n[L], 1, (grad.T if row else grad)[:, e])
        self._ms("ones_B", B, 1, sp.ones(B, 1))

    def _ex(self, e: int) -> str:
        """The suffix of a one-example symbol: none for a single example."""
        return "" if self.net.E == 1 else f"_e{e}"

    # -- the forms -----------------------------------------------------------
    def delta(self, l: int) -> MatrixSymbol:
        return self.sym[f"delta{l}"]

    def _add(self, form: Form) -> None:
        """Keep the form and its concrete value; the first form for a symbol defines it."""
        self.forms.append(form)
        if not self.evaluate:
            return
        value = sp.Matrix(form.expr.xreplace(self.values).doit())
        self.evaluated[form.key] = value
        if form.lhs not in self.values:
            self.values[form.lhs] = value

    def _build(self) -> None:
        net, row, S, convention = self.net, self.row, self.sym, self.net.spec.convention
        n, L, B = net.sizes, net.L, net.E
        scale = net.scale
        for l in range(1, L + 1):
            self._ms(f"delta{l}", *self._shape(n[l]))
        # BP1
        g = S["g"]
        if net.acts[L].elementwise:
            bp1 = HadamardProduct(g, S[f"sp{L}"])
        else:
            a = S[f"a{L}"]
            ag = HadamardProduct(a, g)
            ones = OneMatrix(n[L], n[L])
            # built unevaluated: at width 1 SymPy's `*` drops the 1x1 ones as an identity and merges
            # a ∘ (a ∘ g) into a∘2 ∘ g, a form the printers of the report and the document do not read
            spread = MatMul(ag, ones) if row else MatMul(ones, ag)
            bp1 = MatAdd(MatMul(-1, HadamardProduct(spread, a)), ag)
        self._add(Form("BP1", "output error", self.delta(L), bp1, "delta", L))
        # BP2
        for l in range(L - 1, 0, -1):
            back = net.layers[l + 1].back(S[f"w{l + 1}"], self.delta(l + 1), convention)
            self._add(Form(f"BP2[{l}]", "error of a hidden layer", self.delta(l),
                           HadamardProduct(back, S[f"sp{l}"]), "delta", l))
        # BP3, BP4 in the spec's own layout
        for l in range(1, L + 1):
            d, A, layer = self.delta(l), S[f"A{l - 1}"], net.layers[l]
            dW = scale * layer.grad_weights(A, d, convention)
            self._add(Form(f"dC/dW{l}", "change matrix", self._ms(f"dC_dW{l}", *S[f"W{l}"].shape), dW, "grad", l, f"W{l}"))
            if f"b{l}" in S:
                db = scale * layer.grad_bias(d, S["ones_B"], convention)
                self._add(Form(f"dC/db{l}", "bias gradient", self._ms(f"dC_db{l}", *S[f"b{l}"].shape), db, "grad", l, f"b{l}"))
        for e in range(B):
            self._single_example_forms(e)
        # the update
        for l in range(1, L + 1):
            for M in (f"W{l}", f"b{l}"):
                if M in S and f"dC_d{M}" in S:
                    upd = S[M] - self.gamma * S[f"dC_d{M}"]
                    self._add(Form(f"update {M}", "gradient-descent step", self._ms(f"{M}_new", *S[M].shape), upd, "update", l, M))

    def _single_example_forms(self, e: int) -> None:
        """delta of example e as a column, with D = diag(sigma'): the 2-2-2 note and Nielsen's exercise."""
        net, row, S = self.net, self.row, self.sym
        n, L, x = net.sizes, net.L, self._ex(e)
        tag = "" if net.E == 1 else f", example {e}"
        col = {l: self._ms(f"deltac{l}{x}", n[l], 1) for l in range(1, L + 1)}

        def D(m):
            return S[f"D{m}{x}"] if net.acts[m].elementwise else S[f"J{m}{x}"].T

        self._add(Form(f"BP1 (D){tag}", "output error, diagonal form" if net.acts[L].elementwise
                       else "output error, full Jacobian", col[L], D(L) * S[f"g_col{x}"], "delta_col", L, example=e))
        for l in range(L - 1, 0, -1):
            back = net.layers[l + 1].back_column(S[f"w{l + 1}"])
            self._add(Form(f"BP2[{l}] (D){tag}", "hidden error, diagonal form", col[l],
                           D(l) * back * col[l + 1], "delta_col", l, example=e))
            # the unrolled product D^l (w^{l+1})^T ... D^L grad C
            prod = [D(l)]
            for m in range(l + 1, L + 1):
                prod += [net.layers[m].back_column(S[f"w{m}"]), D(m)]
            prod.append(S[f"g_col{x}"])
            self._add(Form(f"BP2[{l}] (unrolled){tag}", "hidden error, unrolled product", col[l],
                           sp.MatMul(*prod), "delta_col", l, example=e))
        if row and net.E == 1:
            for l in range(1, L + 1):
                T = self._ms(f"dC_dW{l}_T", n[l], S[f"A{l - 1}"].shape[1])
                self._add(Form(f"dC/dW{l} (transposed)", "transposed change matrix", T,
                               net.layers[l].change_transposed(col[l], S[f"A{l - 1}"]), "gradT", l, f"W{l}"))

    def _forward(self) -> None:
        """z{l} = W{l} A{l-1} (+ b{l} 1ᵀ), or A{l-1} W{l} (+ 1 b{l}) in the row convention."""
        S, n, net = self.sym, self.net.sizes, self.net
        for l in range(1, net.L + 1):
            z = net.layers[l].forward(S[f"W{l}"], S[f"A{l - 1}"], S.get(f"b{l}"), S["ones_B"], net.spec.convention)
            form = Form(f"z{l}", "pre-activation", self._ms(f"z{l}", *self._shape(n[l])), z, "z", l)
            self.forward.append(form)
            if self.evaluate:
                self.evaluated[form.key] = sp.Matrix(z.xreplace(self.values).doit())

    def example_neuron(self, form: Form, r: int, c: int) -> tuple[int, int]:
        """(example, neuron) of entry (r, c) of a delta or z form: examples are the rows in the row convention."""
        if form.truth == "delta_col":
            return form.example, r
        return (r, c) if self.row else (c, r)

    def param_of(self, form: Form, r: int, c: int) -> Param:
        """The parameter entry (r, c) of a gradient or update form is about (a transposed form reads [c, r])."""
        return self.net.param_at[form.matrix, (c, r) if form.truth == "gradT" else (r, c)]

    def form(self, key: str) -> Form:
        for f in self.forward + self.forms:
            if f.key == key:
                return f
        raise KeyError(key)
