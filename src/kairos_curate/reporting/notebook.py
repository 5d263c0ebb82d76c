"""What every stage notebook does first: readable tables, quiet warnings, its figures folder."""

from __future__ import annotations

import warnings
from pathlib import Path

__all__ = ["notebook_setup"]


def notebook_setup(name: str, root: str | Path = ".") -> Path:
    """Set pandas to print rounded, wide tables, silence FutureWarnings, and return (creating it)
    ``reports/figures/<name>``, the folder of the notebook's saved figures."""
    import pandas as pd

    warnings.filterwarnings("ignore", category=FutureWarning)
    # Progress bars are off in rendered notebooks (KAIROS_PROGRESS=0); a library importing tqdm.auto
    # inside the kernel (cleanlab, peft) would still print this as a red stderr block.
    warnings.filterwarnings("ignore", message="IProgress not found")
    pd.set_option("display.precision", 3)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)
    folder = Path(root) / "reports" / "figures" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
