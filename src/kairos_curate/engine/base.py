"""The engine interface: run independent tasks in this process or on a Ray cluster.

An engine does three things: ``put`` an object where tasks can read it (a handle), ``map`` a
module-level function over argument tuples (handles at the top level of a tuple are resolved
to their objects before the call) and return the results in order, and report whether GPUs
are there. :class:`LocalEngine` runs every call in this process, one after the other, with no
Ray import; :class:`~kairos_curate.engine.ray_engine.RayEngine` runs them as Ray tasks.
Algorithms written against this interface give the same numbers on both, because each task
computes the same thing and the driver reduces the results in the same fixed order (bit for
bit when the processes run the same number of torch threads: float32 GEMMs round differently
with another thread count).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["ENGINES", "Engine", "LocalEngine"]

#: Engine names accepted by :func:`kairos_curate.engine.get_engine` and ``--engine``.
ENGINES = ("local", "ray")


@runtime_checkable
class Engine(Protocol):
    """What distributed algorithms need from an execution engine."""

    name: str

    def put(self, obj: Any) -> Any:
        """Store ``obj`` for tasks; returns a handle to pass at the top level of task args."""
        ...

    def map(
        self,
        fn: Callable[..., Any],
        calls: Sequence[tuple[Any, ...]],
        *,
        num_gpus: float = 0.0,
        max_in_flight: int | None = None,
    ) -> list[Any]:
        """``[fn(*args) for args in calls]`` (handles resolved), results in call order."""
        ...

    def n_gpus(self) -> int:
        """GPUs the engine can give tasks (0 on a CPU-only machine or cluster)."""
        ...

    def parallelism(self) -> int:
        """How many single-CPU tasks run at once (1 for the local engine)."""
        ...


class LocalEngine:
    """Runs every task in this process, in order (the default; no Ray import)."""

    name = "local"

    def put(self, obj: Any) -> Any:
        """The object itself is its handle."""
        return obj

    def map(
        self,
        fn: Callable[..., Any],
        calls: Sequence[tuple[Any, ...]],
        *,
        num_gpus: float = 0.0,
        max_in_flight: int | None = None,
    ) -> list[Any]:
        """Call ``fn(*args)`` for each tuple, one after the other."""
        return [fn(*args) for args in calls]

    def n_gpus(self) -> int:
        """CUDA devices visible to this process."""
        import torch

        return int(torch.cuda.device_count())

    def parallelism(self) -> int:
        """One task at a time (each task uses all of torch's threads)."""
        return 1

    def __repr__(self) -> str:
        return "LocalEngine()"
