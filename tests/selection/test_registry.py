"""Selection policies as plug-ins: a registry, strict policy parameters, named selection specs."""

from __future__ import annotations

import numpy as np
import pytest

from kairos_curate.config import ParamsError
from kairos_curate.selection import (
    POLICIES,
    PolicyChoice,
    PolicyParams,
    Selection,
    SelectionContext,
    SelectionPolicy,
    SelectionSpec,
    register_policy,
    select,
)


def test_built_in_policies_are_registered():
    assert {"global", "per_class", "herding"} <= set(POLICIES)
    assert not POLICIES["global"].needs_labels and POLICIES["herding"].needs_embeddings


def test_a_policy_owns_its_parameters():
    vals, y = np.arange(10.0), np.repeat([0, 1], 5)
    with pytest.raises(ParamsError, match=r"of policy 'per_class': drop_fraction: unknown key"):
        select(vals, 4, policy="per_class", labels=y, drop_fraction=0.5)
    with pytest.raises(ValueError, match=r"drop_fraction must lie in \[0, 1\)"):
        select(vals, 4, policy="herding", labels=y, drop_fraction=1.0)
    sel = select(vals, 4, policy="per_class", labels=y)
    assert isinstance(sel, Selection) and sel.params == {} and sel.to_dict()["params"] == {}


def test_selection_specs_name_the_key():
    spec = SelectionSpec.from_mapping("h", {"policy": "herding", "drop_fraction": 0.25})
    assert spec.policy_instance().params.drop_fraction == 0.25
    with pytest.raises(ParamsError, match=r"h\.drop: unknown key"):
        SelectionSpec.from_mapping("h", {"policy": "herding", "drop": 0.25})
    with pytest.raises(ParamsError, match="must be a mapping with a 'policy' key"):
        SelectionSpec.from_mapping("h", {"drop_fraction": 0.25})


def test_a_selection_spec_may_name_its_own_valuation_method():
    spec = SelectionSpec.from_mapping(
        "c",
        {
            "policy": "gated_cover",
            "method": "kairos_calibrated",
            "cover": "random",
            "method_params": {"gates": "label"},
        },
    )
    assert (spec.policy, spec.params, spec.method, spec.method_params) == (
        "gated_cover",
        {"cover": "random"},
        "kairos_calibrated",
        {"gates": "label"},
    )
    assert spec.uses("kairos_calibrated", {"gates": "label"}) and not spec.uses("kairos_calibrated")
    plain = SelectionSpec.from_mapping("h", {"policy": "herding"})
    assert plain.method is None and plain.uses("lava")
    with pytest.raises(ParamsError, match=r"c\.method: unknown valuation method 'kairos_calib'"):
        SelectionSpec.from_mapping("c", {"policy": "gated_cover", "method": "kairos_calib"})
    with pytest.raises(ParamsError, match=r"c\.method_params\.gate: unknown key"):
        SelectionSpec.from_mapping(
            "c", {"policy": "gated_cover", "method": "kairos_calibrated", "method_params": {"gate": "label"}}
        )
    with pytest.raises(ParamsError, match="method_params is given without a method"):
        SelectionSpec.from_mapping("h", {"policy": "herding", "method_params": {"gates": "label"}})


def test_a_new_policy_is_one_class():
    """What a new policy module holds: a registered class with its parameters and choose()."""

    @register_policy
    class EveryOther(SelectionPolicy):
        name = "toy_every_other"
        description = "every second sample by value"
        needs_labels = False

        class Params(PolicyParams):
            offset: int = 0

        def choose(self, ctx: SelectionContext, k: int) -> PolicyChoice:
            return PolicyChoice(indices=ctx.order[self.params.offset :: 2][:k], info={"offset": self.params.offset})

    try:
        sel = select(np.arange(10.0), 3, policy="toy_every_other", offset=1)
        assert sel.indices.tolist() == [8, 6, 4] and sel.policy == "toy_every_other"
        assert sel.to_dict()["info"] == {"offset": 1} and sel.params == {"offset": 1}
    finally:
        POLICIES.pop("toy_every_other")
