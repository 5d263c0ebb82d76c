"""A Ray engine: tasks as Ray remote functions, shared arrays in Ray's object store.

``RayEngine(address=None)`` starts a local Ray cluster on this machine (``num_cpus`` CPUs, a
bounded object store); ``RayEngine(address="auto")`` or ``"ray://head:10001"`` joins an
existing one (README, "More than one machine"). Ray is imported only here, only when an engine is
created, so the single-process path never loads it.

Each task asks for one CPU (and ``num_gpus`` GPUs when asked); Ray then sets
``OMP_NUM_THREADS=1`` in the worker, so ``P`` workers on ``P`` cores do not oversubscribe.
At most ``max_in_flight`` tasks are submitted ahead of the results being collected (default
four per CPU), which bounds the object-store memory of pending results.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["RayEngine", "require_ray"]

_REMOTES: dict[tuple[Any, float], Any] = {}


def require_ray() -> Any:
    """Import :mod:`ray`, or say how to install it."""
    try:
        import ray
    except ImportError as err:  # pragma: no cover - ray is in the dev extra
        raise ImportError(
            "engine 'ray' needs Ray: pip install 'kairos-curate[scale]' "
            "(or pip install 'ray[data]==2.60.0'), or use --engine local"
        ) from err
    return ray


class RayEngine:
    """Run tasks on a Ray cluster (a local one when ``address`` is ``None``).

    Parameters
    ----------
    address
        ``None`` starts a local cluster; ``"auto"`` joins the cluster started with ``ray start``
        on this machine; ``"ray://host:10001"`` connects a client to a remote head node.
    num_cpus
        CPUs of a local cluster (default: all cores); ignored when joining a cluster.
    object_store_bytes
        Object-store size of a local cluster (default 2 GiB or a quarter of ``/dev/shm``).
    runtime_env
        Ray runtime environment; by default the ``kairos_curate`` package folder travels with
        the job (``py_modules``) when joining a remote cluster, so the nodes need only its
        dependencies.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        object_store_bytes: int | None = None,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        ray = require_ray()
        self._ray = ray
        self.address = address
        self.started_here = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": True,
                "logging_level": "warning",
            }
            src = str(Path(__file__).resolve().parents[2])
            if address is None:
                kwargs["num_cpus"] = int(num_cpus) if num_cpus else os.cpu_count() or 1
                kwargs["object_store_memory"] = int(
                    object_store_bytes if object_store_bytes else min(2 * 2**30, _shm_bytes() // 4 or 2 * 2**30)
                )
                # workers of a local cluster import the same kairos_curate as the driver
                env = dict(runtime_env or {})
                env_vars = dict(env.get("env_vars", {}))
                path = os.environ.get("PYTHONPATH", "")
                env_vars.setdefault("PYTHONPATH", src + (os.pathsep + path if path else ""))
                env["env_vars"] = env_vars
                kwargs["runtime_env"] = env
                self.started_here = True
            else:
                kwargs["address"] = address
                if runtime_env is None:
                    import kairos_curate

                    runtime_env = {"py_modules": [kairos_curate]}
                kwargs["runtime_env"] = runtime_env
            _init_with_retries(ray, kwargs, attempts=5 if address is None else 1)

    def put(self, obj: Any) -> Any:
        """``ray.put(obj)``."""
        return self._ray.put(obj)

    def _remote(self, fn: Callable[..., Any], num_gpus: float) -> Any:
        key = (fn, float(num_gpus))
        if key not in _REMOTES:
            _REMOTES[key] = self._ray.remote(num_cpus=1, num_gpus=num_gpus)(fn)
        return _REMOTES[key]

    def map(
        self,
        fn: Callable[..., Any],
        calls: Sequence[tuple[Any, ...]],
        *,
        num_gpus: float = 0.0,
        max_in_flight: int | None = None,
    ) -> list[Any]:
        """Submit ``fn(*args)`` for every tuple as Ray tasks; results in call order."""
        ray = self._ray
        remote = self._remote(fn, num_gpus)
        limit = max_in_flight or 4 * self.parallelism()
        results: list[Any] = [None] * len(calls)
        pending: dict[Any, int] = {}
        for i, args in enumerate(calls):
            if len(pending) >= limit:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    results[pending.pop(ref)] = ray.get(ref)
            pending[remote.remote(*args)] = i
        for ref, i in pending.items():
            results[i] = ray.get(ref)
        return results

    def n_gpus(self) -> int:
        """GPUs in the cluster."""
        return int(self._ray.cluster_resources().get("GPU", 0))

    def parallelism(self) -> int:
        """CPUs in the cluster."""
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def shutdown(self) -> None:
        """Stop the local cluster if this engine started it."""
        if self.started_here and self._ray.is_initialized():
            self._ray.shutdown()
        self.started_here = False

    def __repr__(self) -> str:
        where = self.address or "local cluster"
        return f"RayEngine({where}, {self.parallelism()} CPUs, {self.n_gpus()} GPUs)"


def _init_with_retries(ray: Any, kwargs: dict[str, Any], attempts: int) -> None:
    """``ray.init``, retried: a local node must register within Ray's fixed 30 s, which a
    heavily loaded machine can miss."""
    for attempt in range(attempts):
        try:
            ray.init(**kwargs)
            return
        except Exception as err:  # Ray raises a bare Exception on a node start-up timeout
            if "timed out during startup" not in str(err) or attempt == attempts - 1:
                raise
            ray.shutdown()


def _shm_bytes() -> int:
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return 0
    return int(st.f_bavail * st.f_frsize)
