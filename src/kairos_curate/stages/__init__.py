"""One module per DVC stage, and the runner that executes each stage's notebook.

``python -m kairos_curate.stages <stage>`` (the ``cmd`` of every stage in ``dvc.yaml``) checks the
environment, validates the ``params.yaml`` keys the stage reads (:mod:`.params`), executes
``notebooks/<NN>_<stage>.ipynb`` with papermill (parameters passed as real YAML data, progress
bars off) into ``reports/notebooks/``, and exports the rendered notebook to HTML next to it.

Each stage module (:mod:`.prepare`, :mod:`.embed`, :mod:`.value`, :mod:`.compare`,
:mod:`.finetune`, :mod:`.report`) loads its inputs, calls the study's DVC-free logic
(:mod:`kairos_curate.study`) and writes its outputs; the notebook shows the results.
"""

from __future__ import annotations

#: Stage name -> its notebook (``notebooks/<name>.ipynb``), in pipeline order.
STAGES = {
    "prepare": "01_prepare",
    "embed": "02_embed",
    "value": "03_value",
    "compare": "04_compare",
    "finetune": "05_finetune",
    "report": "06_report",
}

__all__ = ["STAGES"]
