"""Train a generated module on real handwritten digits: `python -m codegen.train`.

The digits are scikit-learn's 8x8 images (1797 of them, shipped inside the package: no
download). The network is a spec like any other, 64-32-10 with a sigmoid hidden layer, a
softmax output and the log-likelihood cost averaged over each mini-batch; its NumPy module
is generated from the proven forms into a temporary folder and imported, then trained with
mini-batch SGD (`sgd_step`). A quarter of the digits is held out and only scored.
--spec takes a layer list too (examples/digits_bn.toml: batch norm and a residual
block): its module keeps running averages of the batch statistics while it trains, and the
held-out digits are scored with them (forward(..., training=False)), as PyTorch's eval mode.
A layer list may take the digits as an image, `inputs = [1, 8, 8]` (examples/digits_cnn.toml: two
convolution and max-pooling blocks), or as a sequence of 8 rows of 8 pixels, `inputs = [8, 8]`: the
module reads each digit's 64 pixels flat in C, H, W order, which is scikit-learn's row-major order.

    python -m codegen.train [--epochs N] [--batch B] [--eta ETA] [--hidden H] [--spec FILE]
                            [--seed S] [--plot curve.png] [--anneal] [--threads N]

Exit codes: 0 trained, 2 bad input (a spec whose sizes do not fit the digits, a missing
optional package, a --plot path that cannot be written) or training that diverged (the
weights or activations overflowed: a smaller --eta is the usual cure), 3 an unexpected
internal error (BACKPROP_DERIVE_DEBUG=1 shows its traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from derive.arguments import Parser, whole
from derive.errors import DeriveError, brief, decimal, guarded, shown
from derive.files import check_writable, write_atomically
from derive.spec import LayeredSpec, Spec, load_spec, validate

from .layer_module import load_layers
from .render import load_generated

INPUTS, CLASSES = 64, 10
# the shapes a spec may read the 64 pixels in (flat, C, H, W order): flat, one 8x8 channel, 8 rows of 8
SHAPES = ((INPUTS,), (1, 8, 8), (8, 8))


def digits_spec(hidden: int) -> Spec:
    return validate(dict(
        name="digits",
        description="scikit-learn's 8x8 digits: 64 pixels, one hidden layer, ten classes",
        sizes=[INPUTS, hidden, CLASSES],
        activation=["sigmoid", "softmax"],
        cost="log_likelihood",
        convention="column",
        bias="separate",
        batch="mean",
        notation="nielsen",
    ), "codegen/train.py")


def load_digits(seed: int):
    """Pixels scaled to [0, 1], one-hot targets, a stratified 75/25 split."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    data = sk_digits()
    x = (data.data / 16.0).astype(np.float64)
    y = np.eye(CLASSES)[data.target]
    return train_test_split(x, y, test_size=0.25, random_state=seed, stratify=data.target)


def accuracy(module, params, x, y, state=None) -> float:
    """The share of digits classified right; a module with batch statistics scores with its running averages."""
    out, _ = module.forward(params, x, state, training=False) if state is not None else module.forward(params, x)
    return float((out.argmax(axis=1) == y.argmax(axis=1)).mean())


def train_step(module, params, x, y, eta: float, state=None) -> None:
    """One mini-batch: forward (updating the running averages, where the module keeps any), backward, sgd_step."""
    out, cache = module.forward(params, x, state) if state is not None else module.forward(params, x)
    module.sgd_step(params, module.backward(params, cache, y), eta)


class Diverged(DeriveError):
    """Training left the floating-point range: a property of the run (the step size), not a bug."""


# the generated module refuses a value that is not finite with a ValueError saying so (its template:
# "contains NaN or inf", "overflowed to inf", "overflow to inf"); the digits are finite, so the run diverged
_NOT_FINITE = ("NaN or inf", "overflow")


def _diverged(epoch: int, epochs: int, eta: float, why: str) -> Diverged:
    return Diverged(f"training diverged at epoch {epoch} of {epochs} with --eta {eta:g} ({why}); "
                    f"try a smaller --eta, such as {eta / 10:g}")


