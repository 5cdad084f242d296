"""Checking every provider's credentials at startup (``validate_credentials=``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import anyio
import httpx

from .._adapter import CredentialCheck, CredentialState
from ..adapters import Provider

logger = logging.getLogger("provider_proxy")

#: ``off``: no probes; ``warn``: probe and log failures; ``strict``: failures stop startup.
ValidationMode = Literal["off", "warn", "strict"]

_FAILED = (CredentialState.AUTH_REJECTED, CredentialState.NETWORK_ERROR)


class CredentialsRejected(Exception):
    """Startup with ``validate_credentials="strict"`` found keys that do not work."""


async def validate_all(
    adapters: Sequence[Provider], client: httpx.AsyncClient, mode: ValidationMode
) -> dict[str, CredentialCheck]:
    """Probe every enabled provider at once; the results by name (never a key).

    In ``strict`` mode a rejected key or an unreachable provider raises
    :class:`CredentialsRejected` naming each; in ``warn`` mode they are logged.
    """
    results: dict[str, CredentialCheck] = {}
    if mode == "off":
        return results

    async def probe(adapter: Provider) -> None:
        try:
            results[adapter.name] = await adapter.validate_credentials(client)
        except Exception as exc:
            results[adapter.name] = CredentialCheck(
                CredentialState.INCONCLUSIVE, detail=f"the probe failed: {type(exc).__name__}"
            )

    async with anyio.create_task_group() as group:
        for adapter in adapters:
            group.start_soon(probe, adapter)
    failed = {name: check for name, check in sorted(results.items()) if check.state in _FAILED}
    for name, check in failed.items():
        logger.warning("credentials of provider %r: %s", name, _describe(check))
    if failed and mode == "strict":
        listed = "; ".join(f"{name}: {_describe(check)}" for name, check in failed.items())
        raise CredentialsRejected(f"Provider credentials failed their check: {listed}.")
    return {name: results[name] for name in (a.name for a in adapters)}


def _describe(check: CredentialCheck) -> str:
    """``auth_rejected (HTTP 401)``, with the probe's detail when it has one (never a key)."""
    status = f" (HTTP {check.status_code})" if check.status_code else ""
    detail = f": {check.detail}" if check.detail else ""
    return f"{check.state.value}{status}{detail}"
