"""Specs: the built-in ones load, every field is validated, errors are one line."""

import pytest

from derive.errors import SpecError
from derive.matrix import MatrixForms
from derive.network import Network
from derive.spec import BIASES, CONVENTIONS, builtin_names, load_spec, parse_sizes, validate
from derive.tables.layers import DENSE
from derive.tables.notations import PROFILES

GOOD = dict(name="t", sizes=[2, 3, 2], activation="sigmoid", cost="quadratic", convention="row",
            bias="augmented", batch="single", notation="net222")


def test_net222_is_the_classic_network():
    s = load_spec("net222")
    assert s.sizes == (2, 2, 2) and s.activation == ("sigmoid", "sigmoid")
    assert (s.cost, s.convention, s.bias, s.batch, s.notation) == ("quadratic", "row", "augmented", "single", "net222")
    assert s.n_params == 12


def test_every_builtin_loads():
    assert {"net222", "nielsen", "nobias3", "rowmajor"} <= set(builtin_names())
    for name in builtin_names():
        assert load_spec(name).name == name


def test_user_file_is_accepted_like_a_name(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('name="mine"\nsizes=[1,2]\nactivation="tanh"\ncost="quadratic"\nconvention="column"\n'
                 'bias="none"\nbatch="single"\nnotation="nielsen"\n')
    assert load_spec(str(f)).sizes == (1, 2)


@pytest.mark.parametrize("field,value,needle", [
    ("sizes", [2, 0, 2], "positive integers"),
    ("sizes", [2], "at least two"),
    ("sizes", "2-2-2", "list"),
    ("sizes", [2, 2.5], "positive integers"),
    ("sizes", [2, True], "positive integers"),
    ("activation", "sigmoidal", "not one of"),
    ("activation", ["sigmoid"], "1 names for 2 layers"),
    ("activation", ["softmax", "sigmoid"], "only allowed on the output layer"),
    ("cost", "hinge", "not one of"),
    ("cost", "log_likelihood", "needs an output activation"),
    ("convention", "diagonal", "row, column"),
    ("bias", "maybe", "augmented, separate, none"),
    ("batch", "all", "single, mean, sum"),
    ("notation", "mine", "not one of"),
    ("name", "two words", "not a name"),
    ("examples", 3, "batch = 'single'"),
    ("extra_key", 1, "unknown key"),
])
def test_each_field_is_validated(field, value, needle):
    data = dict(GOOD, **{field: value})
    with pytest.raises(SpecError) as err:
        validate(data, "mine.toml")
    msg = str(err.value)
    assert msg.startswith("mine.toml: field ") and field in msg and needle in msg
    assert "\n" not in msg


def test_missing_field():
    data = dict(GOOD)
    del data["cost"]
    with pytest.raises(SpecError, match="field 'cost': missing"):
        validate(data, "x.toml")


def test_unknown_name_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match="unknown spec 'net999'.*net222"):
        load_spec("net999")
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(str(tmp_path / "nope.toml"))


def test_malformed_toml(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("name = \n")
    with pytest.raises(SpecError, match="malformed TOML"):
        load_spec(str(f))


def test_with_sizes_keeps_other_settings():
    s = load_spec("nielsen").with_sizes((3, 4, 2))
    assert s.sizes == (3, 4, 2) and s.convention == "column" and s.batch == "mean"
    r = load_spec("rowmajor").with_sizes((2, 3, 3, 3, 2))
    assert r.activation == ("relu", "relu", "relu", "sigmoid")


def test_parse_sizes():
    assert parse_sizes("3-4-2") == (3, 4, 2)
    for bad in ("3", "3-0", "a-b", "3--2"):
        with pytest.raises(SpecError, match="--sizes"):
            parse_sizes(bad)


def test_notation_names_come_from_the_table():
    assert validate(dict(GOOD, notation=next(iter(PROFILES)))).notation in PROFILES
    with pytest.raises(SpecError) as err:
        validate(dict(GOOD, notation="mine"))
    assert str(err.value).endswith("is not one of " + ", ".join(PROFILES))


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("bias", BIASES)
def test_dense_entry_lays_out_every_parameter(convention, bias):
    spec = validate(dict(GOOD, sizes=[3, 2, 4], convention=convention, bias=bias))
    net = Network(spec)
    forms = MatrixForms(net)
    for l in range(1, spec.depth + 1):
        for name, shape in DENSE.params(spec.sizes[l - 1], spec.sizes[l], convention, bias):
            assert forms.sym[f"{name}{l}"].shape == shape
    for p in net.params:
        assert forms.values[forms.sym[p.matrix]][p.index] == p.symbol
    assert spec.n_params == len(net.params)
