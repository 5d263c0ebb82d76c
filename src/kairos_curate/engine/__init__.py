"""Execution engines: the same algorithms in one process (``local``) or on Ray (``ray``).

>>> from kairos_curate.engine import get_engine
>>> engine = get_engine("local")                     # no Ray import
>>> engine = get_engine("ray")                       # doctest: +SKIP  (local Ray cluster)
>>> engine = get_engine("ray", address="auto")       # doctest: +SKIP  (existing cluster)

Entry points that take an engine (README, "More than one machine"; details in ``docs/scale.md``):

* :func:`kairos_curate.engine.valuation.value_with_engine` - exact KAIROS as shard-pair tasks
  (equal to :func:`kairos_curate.valuation.kairos_values` to float tolerance), or the
  Nyström sketch;
* :func:`kairos_curate.engine.embedding.embed_with_engine` - embedding on Ray Data;
* ``select(..., policy="herding", partition_size=..., engine=...)`` - per-class herding, one
  task per class or random partition (:mod:`kairos_curate.selection.herding`).
"""

from __future__ import annotations

from kairos_curate.engine.base import ENGINES, Engine, LocalEngine

__all__ = ["ENGINES", "Engine", "LocalEngine", "get_engine"]


def get_engine(
    name: str | Engine | None = "local",
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    object_store_bytes: int | None = None,
) -> Engine:
    """An engine by name: ``"local"`` (this process) or ``"ray"`` (Ray cluster).

    Parameters
    ----------
    name
        ``"local"``, ``"ray"``, ``None`` (= local) or an engine object (returned as is).
    address
        Ray only: ``None`` starts a local cluster, ``"auto"`` joins the cluster running on this
        machine, ``"ray://host:10001"`` a remote head node.
    num_cpus, object_store_bytes
        Size of a local Ray cluster.

    Raises
    ------
    ValueError
        Unknown name, or an address given with the local engine.
    """
    if name is None:
        name = "local"
    if not isinstance(name, str):
        return name
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {name!r} (--engine local|ray)")
    if name == "local":
        if address:
            raise ValueError(f"--ray-address {address!r} was given with engine 'local'; add --engine ray")
        return LocalEngine()
    from kairos_curate.engine.ray_engine import RayEngine

    return RayEngine(address, num_cpus=num_cpus, object_store_bytes=object_store_bytes)
