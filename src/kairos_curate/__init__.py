"""kairos-curate: curate fine-tuning data with KAIROS (MMD-based) data valuation."""

from __future__ import annotations

__version__ = "0.1.0"

from kairos_curate.valuation import KairosResult, kairos_values, select  # noqa: E402

__all__ = ["KairosResult", "__version__", "kairos_values", "select"]
