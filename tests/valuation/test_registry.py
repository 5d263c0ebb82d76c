"""The valuation contract: one result type for every method, a registry, strict method parameters."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from kairos_curate.config import ParamsError
from kairos_curate.valuation import (
    METHODS,
    MethodParams,
    ValuationInputs,
    ValuationMethod,
    ValuationResult,
    kairos_values,
    register_method,
    value,
)


@pytest.fixture(scope="module")
def inputs() -> ValuationInputs:
    rng = np.random.default_rng(0)
    y, y_ref = np.repeat([0, 1, 2], 20), np.repeat([0, 1, 2], 6)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    return ValuationInputs(
        centres[y] + rng.normal(size=(60, 3)),
        y,
        centres[y_ref] + rng.normal(size=(18, 3)),
        y_ref,
        seed=0,
        ids=np.array([f"s{i:02d}" for i in range(60)]),
        device="cpu",
    )


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_returns_the_one_result_type(name, inputs):
    res = value(name, inputs)
    assert type(res) is ValuationResult and res.method == name
    assert res.values.shape == (60,) and res.values.dtype == np.float64 and np.isfinite(res.values).all()
    assert res.ids.tolist() == inputs.ids.tolist() and res.labels.tolist() == inputs.pool_labels.tolist()
    assert res.seconds >= 0 and res.params == METHODS[name].Params().model_dump()
    frame = res.to_frame()
    assert frame.index.tolist() == inputs.ids.tolist() and frame["rank"].min() == 1
    assert frame.attrs["method"] == name


def test_kairos_terms_read_as_attributes_and_errors_list_them(inputs):
    res = value("kairos_feature", inputs)
    assert_allclose(res.values, res.b - res.a)
    assert res.bandwidth > 0 and res.label_mode is None and res.backend == "exact"
    with pytest.raises(AttributeError, match=r"no term or info 'c'; terms: \['a', 'b'"):
        _ = res.c
    direct = kairos_values(inputs.pool, inputs.reference, device="cpu")
    assert type(direct) is ValuationResult and direct.method == "kairos_feature"
    assert_allclose(direct.values, res.values)


def test_method_parameters_are_validated_strictly(inputs):
    res = value("kairos_residual", inputs, {"lam": 0.5, "combine": "rank"})
    assert res.params == {"bandwidth": "median", "lam": 0.5, "combine": "rank"}
    with pytest.raises(ParamsError, match=r"lamb: unknown key .*known keys here: bandwidth, combine, lam"):
        value("kairos_residual", inputs, {"lamb": 0.5})
    with pytest.raises(ParamsError, match=r"k: Input should be a valid integer \(got '10'\)"):
        value("knn_shapley", inputs, {"k": "10"})
    with pytest.raises(ParamsError, match="unknown valuation method 'kairos'; known: confident_learning"):
        value("kairos", inputs)


def test_label_aware_methods_need_labels(inputs):
    blind = ValuationInputs(inputs.pool, None, inputs.reference, None)
    assert value("kairos_feature", blind).labels is None
    with pytest.raises(ValueError, match="'knn_shapley' needs pool and reference labels"):
        value("knn_shapley", blind)


def test_a_new_method_is_one_class(inputs):
    """What a new method module holds: a registered class with its parameters and fit()."""

    @register_method
    class FirstCoordinate(ValuationMethod):
        name = "toy_first_coordinate"
        description = "minus the first coordinate, scaled"
        needs_labels = False

        class Params(MethodParams):
            scale: float = 1.0

        def fit(self, inputs: ValuationInputs) -> ValuationResult:
            return ValuationResult(self.name, values=-self.params.scale * inputs.pool[:, 0])

    try:
        res = value("toy_first_coordinate", inputs, {"scale": 2.0})
        assert_allclose(res.values, -2.0 * inputs.pool[:, 0])
        assert res.params == {"scale": 2.0} and res.ids is not None
        with pytest.raises(ValueError, match="already registered"):
            register_method(type("Other", (FirstCoordinate,), {}))
    finally:
        METHODS.pop("toy_first_coordinate")


def test_a_method_returning_nan_is_rejected(inputs):
    @register_method
    class Broken(ValuationMethod):
        name = "toy_broken"
        description = "returns NaN"
        needs_labels = False

        def fit(self, inputs: ValuationInputs) -> ValuationResult:
            return ValuationResult(self.name, values=np.full(inputs.pool.shape[0], np.nan))

    try:
        with pytest.raises(ValueError, match=r"'toy_broken' returned NaN/inf values at rows \[0, 1"):
            value("toy_broken", inputs)
    finally:
        METHODS.pop("toy_broken")
