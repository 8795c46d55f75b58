"""The facebook-business SDK, set up once for a Meta Connection.

Every Meta client of adloop (CAPI, audiences, insights) goes through here, so the Graph URL
(Meta's or the sandbox's), the API version and the timeout are decided in one place.
"""

from __future__ import annotations

from adloop.settings import MetaSettings


def graph_api(cfg: MetaSettings):
    """A FacebookAdsApi for `cfg`, also installed as the SDK's default (its objects use that)."""
    from facebook_business.api import FacebookAdsApi
    from facebook_business.session import FacebookSession

    # The SDK reads its base URL from this class attribute: the sandbox and the real Graph API
    # differ only here. Known shortcoming: it is process-wide, so one process talks to one Graph
    # URL at a time (true of every adloop task).
    FacebookSession.GRAPH = cfg.graph_url.rstrip("/")
    return FacebookAdsApi.init(
        access_token=cfg.access_token,
        api_version=cfg.api_version,
        timeout=cfg.timeout_seconds,
        crash_log=False,  # the SDK would otherwise report our errors to Meta
    )
