"""The PyTorch modules (generated/<spec>_torch.py): the NumPy module's numbers, the three oracles, and a
torch.autograd.Function whose backward is the proven one (gradcheck in float64, a training step)."""

from __future__ import annotations

import importlib
import itertools

import numpy as np
import pytest

from codegen import load_generated
from derive.spec import builtin_names, load_spec, validate
from tests.oracles import ThroughNumPy, data, three_oracles

torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")

NAMES = sorted(builtin_names())
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
_folders = itertools.count()


def modules(name):
    return importlib.import_module(f"generated.{name}_numpy"), importlib.import_module(f"generated.{name}_torch")


def small(name):
    """The built-in spec itself when it is small, else at widths 5-4-3: the oracles differentiate every entry."""
    spec = load_spec(name)
    return spec if max(spec.sizes) <= 8 else spec.with_sizes((5, 4, 3))


def generated(spec, tmp_path):
    folder = tmp_path / str(next(_folders))
    folder.mkdir()
    return load_generated(spec, folder, "torch")


def tensors(values: dict, device="cpu") -> dict:
    return {k: torch.from_numpy(v).to(device) for k, v in values.items()}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("name", NAMES)
def test_the_torch_module_computes_what_the_numpy_module_computes(name, dtype, rtol, device):
    numpy_module, torch_module = modules(name)
    spec = load_spec(name)
    params, x, y = data(spec, 1 if spec.batch == "single" else 7, np.random.default_rng(3), dtype)
    out, cache = numpy_module.forward(params, x)
    grads = numpy_module.backward(params, cache, y)
    t_out, t_cache = torch_module.forward(tensors(params, device), torch.from_numpy(x).to(device))
    t_grads = torch_module.backward(tensors(params, device), t_cache, torch.from_numpy(y).to(device))
    assert t_out.dtype == torch.from_numpy(x).dtype and t_out.device.type == device
    np.testing.assert_allclose(t_out.cpu().numpy(), out, rtol=rtol, atol=rtol)
    assert set(t_cache) == set(cache)
    for key, value in grads.items():
        assert t_grads[key].dtype == t_out.dtype and t_grads[key].shape == value.shape, key
        np.testing.assert_allclose(t_grads[key].cpu().numpy(), value, rtol=rtol, atol=rtol, err_msg=key)
    assert torch_module.cost(t_out, torch.from_numpy(y).to(device), t_cache) == pytest.approx(
        numpy_module.cost(out, y, cache), rel=rtol)


@pytest.mark.parametrize("name", NAMES)
def test_three_oracles(name, tmp_path):
    spec = small(name)
    module = modules(name)[1] if spec == load_spec(name) else generated(spec, tmp_path)
    params, x, y = data(spec, 1 if spec.batch == "single" else 3, np.random.default_rng(8))
    three_oracles(ThroughNumPy(module, torch.from_numpy, lambda t: t.cpu()), spec, params, x, y)


@pytest.mark.parametrize("name", NAMES)
def test_the_autograd_function_passes_gradcheck_in_float64(name):
    module = modules(name)[1]
    spec = load_spec(name)
    params, x, y = data(spec, 1 if spec.batch == "single" else 4, np.random.default_rng(4))
    keys = list(module.PARAM_SHAPES)
    values = [torch.from_numpy(params[k]).requires_grad_() for k in keys]
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    # fast_mode checks random projections of the Jacobian, so 784-30-10 takes a few forward passes, not 23,860
    assert torch.autograd.gradcheck(lambda *v: module.loss(dict(zip(keys, v)), X, Y), values, eps=1e-6,
                                    atol=1e-7, rtol=1e-5, fast_mode=len(torch.cat([v.flatten() for v in values])) > 200)


@pytest.mark.parametrize("name", NAMES)
def test_loss_backward_is_the_proven_backward_in_a_training_step(name):
    """torch.optim.SGD on loss(...).backward() takes the step the NumPy module's sgd_step takes."""
    numpy_module, torch_module = modules(name)
    spec = load_spec(name)
    params, x, y = data(spec, 1 if spec.batch == "single" else 5, np.random.default_rng(6))
    weights = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in params.items()}
    optimizer = torch.optim.SGD(weights.values(), lr=0.5)
    optimizer.zero_grad()
    loss = torch_module.loss(weights, torch.from_numpy(x), torch.from_numpy(y))
    out, cache = numpy_module.forward(params, x)
    assert float(loss.detach()) == pytest.approx(numpy_module.cost(out, y, cache), rel=1e-12)
    loss.backward()
    optimizer.step()
    numpy_module.sgd_step(params, numpy_module.backward(params, cache, y), 0.5)
    for key, value in params.items():
        np.testing.assert_allclose(weights[key].detach().numpy(), value, rtol=1e-12, atol=1e-14, err_msg=key)


