"""The facebook-business SDK, set up for a Meta Connection.

Every Meta client of adloop (CAPI, audiences) goes through here, so the Graph URL (Meta's or the
sandbox's), the API version and the timeout are decided in one place. (The insights client
subclasses the SDK's API object for pacing, and sets up its session the same way.)
"""

from __future__ import annotations

from adloop.settings import MetaSettings


def graph_api(cfg: MetaSettings):
    """A FacebookAdsApi for `cfg`, also installed as the SDK's default (its objects use that)."""
    from facebook_business.api import FacebookAdsApi
    from facebook_business.session import FacebookSession

    session = FacebookSession(access_token=cfg.access_token, timeout=cfg.timeout_seconds)
    # The SDK builds every URL from its session's GRAPH; set on this session only, so the sandbox
    # and the real Graph API can be reached from one process. Built directly rather than through
    # FacebookAdsApi.init, which would also install the SDK's crash reporter (it reports to Meta).
    session.GRAPH = cfg.graph_url.rstrip("/")
    api = FacebookAdsApi(session, api_version=cfg.api_version)
    FacebookAdsApi.set_default_api(api)
    return api
