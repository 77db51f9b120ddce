"""Which connection target each stream of a manager goes to, from its endpoint preset.

The routed ``usdm`` preset sends each stream to its USD-M route (``/public`` or ``/market``) under
its root URL; the single-route presets refuse the other route's streams; every other endpoint has
one target. A manager opened on a decommissioned USD-M root is warned about: those roots accept
``SUBSCRIBE`` and then send nothing.
"""

from __future__ import annotations

import logging
from functools import partial
from urllib.parse import urlsplit, urlunsplit

from ..config import WSManagerConfig, redact_url
from ..core.targets import Router
from ..endpoints import DECOMMISSIONED_ROOTS, Endpoint, route_refusal, usdm_route

__all__ = ["router_for", "warn_if_decommissioned"]

log = logging.getLogger("wsmanager")


def router_for(config: WSManagerConfig, endpoint: Endpoint | None) -> Router:
    """The :class:`~wsmanager.core.targets.Router` of a manager on ``endpoint``."""
    if endpoint is None or not endpoint.routes:
        return Router(config)
    refusal = partial(route_refusal, routes=endpoint.routes)
    if endpoint.routed:
        return Router(config, endpoint.routes, usdm_route, refusal)
    return Router(config, refusal=refusal)


def warn_if_decommissioned(url: str) -> bool:
    """Log a WARNING when ``url`` is a known decommissioned USD-M root; True if it was."""
    parts = urlsplit(url)
    bare = urlunsplit((parts.scheme, parts.netloc.lower(), parts.path.rstrip("/"), "", ""))
    if bare not in DECOMMISSIONED_ROOTS:
        return False
    log.warning(
        "%s is a decommissioned USD-M root (2026-04-23): it accepts SUBSCRIBE and then sends "
        'nothing for most streams; use WSManager(endpoint="usdm"), which sends each stream '
        "to its route (/public or /market)",
        redact_url(url),
    )
    return True
