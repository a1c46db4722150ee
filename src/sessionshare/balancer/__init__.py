"""The load balancer: an embedded asyncio proxy, or nginx configured from the same topology.

``Balancer`` (``proxy.py``) runs in-process; ``NginxProcess`` (``nginx.py``) runs real nginx.
Both take a ``BalancerConfig`` (``config.py``), so switching ``--lb`` changes nothing else.
"""

from sessionshare.balancer.config import (
    POLICIES,
    BalancerConfig,
    HealthConfig,
    NodeSpec,
    parse_node_option,
)
from sessionshare.balancer.nginx import NginxProcess, render_config
from sessionshare.balancer.proxy import Balancer
from sessionshare.balancer.status import LocalRequest, LocalResponse, StatusHook

__all__ = [
    "POLICIES",
    "Balancer",
    "BalancerConfig",
    "HealthConfig",
    "LocalRequest",
    "LocalResponse",
    "NginxProcess",
    "NodeSpec",
    "StatusHook",
    "parse_node_option",
    "render_config",
]
