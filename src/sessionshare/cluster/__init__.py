"""``sessionshare up``: a whole cluster (stores, app nodes, balancer) from one topology.

- ``topology.py``: ``cluster.toml`` + command-line options → validated dataclasses;
- ``store_processes.py``: one small class per store kind (which servers to start, which
  options every app node gets);
- ``supervisor.py``: child processes in their own process groups, health waits, restarts
  with back-off, reverse-order shutdown, the run directory;
- ``events.py`` and ``status.py``: what happened, and the SPEC §6 status document;
- ``dashboard.py`` and ``static/``: the live page at ``/_cluster/``;
- ``runner.py``: puts them together for the ``up`` command.
"""

from sessionshare.cluster.topology import (
    BalancerTopology,
    NodeTopology,
    StoreNodeTopology,
    StoreTopology,
    Topology,
    TopologyError,
    load_topology,
    render_toml,
)

__all__ = [
    "BalancerTopology",
    "NodeTopology",
    "StoreNodeTopology",
    "StoreTopology",
    "Topology",
    "TopologyError",
    "load_topology",
    "render_toml",
]
