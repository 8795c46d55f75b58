"""The Pixel snippet (include/adloop/web/pixel.js) in a real browser: headless Debian Chromium via
Playwright, on a page of the studio's site that records every `fbq` call.

The site is served by Playwright's request routing (no server); requests to Meta's
`connect.facebook.net` are recorded and aborted, so nothing leaves the machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PIXEL_JS = Path(__file__).resolve().parents[2] / "include" / "adloop" / "web" / "pixel.js"
SITE = "https://studio.example"
PIXEL_ID = "1234567890123456"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")

RECORDER = "window.fbqCalls = []; window.fbq = function () { window.fbqCalls.push(Array.from(arguments)); };"
RECORDING_PAGE = f"""<!doctype html><html><head><title>Studio</title><script>{RECORDER}</script>
<script src="/pixel.js" data-pixel-id="{PIXEL_ID}"></script></head><body>studio</body></html>"""

# A page that includes only adloop's snippet: it brings Meta's base code itself.
BARE_PAGE = f"""<!doctype html><html><head><script src="/pixel.js" data-pixel-id="{PIXEL_ID}"></script>
</head><body>studio</body></html>"""


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class Site:
    def __init__(self, browser, html: str = RECORDING_PAGE, declined: bool = False):
        self.context = browser.new_context()
        self.meta_requests: list[str] = []
        if declined:
            self.context.add_init_script("window.localStorage.setItem('adloop_tracking', 'declined');")
        self.context.route(f"{SITE}/**", lambda route: self._serve(route, html))
        self.context.route("https://connect.facebook.net/**", self._meta)
        self.page = self.context.new_page()

    def _serve(self, route, html: str) -> None:
        if route.request.url.split("?")[0].endswith("/pixel.js"):
            route.fulfill(body=PIXEL_JS.read_text(), content_type="application/javascript")
        else:
            route.fulfill(body=html, content_type="text/html")

    def _meta(self, route) -> None:
        self.meta_requests.append(route.request.url)
        route.abort()

    def open(self, path: str = "/"):
        self.page.goto(f"{SITE}{path}")
        return self

    def calls(self) -> list[list]:
        return self.page.evaluate("window.fbqCalls")

    def tracked(self) -> list[tuple]:
        return [(c[1], c[3]["eventID"]) for c in self.calls() if c[0] == "track"]

    def run(self, script: str):
        return self.page.evaluate(script)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def site(browser):
    sites = []

    def make(**kwargs) -> Site:
        sites.append(Site(browser, **kwargs))
        return sites[-1]

    yield make
    for s in sites:
        s.close()


def test_page_view_on_load_and_on_every_route_change(site):
    s = site().open("/classes")
    assert s.calls()[0] == ["init", PIXEL_ID]

    s.run("history.pushState({}, '', '/classes/yoga')")
    s.run("history.replaceState({}, '', '/classes/yoga')")  # the same URL: no new page view
    s.run("history.pushState({}, '', '/classes/yoga#schedule')")  # a hash change: no new page view
    s.run("history.pushState({}, '', '/book?class=spin')")
    s.page.go_back()
    s.page.wait_for_function("window.fbqCalls.filter(c => c[1] === 'PageView').length >= 4")

    views = [event_id for name, event_id in s.tracked() if name == "PageView"]
    assert len(views) == 4
    assert len(set(views)) == 4  # a random id per view: PageView has no business object


def test_conversions_carry_the_servers_event_ids(site):
    s = site().open("/checkout/thanks?session_id=cs_live_a1B2c3D4")
    results = s.run("""[
        adloop.purchase({value: 99.75, currency: 'CAD'}),
        adloop.subscribe('sub_1AbCdEf', {value: 149, currency: 'CAD'}),
        adloop.schedule('BKG-000042-001', {content_name: 'Vinyasa 60'}),
        adloop.lead('lead_77'),
        adloop.completeRegistration('acct_9'),
        adloop.purchase({value: 10, currency: 'CAD'}, 'cs_live_explicit'),
    ]""")

    assert results == [True] * 6
    conversions = [t for t in s.tracked() if t[0] != "PageView"]
    assert conversions == [
        ("Purchase", "cs_live_a1B2c3D4"),  # the Checkout Session id from Stripe's success URL
        ("Subscribe", "sub_1AbCdEf"),
        ("Schedule", "BKG-000042-001"),
        ("Lead", "lead_77"),
        ("CompleteRegistration", "acct_9"),
        ("Purchase", "cs_live_explicit"),
    ]
    purchase = next(c for c in s.calls() if c[:2] == ["track", "Purchase"])
    assert purchase[2] == {"value": 99.75, "currency": "CAD"}


def test_a_purchase_without_a_session_id_is_not_sent(site):
    s = site().open("/checkout/thanks")
    assert s.run("adloop.purchase({value: 1, currency: 'CAD'})") is False
    assert [t for t in s.tracked() if t[0] == "Purchase"] == []


def test_with_tracking_declined_nothing_fires(site):
    s = site(declined=True).open("/checkout/thanks?session_id=cs_live_x")
    results = s.run("""[adloop.purchase({value: 5, currency: 'CAD'}), adloop.lead('l1'),
                        adloop.schedule('b1'), adloop.trackingDeclined()]""")
    s.run("history.pushState({}, '', '/elsewhere')")
    assert results == [False, False, False, True]
    assert s.calls() == []

    bare = site(html=BARE_PAGE, declined=True).open("/")
    assert bare.run("typeof window.fbq") == "undefined"  # Meta's script is not even loaded
    assert bare.meta_requests == []


def test_opting_out_mid_visit_stops_tracking_and_is_remembered(site):
    s = site().open("/")
    s.run("adloop.optOut()")
    s.run("adloop.lead('after-opt-out'); history.pushState({}, '', '/next')")
    assert s.calls()[-1] == ["consent", "revoke"]
    assert [t for t in s.tracked() if t[0] == "Lead"] == []
    assert len([t for t in s.tracked() if t[0] == "PageView"]) == 1

    s.page.reload()
    assert s.calls() == []  # the next page load remembers the choice
    s.run("adloop.optIn()")
    s.page.reload()
    assert s.calls()[0] == ["init", PIXEL_ID]


def test_the_page_config_and_global_privacy_control_are_honoured(site):
    s = site(html=RECORDING_PAGE.replace("<script src", "<script>window.adloopConfig = {trackingDeclined: true};"
                                         "</script><script src")).open("/")
    assert s.calls() == []
    gpc = site()
    gpc.context.add_init_script("Object.defineProperty(navigator, 'globalPrivacyControl', {get: () => true});")
    gpc.open("/")
    assert gpc.calls() == []


def test_without_meta_base_code_the_snippet_loads_it_and_queues_the_calls(site):
    s = site(html=BARE_PAGE).open("/book")
    s.page.wait_for_timeout(200)
    assert s.meta_requests == ["https://connect.facebook.net/en_US/fbevents.js"]
    queued = s.run("Array.from(window.fbq.queue, args => Array.from(args))")
    assert queued[0] == ["init", PIXEL_ID]
    assert queued[1][:2] == ["track", "PageView"]
