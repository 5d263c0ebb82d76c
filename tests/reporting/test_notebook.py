"""The notebooks' shared set-up cell."""

from __future__ import annotations

import warnings

from tqdm import TqdmWarning

from kairos_curate.reporting.notebook import notebook_setup


def test_setup_silences_tqdm_auto_in_the_kernel_and_makes_the_figures_folder(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folder = notebook_setup("05_finetune", tmp_path)
        warnings.warn("IProgress not found. Please update jupyter and ipywidgets.", TqdmWarning, stacklevel=1)
        warnings.warn("another warning", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["another warning"]  # only the tqdm.auto noise goes
    assert folder == tmp_path / "reports" / "figures" / "05_finetune" and folder.is_dir()
