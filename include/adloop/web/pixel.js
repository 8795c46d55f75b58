/*
 * adloop pixel helper: the browser half of adloop's conversions.
 *
 * Include it on every page, after (or instead of) Meta's base code:
 *
 *   <script src="https://adloop.example/pixel.js" data-pixel-id="1234567890123456"></script>
 *
 * It fires PageView on load and on every single-page-app route change (history.pushState,
 * replaceState, back/forward), and offers helpers whose eventID follows adloop's scheme, so Meta
 * counts a conversion once when the server sends the same one (event_id + event_name, 48 hours):
 *
 *   adloop.lead(leadId)                      Lead, eventID = the lead's id in the app
 *   adloop.completeRegistration(accountId)   CompleteRegistration, eventID = the account id
 *   adloop.schedule(bookingId, params)       Schedule, eventID = the booking id
 *   adloop.purchase(params[, sessionId])     Purchase, eventID = the Checkout Session id, read from
 *                                            the success URL's session_id parameter by default
 *   adloop.subscribe(subscriptionId, params) Subscribe, eventID = the Stripe Subscription id
 *
 * Consent: with tracking declined it fires nothing at all. Declined means adloop.optOut() was
 * called on this browser (localStorage and a first-party cookie `adloop_tracking=declined`), the
 * page set window.adloopConfig = {trackingDeclined: true}, or the browser sends Global Privacy
 * Control. adloop.optOut() also revokes consent in Meta's pixel; the server side is told by the
 * app (POST /consent/opt-out), so the webhook and the nightly backfill skip the customer too.
 */
(function (window, document) {
  "use strict";

  var CONSENT_KEY = "adloop_tracking";
  var META_SCRIPT = "https://connect.facebook.net/en_US/fbevents.js";
  var state = { pixelId: null, started: false, lastPath: null, watching: false };

  function declined() {
    var config = window.adloopConfig || {};
    if (config.trackingDeclined) return true;
    if (window.navigator && window.navigator.globalPrivacyControl === true) return true;
    try {
      if (window.localStorage && window.localStorage.getItem(CONSENT_KEY) === "declined") return true;
    } catch (e) {
      /* storage blocked: fall back to the cookie */
    }
    return /(?:^|;\s*)adloop_tracking=declined(?:;|$)/.test(document.cookie || "");
  }

  function call() {
    if (!state.started || declined() || typeof window.fbq !== "function") return false;
    window.fbq.apply(window, arguments);
    return true;
  }

  function newId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    return String(Date.now()) + "." + Math.random().toString(36).slice(2);
  }

  // The same rule as adloop.events.event_id_for: the id of the business object, as it is.
  function eventIdFor(eventName, objectId) {
    if (objectId === undefined || objectId === null || String(objectId) === "") return null;
    return String(objectId);
  }

  function track(eventName, objectId, params) {
    var eventId = eventIdFor(eventName, objectId);
    if (eventId === null) {
      if (window.console) window.console.warn("adloop: " + eventName + " needs the id of its object; not sent");
      return false;
    }
    return call("track", eventName, params || {}, { eventID: eventId });
  }

  function currentPath() {
    return window.location.pathname + window.location.search;
  }

  function pageView() {
    var path = currentPath();
    if (path === state.lastPath) return false; // a hash change or a replaceState of the same URL
    state.lastPath = path;
    // A page view is no business object: a random id per view (adloop.events, PageView).
    return call("track", "PageView", {}, { eventID: newId() });
  }

  function watchRoutes() {
    if (state.watching) return;
    state.watching = true;
    ["pushState", "replaceState"].forEach(function (name) {
      var original = window.history[name];
      if (typeof original !== "function") return;
      window.history[name] = function () {
        var result = original.apply(this, arguments);
        pageView();
        return result;
      };
    });
    window.addEventListener("popstate", pageView);
  }

  function loadMetaBase() {
    // Meta's base code, restated: a queue that fbevents.js drains once it has loaded.
    var fbq = function () {
      if (fbq.callMethod) fbq.callMethod.apply(fbq, arguments);
      else fbq.queue.push(arguments);
    };
    fbq.push = fbq;
    fbq.loaded = true;
    fbq.version = "2.0";
    fbq.queue = [];
    window.fbq = fbq;
    if (!window._fbq) window._fbq = fbq;
    var script = document.createElement("script");
    script.async = true;
    script.src = META_SCRIPT;
    var first = document.getElementsByTagName("script")[0];
    if (first && first.parentNode) first.parentNode.insertBefore(script, first);
    else document.head.appendChild(script);
  }

  function init(pixelId, options) {
    options = options || {};
    if (state.started) return true;
    if (!pixelId || declined()) return false; // declined: not even Meta's script is loaded
    if (typeof window.fbq !== "function") {
      if (options.loadMeta === false) return false;
      loadMetaBase();
    }
    state.pixelId = String(pixelId);
    window.fbq("init", state.pixelId);
    state.started = true;
    watchRoutes();
    pageView();
    return true;
  }

  function sessionIdFromUrl() {
    var match = /[?&]session_id=([^&#]*)/.exec(window.location.search);
    return match ? decodeURIComponent(match[1].replace(/\+/g, " ")) : null;
  }

  function optOut() {
    var wasStarted = state.started && typeof window.fbq === "function";
    try {
      window.localStorage.setItem(CONSENT_KEY, "declined");
    } catch (e) {
      /* the cookie below still records it */
    }
    document.cookie = CONSENT_KEY + "=declined; path=/; max-age=" + 60 * 60 * 24 * 400 + "; SameSite=Lax";
    if (wasStarted) window.fbq("consent", "revoke");
    state.started = false;
  }

  function optIn() {
    try {
      window.localStorage.removeItem(CONSENT_KEY);
    } catch (e) {
      /* nothing stored */
    }
    document.cookie = CONSENT_KEY + "=; path=/; max-age=0; SameSite=Lax";
  }

  window.adloop = {
    init: init,
    pageView: pageView,
    lead: function (leadId, params) {
      return track("Lead", leadId, params);
    },
    completeRegistration: function (accountId, params) {
      return track("CompleteRegistration", accountId, params);
    },
    schedule: function (bookingId, params) {
      return track("Schedule", bookingId, params);
    },
    purchase: function (params, sessionId) {
      return track("Purchase", sessionId || sessionIdFromUrl(), params);
    },
    subscribe: function (subscriptionId, params) {
      return track("Subscribe", subscriptionId, params);
    },
    eventIdFor: eventIdFor,
    optOut: optOut,
    optIn: optIn,
    trackingDeclined: declined,
  };

  var script = document.currentScript;
  var pixelId = script && script.getAttribute("data-pixel-id");
  if (pixelId) init(pixelId, { loadMeta: script.getAttribute("data-load-meta") !== "false" });
})(window, document);
