"""The Hub's address, credentials and client, as huggingface_hub knows them: `HF_ENDPOINT`,
`HF_TOKEN` or the login, and an `HfApi` whose HTTP goes through leakscan's guarded client. Every
Hub source (git mirror, discussions, LFS content, Space variables, buckets) takes them from here."""

from __future__ import annotations

import os

HUB_TIMEOUT = 60.0  # per connect and socket read of a REST call


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def api(hub_endpoint: str):
    from huggingface_hub import HfApi

    from .. import __version__

    _guard_hub_http(hub_endpoint)
    return HfApi(endpoint=hub_endpoint, library_name="leakscan", library_version=__version__)


_guarded_for: str | None = None


def _guard_hub_http(hub_endpoint: str) -> None:
    """huggingface_hub's requests go through the guarded client (`leakscan.net`), the endpoint
    being the one origin named by the operator. Set once per endpoint: the factory is global
    to huggingface_hub."""
    global _guarded_for
    if _guarded_for == hub_endpoint:
        return
    from huggingface_hub import set_client_factory

    from ..net import httpx_client

    set_client_factory(lambda: httpx_client([hub_endpoint], timeout=None, read_timeout=HUB_TIMEOUT))
    _guarded_for = hub_endpoint


def http_status(exc) -> str:
    resp = getattr(exc, "response", None)
    return f"HTTP {resp.status_code}" if resp is not None else str(exc).splitlines()[0][:120]


def hub_token() -> str | None:
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:
        return None
