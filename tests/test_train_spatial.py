"""Training the generated modules of the shaped layer kinds: the digits CNN and one attention block on associative recall.

The figures in the README come from the same runs (examples/train_digits_cnn.py, examples/attention_task.py); each
module is proven at small sizes and printed once per session (the proofs are most of this file's time).
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from codegen.layer_module import load_layers
from derive.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent


def _task():
    """examples/attention_task.py, a script rather than a package module."""
    where = importlib.util.spec_from_file_location("attention_task", ROOT / "examples" / "attention_task.py")
    module = importlib.util.module_from_spec(where)
    where.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def task():
    return _task()


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    return load_layers(load_spec(str(ROOT / "examples" / "digits_cnn.toml")), tmp_path_factory.mktemp("cnn"))


def test_the_digits_cnn_learns_the_held_out_digits(cnn):
    """examples/train_digits_cnn.py's run cut from 100 epochs to 40 (batch 16, eta 0.3 annealed, seed 0): at least
    97.5 % of the 450 held-out digits (the full run: 98.2-98.7 % over seeds 0-4)."""
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install '.[demo]')")
    from codegen.train import blas_threads, load_digits, train

    with blas_threads(1):
        history = train(cnn, cnn.init_params(0), load_digits(0), 40, 16, 0.3, 0, anneal=True)
    assert history[-1][1] < history[0][1] / 2, history  # the training cost falls
    assert history[-1][2] >= 0.975, history[-1]


def _conv_relu_pool(images, W, b):
    """A 3x3 convolution with padding 1 (cross-correlation, as torch's conv2d), ReLU, 2x2 max pooling: (E, C, H, W)."""
    out_channels, channels = W.shape[1], images.shape[1]
    kernel = W.T.reshape(out_channels, channels, 3, 3)  # row convention: W is (C·kh·kw, O), torch's weight flattened
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # (E, C, H, W, 3, 3)
    z = np.einsum("ecijpq,ocpq->eoij", windows, kernel) + b.reshape(1, -1, 1, 1)
    E, O, H, Wd = z.shape
    return np.maximum(0, z).reshape(E, O, H // 2, 2, Wd // 2, 2).max(axis=(3, 5))


def test_the_digits_are_read_as_images_in_c_h_w_order(cnn):
    """The module's flat input is scikit-learn's row-major 8x8 image: its output equals the network written out on the
    (E, 1, 8, 8) images with NumPy's sliding windows, flattened in C, H, W order (torch.flatten's) before the softmax."""
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install '.[demo]')")
    from sklearn.datasets import load_digits

    images = load_digits().images[:5] / 16.0
    params = cnn.init_params(1)
    got, _ = cnn.forward(params, images.reshape(5, 64))
    hidden = _conv_relu_pool(_conv_relu_pool(images[:, None], params["W1"], params["b1"]), params["W3"], params["b3"])
    z = hidden.reshape(5, -1) @ params["W6"] + params["b6"]
    want = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(got, want / want.sum(axis=1, keepdims=True), rtol=1e-10, atol=1e-12)


def test_a_shape_that_does_not_fit_the_digits_is_refused_in_one_line(tmp_path, capsys):
    from codegen import train

    text = (ROOT / "examples" / "digits_cnn.toml").read_text().replace("inputs = [1, 8, 8]", "inputs = [4, 4, 4]")
    (tmp_path / "bad.toml").write_text(text)
    assert train.main(["--spec", str(tmp_path / "bad.toml"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inputs [4, 4, 4] do not fit the digits" in err and "[1, 8, 8]" in err


def test_the_recall_task_is_what_it_says(task):
    """Every answer is the value stored with the queried key; keys are distinct; no held-out sequence was trained on."""
    x_train, x_test, y_train, y_test = task.task_data(500, 200, 3)
    for x, y in ((x_train, y_train), (x_test, y_test)):
        for row, answer in zip(x.reshape(-1, task.T, task.D), y.argmax(axis=1)):
            keys = row[: task.PAIRS, : task.KEYS].argmax(axis=1)
            values = row[: task.PAIRS, task.KEYS : task.KEYS + task.VALUES].argmax(axis=1)
            asked = row[task.PAIRS, 2 * task.KEYS :].argmax()
            assert len(set(keys)) == task.PAIRS and row[: task.PAIRS, 2 * task.KEYS :].sum() == 0
            assert answer == values[list(keys).index(asked)]
    assert not {r.tobytes() for r in x_train} & {r.tobytes() for r in x_test}


def test_one_attention_block_learns_recall_and_the_same_layers_without_it_do_not(task, tmp_path):
    """examples/attention_task.py's run (10 epochs, batch 16, eta 0.5 annealed, seed 0): the attention block reaches
    99 % of 1000 held-out sequences; flatten and softmax alone, on the same sequences, stay below 50 %."""
    from codegen.train import blas_threads, train

    data = task.task_data(4000, 1000, 0)
    accuracy = {}
    for attention in (True, False):
        folder = tmp_path / ("with" if attention else "without")
        folder.mkdir()
        module = load_layers(task.task_spec(attention), folder)
        with blas_threads(1):
            history = train(module, module.init_params(0), data, 10, 16, 0.5, 0, anneal=True)
        accuracy[attention] = history[-1][2]
    assert accuracy[True] >= 0.99 and accuracy[False] < 0.5, accuracy