def test_sgd_step_updates_in_place_and_refuses_before_writing():
    numpy_module, torch_module = modules("nobias3")
    params = torch_module.init_params(1)
    for key, value in numpy_module.init_params(1).items():  # the same draw as the NumPy module
        np.testing.assert_array_equal(params[key].numpy(), value)
    before = {k: v.clone() for k, v in params.items()}
    grads = {k: torch.ones_like(v) for k, v in params.items()}
    torch_module.sgd_step(params, grads, 0.25)
    for key in params:
        torch.testing.assert_close(params[key], before[key] - 0.25)
    grads["W3"][0, 0] = float("nan")
    kept = {k: v.clone() for k, v in params.items()}
    with pytest.raises(ValueError, match=r"grads\['W3'\]: contains NaN or inf"):
        torch_module.sgd_step(params, grads, 0.25)
    assert all(torch.equal(params[k], kept[k]) for k in params)


@pytest.mark.parametrize("spec_fields", [
    dict(sizes=[3, 4, 3], activation=["softplus", "softmax"], cost="log_likelihood", bias="augmented", batch="mean"),
    dict(sizes=[2, 3, 2], activation=["leaky_relu", "identity"], convention="row", batch="sum"),
    dict(sizes=[2, 3, 2], activation=["tanh", "sigmoid"], cost="cross_entropy", bias="none", batch="single"),
])
def test_other_activations_costs_and_layouts(spec_fields, tmp_path):
    """Helpers the built-in specs do not call (softplus, softmax, log_softmax, with_ones), a clamp and a
    heaviside, the cost through z: checked by the oracles and by gradcheck."""
    fields = dict(name="edge", cost="quadratic", convention="column", bias="separate", notation="net222")
    spec = validate({**fields, **spec_fields})
    module = generated(spec, tmp_path)
    params, x, y = data(spec, 1 if spec.batch == "single" else 3, np.random.default_rng(2))
    three_oracles(ThroughNumPy(module, torch.from_numpy), spec, params, x, y)
    keys = list(module.PARAM_SHAPES)
    values = [torch.from_numpy(params[k]).requires_grad_() for k in keys]
    assert torch.autograd.gradcheck(lambda *v: module.loss(dict(zip(keys, v)), torch.from_numpy(x), torch.from_numpy(y)),
                                    values, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_finite_values_whose_squares_overflow_pass_the_finiteness_check():
    """_finite's dot product overflows for entries near the float32 maximum: those are tested one by one."""
    module = modules("nobias3")[1]
    big = torch.full((2, 3), 1e30, dtype=torch.float32)
    assert module._finite(big) and not module._finite(torch.cat((big, torch.tensor([[float("inf")] * 3]))))
    params = {k: torch.zeros_like(v) for k, v in module.init_params(0, torch.float32).items()}
    out, cache = module.forward(params, big)  # z = 0: finite, though x·x is not
    assert torch.isfinite(out).all()


def test_bad_arguments_are_refused_with_their_names():
    module = modules("nobias3")[1]
    params = module.init_params(0)
    x = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^x: a torch.Tensor of shape \(B, 3\) expected, got numpy.ndarray$"):
        module.forward(params, x.numpy())
    with pytest.raises(ValueError, match=r"^params\['W1'\]: torch.float32 on cpu .* expected torch.float64 on cpu like the data$"):
        module.forward({**params, "W1": params["W1"].float()}, x)
    with pytest.raises(ValueError, match=r"^x: requires grad, expected data \(detach it\)"):
        module.loss(params, x.clone().requires_grad_(), torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^x: contains NaN or inf"):
        module.forward(params, torch.full((2, 3), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^dtype: 'int8', expected torch.float32 or torch.float64$"):
        module.init_params(0, "int8")
    with pytest.raises(ValueError, match=r"^device: 'gpu0', expected"):
        module.init_params(0, device="gpu0")
    assert module.init_params(0, np.float32)["W1"].dtype == torch.float32


def test_one_backend_from_the_command_line(tmp_path, capsys):
    """`python -m codegen SPEC --backend torch` writes that module alone, the one generated/ holds."""
    from codegen.__main__ import main as codegen_main

    assert codegen_main(["net222", "--backend", "torch", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net222_torch.py"]
    with open(modules("net222")[1].__file__, encoding="utf-8") as checked_in:
        assert (tmp_path / "net222_torch.py").read_text(encoding="utf-8") == checked_in.read()
    assert capsys.readouterr().out.splitlines()[-1].endswith("net222_torch.py")
