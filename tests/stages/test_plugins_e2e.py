"""Adding a valuation method or a selection policy is one new module plus its params entry.

In a scratch copy of the package, two files are added - a toy method in ``valuation/`` and a
toy policy in ``selection/`` - and nothing else is edited. A params dict that names them runs
through the real prepare, embed, value and finetune stages (in a subprocess, on a tiny
scenario): the value stage writes the toy selection and the finetune stage trains on it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from ..conftest import ROOT, requires_fashion_mnist

pytestmark = [pytest.mark.slow, requires_fashion_mnist]

TOY_METHOD = '''
"""A toy valuation method: minus the distance to the reference mean."""

import numpy as np

from kairos_curate.valuation.base import MethodParams, ValuationInputs, ValuationMethod, register_method
from kairos_curate.valuation.result import ValuationResult


@register_method
class ReferenceMean(ValuationMethod):
    name = "toy_reference_mean"
    description = "minus the distance to the reference mean"
    needs_labels = False

    class Params(MethodParams):
        power: float = 1.0

    def fit(self, inputs: ValuationInputs) -> ValuationResult:
        d = np.linalg.norm(inputs.pool - inputs.reference.mean(axis=0), axis=1)
        return ValuationResult(self.name, values=-(d ** self.params.power))
'''

TOY_POLICY = '''
"""A toy selection policy: every n-th sample of the value order."""

from kairos_curate.selection.base import (
    PolicyChoice, PolicyParams, SelectionContext, SelectionPolicy, register_policy,
)


@register_policy
class Stride(SelectionPolicy):
    name = "toy_stride"
    description = "every n-th sample by value"
    needs_labels = False

    class Params(PolicyParams):
        step: int = 2

    def choose(self, ctx: SelectionContext, k: int) -> PolicyChoice:
        return PolicyChoice(indices=ctx.order[:: self.params.step][:k])
'''

RUN = """
import json, sys
from pathlib import Path
from kairos_curate.stages import embed, finetune, prepare, value

params = json.loads(sys.argv[1])
root = Path(sys.argv[2])
prepare.run(prepare.load(params).scenario, root)
embed.run(embed.load(params).embed, root)
value.run(value.load(params).value, root)
out = finetune.run(finetune.load(params), root)
print(json.dumps(sorted(set(out["summary"]["subset"]))))
"""


def test_a_toy_method_and_policy_run_through_value_and_finetune(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src)
    (src / "kairos_curate/valuation/toy_reference_mean.py").write_text(textwrap.dedent(TOY_METHOD))
    (src / "kairos_curate/selection/toy_stride.py").write_text(textwrap.dedent(TOY_POLICY))
    params = {
        "scenario": {
            "fashion_mnist": {
                "pool_per_task_class": 20,
                "pool_per_offtask_class": 10,
                "reference_per_class": 6,
                "test_per_class": 10,
            }
        },
        "embed": {"image_size": 48, "batch_size": 32},
        "value": {
            "method": "toy_reference_mean",
            "method_params": {"power": 2.0},
            "budget": 0.3,
            "selections": {"strided": {"policy": "toy_stride", "step": 3}},
            "primary": "strided",
        },
        "finetune": {
            "image_size": 48,
            "methods": ["lora"],
            "epochs": 1,
            "trials": 1,
            "random_draws": 1,
            "subsets": ["random", "strided"],
            "noisy_subsets": [],
            "size_fractions": [],
        },
    }
    env = {**os.environ, "PYTHONPATH": str(src), "KAIROS_PROGRESS": "0"}
    project = tmp_path / "project"
    result = subprocess.run(
        [sys.executable, "-c", RUN, json.dumps(params), str(project)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["random", "strided"]
    selections = json.loads((project / "data/values/selections.json").read_text())
    assert selections["method"] == "toy_reference_mean" and selections["strided"]["policy"] == "toy_stride"
    assert selections["strided"]["params"] == {"step": 3} and len(selections["strided"]["ids"]) == selections["k"]
    metrics = json.loads((project / "reports/metrics/value.json").read_text())
    assert metrics["method_params"] == {"power": 2.0}


TOY_PARAMETER_FIELD = """
    #: A toy parameter (test only): the whole change a new stage parameter needs.
    toy_knob: int = 3
"""


@pytest.mark.parametrize("given", [None, 5])
def test_a_new_stage_parameter_is_params_yaml_plus_the_typed_config(tmp_path, given):
    """A new key of the ``value`` section: one field in stages/params.py (its only default) and,
    to change it, one line of params.yaml. dvc.yaml lists whole sections (``params: [value, ...]``),
    so it needs no edit; the notebook receives the section as it is."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src)
    params_py = src / "kairos_curate/stages/params.py"
    text = params_py.read_text()
    anchor = '    """``value``: the valuation method and the named selections made from its values."""\n'
    assert anchor in text
    params_py.write_text(text.replace(anchor, anchor + TOY_PARAMETER_FIELD, 1))
    values = {} if given is None else {"toy_knob": given}
    code = (
        "import json, sys\n"
        "from kairos_curate.stages.params import load_stage_params, STAGE_SECTIONS\n"
        "stage = load_stage_params('value', {'value': json.loads(sys.argv[1])})\n"
        "print(json.dumps([stage.value.toy_knob, 'value' in STAGE_SECTIONS['value']]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(src)}
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(values)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [3 if given is None else given, True]
    # a wrong type names the key
    bad = subprocess.run(
        [sys.executable, "-c", code, json.dumps({"toy_knob": "many"})], env=env, capture_output=True, text=True
    )
    assert bad.returncode != 0 and "toy_knob" in bad.stderr
    # and the dvc.yaml stage already tracks the whole section
    dvc = (ROOT / "dvc.yaml").read_text()
    assert "value" in dvc.split("\n  value:\n", 1)[1].split("params:", 1)[1].split("outs:", 1)[0]