def train(module, params, data, epochs: int, batch: int, eta: float, seed: int, progress=None, state=None,
          anneal: bool = False):
    """Mini-batch SGD; returns one (epoch, training cost, test accuracy) per epoch; Diverged if it overflows.

    state: the running averages of a module with batch statistics (its init_state()), updated as it trains;
    then a last batch smaller than `batch` is left out of each epoch (PyTorch's drop_last), whose statistics
    would be the noisiest. anneal: the rate falls linearly from eta to eta/epochs over the epochs."""
    x_train, x_test, y_train, y_test = data
    rng = np.random.default_rng(seed)
    history = []
    task = progress.add_task("training", total=epochs) if progress else None
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        rate = eta * (1 - (epoch - 1) / epochs) if anneal else eta
        end = len(order) - (len(order) % batch if state is not None and len(order) >= batch else 0)
        try:
            with np.errstate(all="ignore"):  # the module checks its values itself: no warning lines
                for start in range(0, end, batch):
                    rows = order[start : start + batch]
                    train_step(module, params, x_train[rows], y_train[rows], rate, state)
                out, cache = module.forward(params, x_train)
                cost = module.cost(out, y_train, cache)
                acc = accuracy(module, params, x_test, y_test, state)
        except (ValueError, FloatingPointError) as exc:
            if not any(text in str(exc) for text in _NOT_FINITE):
                raise
            raise _diverged(epoch, epochs, eta, "the weights or activations overflowed") from None
        if not np.isfinite(cost):
            raise _diverged(epoch, epochs, eta, f"the cost is {cost}")
        history.append((epoch, cost, acc))
        if progress:
            progress.update(task, advance=1, description=f"epoch {epoch}: cost {cost:.4f}, test accuracy {acc:.1%}")
    return history


def plot(history, path: Path, name: str = "digits") -> None:
    """The learning curve as a PNG, written whole or not at all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h[0] for h in history]
    fig, left = plt.subplots(figsize=(6, 3.6))
    left.plot(epochs, [h[1] for h in history], color="tab:blue")
    left.set_xlabel("epoch")
    left.set_ylabel("training cost (log-likelihood)", color="tab:blue")
    right = left.twinx()
    right.plot(epochs, [100 * h[2] for h in history], color="tab:orange")
    right.set_ylabel("held-out accuracy (%)", color="tab:orange")
    left.set_title(f"generated {name}_numpy: mini-batch SGD on the 8x8 digits")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, dpi=120, format="png")
    plt.close(fig)
    write_atomically(path, png.getvalue(), "--plot")


def _rate(text: str) -> float:
    """A learning rate: a finite positive number in ASCII digits (float() reads '٣' as 3)."""
    value = decimal(text)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"{brief(text, 24)} is not a finite positive number, such as 0.5")
    return value


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m codegen.train", description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=whole(1, 10**6), default=30)
    p.add_argument("--batch", type=whole(1, 10**6), default=16, help="mini-batch size (default 16)")
    p.add_argument("--eta", type=_rate, default=0.5, help="learning rate (default 0.5)")
    p.add_argument("--anneal", action="store_true", help="let the rate fall linearly from --eta to --eta/epochs")
    p.add_argument("--hidden", type=whole(1, 4096), default=32, help="hidden width of the built-in digits spec (default 32)")
    p.add_argument("--spec", help=f"a spec of your own instead: sizes {INPUTS}-...-{CLASSES}")
    p.add_argument("--seed", type=whole(0, 2**32 - 1), default=0, help="seed of the split, the initial weights and the batches")
    p.add_argument("--plot", type=Path, help="save the learning curve (PNG) here; needs matplotlib")
    p.add_argument("--threads", type=whole(1, 1024), default=1,
                   help="BLAS threads while training (default 1: a mini-batch's products are small)")
    return p


def fit(spec, data, epochs: int, batch: int, eta: float, seed: int, anneal: bool, console, what: str = "digits",
        threads: int = 1):
    """Generate the spec's NumPy module into a temporary folder, import it and train it with a progress bar.

    Returns the history (one (epoch, training cost, test accuracy) per epoch) and the training's wall seconds
    (the proof and the printing of the module left out). threads: BLAS threads while training; a mini-batch's
    products are small, and OpenBLAS's threads, waiting on each other, made a convolution's 256x144 by 144x32
    product 12 ms instead of 50 µs on a busy 2-core machine."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    layered = isinstance(spec, LayeredSpec)
    kinds = [b.kind for b in spec.blocks] if layered else spec.activation
    shape = "x".join(map(str, spec.shape)) if layered else str(spec.sizes[0])
    console.print(f"{spec.name}: inputs {shape}, {'-'.join(map(str, spec.sizes[1:]))}, "
                  f"{', '.join(dict.fromkeys(kinds))}, {spec.cost}; "
                  f"{len(data[0])} training and {len(data[1])} held-out {what}; batch {batch}, eta {eta}"
                  f"{' annealed' if anneal else ''}, seed {seed}")
    with tempfile.TemporaryDirectory(prefix="codegen_train_") as folder:
        module = (load_layers if layered else load_generated)(spec, Path(folder))
        params = module.init_params(seed)
        state = (module.init_state() or None) if layered else None  # None: no batch statistics to keep
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        start = time.perf_counter()
        with Progress(*columns, console=console, transient=False) as progress, blas_threads(threads):
            history = train(module, params, data, epochs, batch, eta, seed, progress, state, anneal)
    return history, time.perf_counter() - start


