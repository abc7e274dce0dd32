"""Associative recall: one block of self-attention, generated from its proven forms, learns to look a key up.

    python examples/attention_task.py [--epochs 10] [--batch 16] [--eta 0.5] [--train 4000] [--test 1000]
                                      [--seed 0] [--without-attention]

The task: each sequence holds 6 (key, value) pairs, the keys distinct, drawn from 8, the values
drawn from 8, then a query naming one of the 6 keys; the answer is the value stored with that
key (one of 8 classes, chance 12.5 %). Position t is a row of 24 features: the key's one-hot (8),
the value's one-hot (8) and the query's one-hot (8, on the last row only), so a sequence is
[7, 24], flat in T, d order as the module reads it.

Why it needs attention: which row holds the answer depends on the query, a product of two inputs
that no weighted sum of the inputs can form. The query row's attention can: its Q (from the query
features) meets every row's K (from the key features), the matching row wins the softmax, and its
V (the value features) is read out. examples/attention_task.toml is that block (head_dim 8), a
flatten and a softmax layer; --without-attention trains the same flatten and softmax layer on the
same sequences without it, the baseline (it learns to guess a value that occurs often in the
sequence, no more).

The spec is proven layer by layer, printed into a NumPy module (codegen/layer_module.py), imported
and trained with mini-batch SGD, the rate annealed linearly (codegen.train.train). The held-out
sequences are drawn after the training ones, from the same seed, and none of them occurs among the
training sequences. Exit codes as `python -m codegen.train`: 0 trained, 2 bad input or a run that
diverged, 3 an internal error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from derive.arguments import Parser, whole  # noqa: E402
from derive.errors import DeriveError, guarded  # noqa: E402
from derive.spec import load_spec, validate  # noqa: E402

SPEC = ROOT / "examples" / "attention_task.toml"
KEYS, VALUES, PAIRS = 8, 8, 6
T, D = PAIRS + 1, 2 * KEYS + VALUES  # the pairs and the query; key, value and query one-hots


def sequences(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n sequences, flat (n, T·D) in T, d order, and their answers as one-hot rows (n, VALUES)."""
    keys = np.argsort(rng.random((n, KEYS)), axis=1)[:, :PAIRS]  # PAIRS distinct keys per sequence
    values = rng.integers(0, VALUES, (n, PAIRS))
    asked = rng.integers(0, PAIRS, n)
    x = np.zeros((n, T, D))
    rows, pairs = np.arange(n)[:, None], np.arange(PAIRS)[None, :]
    x[rows, pairs, keys] = 1
    x[rows, pairs, KEYS + values] = 1
    x[np.arange(n), PAIRS, 2 * KEYS + keys[np.arange(n), asked]] = 1
    answers = values[np.arange(n), asked]
    return x.reshape(n, T * D), np.eye(VALUES)[answers]


def task_data(n_train: int, n_test: int, seed: int):
    """(x_train, x_test, y_train, y_test) as codegen.train.train takes them; no held-out sequence is a training one."""
    rng = np.random.default_rng(seed)
    x_train, y_train = sequences(n_train, rng)
    seen = {row.tobytes() for row in x_train.astype(np.int8)}
    x_test, y_test = sequences(2 * n_test, rng)
    fresh = np.array([row.tobytes() not in seen for row in x_test.astype(np.int8)])
    x_test, y_test = x_test[fresh][:n_test], y_test[fresh][:n_test]
    if len(x_test) < n_test:  # 6 of 8 keys in order and 8^6 value choices: a repeat is rare, so is this
        raise DeriveError(f"only {len(x_test)} of {2 * n_test} drawn held-out sequences are new; give a smaller --train")
    return x_train, x_test, y_train, y_test


def task_spec(attention: bool = True):
    """examples/attention_task.toml, or the same layers without the attention block (the baseline)."""
    spec = load_spec(str(SPEC))
    if spec.shape != (T, D) or spec.sizes[-1] != VALUES:
        raise DeriveError(f"{SPEC.name}: inputs {list(spec.shape)} and {spec.sizes[-1]} outputs do not fit the task: "
                          f"give inputs = [{T}, {D}] and a last layer of width {VALUES}")
    if attention:
        return spec
    table = spec.as_dict()
    table["name"] += "_without_attention"
    table["layers"] = [layer for layer in table["layers"] if layer["kind"] != "attention"]
    return validate(table, f"{SPEC.name} without its attention layer")


def parser() -> Parser:
    p = Parser(prog="python examples/attention_task.py", description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=whole(1, 10**4), default=10)
    p.add_argument("--batch", type=whole(1, 10**5), default=16, help="mini-batch size (default 16)")
    p.add_argument("--eta", type=_rate, default=0.5, help="learning rate, annealed linearly to eta/epochs (default 0.5)")
    p.add_argument("--train", type=whole(1, 10**6), default=4000, help="training sequences (default 4000)")
    p.add_argument("--test", type=whole(1, 10**5), default=1000, help="held-out sequences (default 1000)")
    p.add_argument("--seed", type=whole(0, 2**32 - 1), default=0, help="seed of the sequences, the weights and the batches")
    p.add_argument("--without-attention", action="store_true", help="the baseline: the same layers without attention")
    return p


def _rate(text: str) -> float:
    from codegen.train import _rate as rate

    return rate(text)


def run(argv=None) -> int:
    from rich.console import Console

    from codegen.train import fit, report

    args = parser().parse_args(argv)
    spec = task_spec(not args.without_attention)
    data = task_data(args.train, args.test, args.seed)
    console = Console()
    history, seconds = fit(spec, data, args.epochs, args.batch, args.eta, args.seed, True, console, "sequences")
    report(console, history, args.epochs, len(data[1]), seconds, "sequences")
    return 0


def main(argv=None) -> int:
    return guarded(run, argv)


if __name__ == "__main__":
    sys.exit(main())
