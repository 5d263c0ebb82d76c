"""What several stages read: the prepared scenario and its embeddings, aligned by sample id."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kairos_curate.config import PATHS
from kairos_curate.data.scenario import Scenario, load_scenario
from kairos_curate.io import load_embeddings

__all__ = ["PreparedData", "aligned_embeddings", "load_prepared"]


def aligned_embeddings(path: Path, ids: np.ndarray) -> np.ndarray:
    """Embedding rows of ``path`` in the order of ``ids`` (error if any id is missing)."""
    file_ids, matrix = load_embeddings(path)
    index = {sid: i for i, sid in enumerate(file_ids.tolist())}
    missing = [sid for sid in ids.tolist() if sid not in index]
    if missing:
        raise ValueError(
            f"{path} lacks embeddings for {len(missing)} samples (e.g. {missing[:3]}); rerun `dvc repro embed`"
        )
    return matrix[[index[sid] for sid in ids.tolist()]]


@dataclass
class PreparedData:
    """The prepared scenario with the embeddings of its splits (rows in table order)."""

    scenario: Scenario
    pool_x: np.ndarray
    ref_x: np.ndarray
    #: Empty unless loaded with ``test=True``.
    test_x: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def pool_ids(self) -> np.ndarray:
        """Ids of the pool rows."""
        return self.scenario.table("pool")["id"].to_numpy(dtype=str)

    @property
    def pool_labels(self) -> np.ndarray:
        """The pool's labels as a user has them."""
        return self.scenario.table("pool")["label"].to_numpy()

    @property
    def ref_labels(self) -> np.ndarray:
        """The reference's labels."""
        return self.scenario.table("reference")["label"].to_numpy()


def load_prepared(
    root: Path, *, truth: bool = False, pool_embeddings: str = "pool", test: bool = False
) -> PreparedData:
    """The prepared scenario (with the truth table only if ``truth``) and its embeddings.

    ``pool_embeddings`` names the pool's embedding file (``pool`` or ``pool_noisy``: same ids).
    """
    scenario = load_scenario(root / PATHS.prepared, root / PATHS.truth if truth else None)
    emb = root / PATHS.embeddings

    def rows(split: str, name: str) -> np.ndarray:
        return aligned_embeddings(emb / f"{name}.npz", scenario.table(split)["id"].to_numpy(dtype=str))

    return PreparedData(
        scenario,
        rows("pool", pool_embeddings),
        rows("reference", "reference"),
        rows("test", "test") if test else np.zeros((0, 0)),
    )