def blas_threads(n: int):
    """A context that runs BLAS on n threads: threadpoolctl's (scikit-learn's own dependency), or none without it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(n, "blas")


def report(console, history, epochs: int, held_out: int, seconds: float, what: str) -> None:
    """The last epoch's held-out accuracy, as a share and a count, and the training's time."""
    final = history[-1][2]
    console.print(f"held-out accuracy after {epochs} epoch{'s' if epochs != 1 else ''}: {final:.2%} "
                  f"({round(final * held_out)} of {held_out} {what}); training took {seconds:.1f} s")


def main(argv=None) -> int:
    return guarded(run, argv)


def run(argv=None) -> int:
    args = parser().parse_args(argv)
    # bad input is found before any training
    spec = load_spec(args.spec) if args.spec else digits_spec(args.hidden)
    if spec.sizes[0] != INPUTS or spec.sizes[-1] != CLASSES or spec.batch == "single":
        raise DeriveError(f"{spec.source}: sizes {'-'.join(map(str, spec.sizes))} and batch '{spec.batch}' do not fit "
                          f"the digits: the sizes must run {INPUTS}-...-{CLASSES} and the batch be 'mean' or 'sum'")
    if isinstance(spec, LayeredSpec) and spec.shape not in SHAPES:
        raise DeriveError(f"{spec.source}: inputs {list(spec.shape)} do not fit the digits: give {INPUTS} (flat), "
                          f"[1, 8, 8] (one channel of 8x8 pixels) or [8, 8] (8 rows of 8 pixels)")
    if args.plot:  # checked before the digits load and training starts: a bad path costs nothing
        check_writable(args.plot, "--plot")  # a folder, or a file that cannot be written, first: the name's own fault
        if args.plot.suffix.lower() != ".png":
            raise DeriveError(f"--plot {shown(str(args.plot))}: the learning curve is a PNG; give a name ending in .png")
        if importlib.util.find_spec("matplotlib") is None:
            raise DeriveError("--plot needs matplotlib: pip install '.[demo]'")
    try:
        data = load_digits(args.seed)
    except ImportError:
        raise DeriveError("scikit-learn is needed for the digits: pip install '.[demo]'") from None

    from rich.console import Console

    console = Console()
    history, seconds = fit(spec, data, args.epochs, args.batch, args.eta, args.seed, args.anneal, console,
                           threads=args.threads)
    report(console, history, args.epochs, len(data[1]), seconds, "digits")
    if args.plot:
        plot(history, args.plot, spec.name)
        console.print(shown(f"learning curve: {args.plot}"), markup=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
