/*
 * connect.js: UniPost Connect in a popup window, for pages with their own front end.
 *
 * An ES module with no dependency and no build step. Load it with the template tag
 * {% unipost_connect_script %} (a <script type="module"> whose data attributes carry the
 * JSON API's URLs and the CSRF token), then either
 *
 *     import { connect } from ".../unipost_connect/connect.js";   // the same URL as the tag's
 *     window.UniPostConnect.connect(...)                          // or the global it sets
 *
 *     const session = await UniPostConnect.connect("linkedin", {
 *       next: "/settings/",             // where a full-page fallback ends (default: this page)
 *       onSuccess(session) {},          // completed: session is the api-session answer
 *       onError(error) {},              // cancelled, expired, failed, a hosted error, an API error
 *       onClose(session) {},            // the user closed the popup; the session is still pending
 *       onPopupState(state) {},         // "open": seen on its way, a close will be noticed;
 *                                       // "cut_off": out of reach (COOP), a close will not be;
 *                                       // "closed": closed by the user (onClose follows
 *                                       // unless the session turns out finished)
 *       signal: abortController.signal, // stop waiting (also: the returned promise's cancel())
 *     });
 *
 * The promise resolves with the completed session and rejects with a ConnectError whose
 * `code` says why: "cancelled", "expired", "failed", "error" (the hosted page sent the user
 * back without finishing), "closed", "aborted" (name "AbortError"), "popup_blocked" (only
 * with `redirect: false`), "network", or the JSON API's own error code (with `status`).
 *
 * How it decides (nothing a window says is trusted on its own):
 * - The popup is opened on about:blank inside the click, so popup blockers allow it; then
 *   the session is created (POST api-sessions, X-CSRFToken) and the popup sent to UniPost.
 *   When the popup is blocked the whole page goes to UniPost instead (a full-page flow).
 * - The popup's last page reports {"source": "unipost-connect", "session_id", "status"} by
 *   postMessage (accepted only from the popup itself and only with this exact origin) and
 *   on BroadcastChannel("unipost-connect"). Every report, and every poll of api-session
 *   while the popup is out, is confirmed with api-session: only its answer ends the flow.
 * - Cross-Origin-Opener-Policy on the hosted page (or this site's own, Django's default,
 *   when the hosted page is on another origin) cuts the popup off from this page: the popup
 *   then reads as closed while it is still open (in Chromium, within milliseconds of the
 *   hosted page arriving). So a close is believed only when (1) the popup had been seen open
 *   on its way: showing a page of this origin, or a page of another origin steadily for a
 *   second; and (2) this page has the focus, or gets it back (a closed popup hands the focus
 *   back to its opener; a cut-off one keeps it). Otherwise the popup was cut off, and the flow
 *   goes on waiting for the report or the poll. The one limit: when the user closes a cut-off
 *   popup, nothing can see it; the page may stop waiting (signal, or cancel()).
 */

const SOURCE = "unipost-connect";
const CHANNEL_NAME = "unipost-connect";
const ID_PLACEHOLDER = "{id}";
const TERMINAL = new Set(["completed", "cancelled", "expired", "failed"]);
// How often the popup is looked at: often until it is seen open (or cut off), then less.
const WATCH_INTERVAL_MS = 250;
const FIRST_WATCH_INTERVAL_MS = 50;
// A popup on another origin is "seen open" once it has read open this long: a cut-off one
// reads open-but-unreadable for a few milliseconds before it reads closed.
const STEADY_MS = 1000;
const DEFAULTS = Object.freeze({
  sessionsUrl: "",
  sessionUrl: "",
  accountsUrl: "",
  accountUrl: "",
  csrfToken: "",
  csrfCookieName: "csrftoken",
  pollInterval: 2000, // the first poll of api-session; each next one waits 1.5 times longer
  maxPollInterval: 10000,
  popupWidth: 520,
  popupHeight: 720,
});
const MESSAGES = {
  cancelled: "The authorization was declined.",
  expired: "The connect session expired before it was finished.",
  failed: "The connect session could not be started.",
  error: "The hosted page reported a problem; nothing was connected.",
  closed: "The popup was closed before the connection was finished.",
  aborted: "Waiting for the connection was cancelled.",
  popup_blocked: "The popup was blocked.",
  network: "The site could not be reached.",
};

/** Why a connect flow did not end with a connected account. */
export class ConnectError extends Error {
  constructor(code, message, { session = null, status = null, cause } = {}) {
    super(message || MESSAGES[code] || code, cause === undefined ? undefined : { cause });
    this.name = code === "aborted" ? "AbortError" : "ConnectError";
    this.code = code;
    this.session = session; // the api-session answer, when there is one
    this.status = status; // the HTTP status, for an error answered by the JSON API
  }
}

let settings = null;

function fromTag() {
  const script = document.querySelector("script[data-unipost-connect]");
  if (!script) {
    return {};
  }
  const found = {};
  for (const key of ["sessionsUrl", "sessionUrl", "accountsUrl", "accountUrl", "csrfToken", "csrfCookieName"]) {
    if (script.dataset[key]) {
      found[key] = script.dataset[key];
    }
  }
  return found;
}

function current() {
  if (settings === null) {
    settings = Object.assign({}, DEFAULTS, fromTag());
  }
  return settings;
}

/** Set (some of) the URLs and options the tag would give; returns the whole configuration. */
export function configure(options = {}) {
  settings = Object.assign({}, current(), options);
  return getConfig();
}

/** A copy of the configuration in use. `sessionUrl` and `accountUrl` hold "{id}". */
export function getConfig() {
  return Object.assign({}, current());
}

/** The CSRF token for a write: the CSRF cookie when it can be read, else the tag's token. */
export function csrfToken() {
  const { csrfCookieName, csrfToken: given } = current();
  for (const part of document.cookie ? document.cookie.split(";") : []) {
    const at = part.indexOf("=");
    if (at > 0 && part.slice(0, at).trim() === csrfCookieName) {
      return decodeURIComponent(part.slice(at + 1).trim());
    }
  }
  return given || "";
}

/** `template` ("…/{id}/") with the id in it. */
export function urlFor(template, id) {
  return template.replace(ID_PLACEHOLDER, encodeURIComponent(String(id)));
}

/**
 * One call to the JSON API: JSON in and out, the session cookie, X-CSRFToken on writes.
 * Resolves with the decoded body (null for an empty one); rejects with a ConnectError
 * carrying the API's error code and the HTTP status.
 */
export async function request(url, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  if (!["GET", "HEAD", "OPTIONS"].includes(method.toUpperCase())) {
    headers["X-CSRFToken"] = csrfToken();
  }
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      redirect: "error", // the API never redirects; a login page is not an answer
      signal,
    });
  } catch (error) {
    if (error && error.name === "AbortError") {
      throw error;
    }
    throw new ConnectError("network", MESSAGES.network, { cause: error });
  }
  let payload = null;
  const text = await response.text().catch(() => "");
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch (error) {
      payload = null;
    }
  }
  if (!response.ok) {
    const detail = payload && typeof payload === "object" && payload.error ? payload.error : {};
    throw new ConnectError(
      typeof detail.code === "string" ? detail.code : `http_${response.status}`,
      typeof detail.message === "string" ? detail.message : `The site answered HTTP ${response.status}.`,
      { status: response.status },
    );
  }
  return payload;
}

function isReport(data) {
  return (
    data !== null &&
    typeof data === "object" &&
    data.source === SOURCE &&
    data.type === undefined &&
    typeof data.session_id === "string" &&
    typeof data.status === "string"
  );
}

function safely(callback, ...args) {
  if (typeof callback !== "function") {
    return;
  }
  try {
    callback(...args);
  } catch (error) {
    // A page's callback that throws must not leave the promise unsettled.
    setTimeout(() => {
      throw error;
    });
  }
}

function popupFeatures({ popupWidth: width, popupHeight: height }) {
  const left = Math.max(0, Math.round((window.screenX || 0) + ((window.outerWidth || width) - width) / 2));
  const top = Math.max(0, Math.round((window.screenY || 0) + ((window.outerHeight || height) - height) / 2));
  return `popup=yes,width=${width},height=${height},left=${left},top=${top}`;
}

class Flow {
  constructor(platform, options) {
    this.platform = platform;
    this.options = options;
    this.config = current();
    this.next = typeof options.next === "string" ? options.next : window.location.pathname + window.location.search;
    this.controller = new AbortController(); // the flow's own fetches
    this.popup = null;
    this.sessionId = null;
    this.navigated = false; // the popup was sent to the hosted page
    this.seenOpen = false; // ...and seen open there afterwards: its close can be believed
    this.foreignSince = null; // when it was first seen open on another origin
    this.cutOff = false; // it read closed before that: COOP took it away from this page
    this.closedByUser = false;
    this.reported = null; // the status the popup's last page reported, until confirmed
    this.settled = false;
    this.channel = null;
    this.watchTimer = null;
    this.pollTimer = null;
    this.polling = false;
    this.pollAgain = false;
    this.pollDelay = Math.max(250, Number(this.config.pollInterval) || DEFAULTS.pollInterval);
    this.failures = 0;
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.onMessage = this.onMessage.bind(this);
    this.onAbort = this.abort.bind(this);
    this.onFocus = this.onFocus.bind(this);
    this.watch = this.watch.bind(this);
    this.poll = this.poll.bind(this);
  }

  begin() {
    const { signal } = this.options;
    if (signal) {
      if (signal.aborted) {
        this.finish("aborted");
        return;
      }
      signal.addEventListener("abort", this.onAbort, { once: true });
    }
    if (!this.config.sessionsUrl || !this.config.sessionUrl) {
      this.finish(
        "error",
        null,
        new ConnectError("not_configured", "No API URLs: add {% unipost_connect_script %} or call configure()."),
      );
      return;
    }
    let popup = null;
    try {
      // Inside the click, before any await: this is what popup blockers allow.
      popup = window.open("about:blank", "_blank", popupFeatures(this.config));
    } catch (error) {
      popup = null;
    }
    if (!popup || popup.closed) {
      this.redirect();
      return;
    }
    this.popup = popup;
    this.listen();
    this.create(true).then((created) => {
      if (this.settled || created === null) {
        return;
      }
      if (this.closedByUser || popup.closed) {
        // Closed while still on about:blank, before any navigation: no COOP can be at work.
        this.watch();
        this.pollNow();
        return;
      }
      try {
        popup.location.replace(created.url);
        this.navigated = true;
      } catch (error) {
        this.finish("error", null, new ConnectError("error", "The popup could not be sent to UniPost.", { cause: error }));
        return;
      }
      this.schedulePoll(this.pollDelay);
    });
  }

  async redirect() {
    if (this.options.redirect === false) {
      this.finish("popup_blocked");
      return;
    }
    const created = await this.create(false);
    if (created !== null && !this.settled) {
      // The page leaves; the return view brings the user back to `next` with a message.
      window.location.assign(created.url);
    }
  }

  /** POST api-sessions; the created session, or null once the flow has ended. */
  async create(popup) {
    let created;
    try {
      created = await request(this.config.sessionsUrl, {
        method: "POST",
        body: { platform: this.platform, next: this.next, popup },
        signal: this.controller.signal,
      });
    } catch (error) {
      if (!this.settled) {
        this.finish("error", null, error instanceof ConnectError ? error : new ConnectError("error", String(error)));
      }
      return null;
    }
    if (this.settled) {
      return null;
    }
    if (!created || typeof created.id !== "string" || !/^https?:\/\//i.test(String(created.url || ""))) {
      this.finish("error", null, new ConnectError("error", "The site's answer has no session to open."));
      return null;
    }
    this.sessionId = created.id;
    return created;
  }

  listen() {
    window.addEventListener("message", this.onMessage);
    if (typeof BroadcastChannel === "function") {
      this.channel = new BroadcastChannel(CHANNEL_NAME);
      this.channel.onmessage = (event) => this.onReport(event.data, null);
    }
    this.watchTimer = setInterval(this.watch, FIRST_WATCH_INTERVAL_MS);
  }

  setWatch(interval) {
    clearInterval(this.watchTimer);
    this.watchTimer = interval === null ? null : setInterval(this.watch, interval);
  }

  onMessage(event) {
    // Only the popup this flow opened, showing a page of this very origin.
    if (event.origin !== window.location.origin || this.popup === null || event.source !== this.popup) {
      return;
    }
    this.onReport(event.data, event.source);
  }

  onReport(data, replyTo) {
    if (this.settled || this.sessionId === null || !isReport(data) || data.session_id !== this.sessionId) {
      return;
    }
    const ack = { source: SOURCE, type: "ack", session_id: this.sessionId };
    if (replyTo !== null) {
      try {
        replyTo.postMessage(ack, window.location.origin);
      } catch (error) {
        // gone already
      }
    }
    if (this.channel !== null) {
      this.channel.postMessage(ack);
    }
    this.reported = data.status;
    this.pollNow();
  }

  /** Look at the popup: open on its way, closed by the user, or cut off by COOP. */
  watch() {
    const popup = this.popup;
    if (this.settled || popup === null || this.watchTimer === null) {
      return;
    }
    let closed;
    try {
      closed = popup.closed;
    } catch (error) {
      closed = true;
    }
    if (closed) {
      this.setWatch(null);
      this.cutOff = true; // until a close is believed: nothing of it can be seen from here
      // Before it was sent anywhere it was this page's about:blank: no COOP can be at work.
      const believable = this.seenOpen || !this.navigated;
      if (believable && document.hasFocus()) {
        this.believeClosed();
      } else {
        if (believable) {
          window.addEventListener("focus", this.onFocus); // the focus back: it was closed
        }
        safely(this.options.onPopupState, "cut_off");
      }
      return;
    }
    if (this.navigated && !this.seenOpen) {
      let href = "";
      try {
        href = popup.location.href;
      } catch (error) {
        href = null; // another origin's page
      }
      if (href === null) {
        this.foreignSince = this.foreignSince === null ? Date.now() : this.foreignSince;
        this.seenOpen = Date.now() - this.foreignSince >= STEADY_MS;
      } else {
        this.foreignSince = null;
        this.seenOpen = Boolean(href) && href !== "about:blank";
      }
      if (this.seenOpen) {
        this.setWatch(WATCH_INTERVAL_MS);
        safely(this.options.onPopupState, "open");
      }
    }
  }

  believeClosed() {
    window.removeEventListener("focus", this.onFocus);
    this.cutOff = false;
    this.closedByUser = true;
    safely(this.options.onPopupState, "closed");
    this.pollNow();
  }

  onFocus() {
    if (!this.settled) {
      this.believeClosed();
    }
  }

  pollNow() {
    this.schedulePoll(0);
  }

  schedulePoll(delay) {
    if (this.settled || this.sessionId === null) {
      return;
    }
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(this.poll, delay);
  }

  async poll() {
    if (this.settled) {
      return;
    }
    if (this.polling) {
      this.pollAgain = true;
      return;
    }
    this.polling = true;
    try {
      const session = await request(urlFor(this.config.sessionUrl, this.sessionId), {
        signal: this.controller.signal,
      });
      this.failures = 0;
      this.decide(session);
    } catch (error) {
      if (!this.settled) {
        this.failures += 1;
        const status = error instanceof ConnectError ? error.status : null;
        // Logged out, or the session is gone: no later poll can answer. A network blip or
        // a 5xx may pass, unless the flow is only waiting for this answer.
        const waitingForAnswer = this.closedByUser || this.reported !== null;
        if ([401, 403, 404, 410].includes(status) || (waitingForAnswer && this.failures >= 3)) {
          this.finish("error", null, error instanceof ConnectError ? error : new ConnectError("error", String(error)));
        }
      }
    } finally {
      this.polling = false;
      if (!this.settled) {
        if (this.pollAgain || this.reported !== null || this.closedByUser) {
          this.pollAgain = false;
          this.schedulePoll(this.failures ? 1000 : 0);
        } else {
          this.schedulePoll(this.pollDelay);
          this.pollDelay = Math.min(this.pollDelay * 1.5, Number(this.config.maxPollInterval) || DEFAULTS.maxPollInterval);
        }
      }
    }
  }

  /** What an api-session answer means for the flow. */
  decide(session) {
    if (this.settled || !session || typeof session.status !== "string") {
      return;
    }
    if (TERMINAL.has(session.status)) {
      this.finish(session.status, session);
      return;
    }
    if (this.reported === "pending") {
      // The return page saw it pending too: the hosted page sent the user back unfinished.
      this.finish("error", session);
      return;
    }
    // A report of an outcome the API does not confirm is not believed (a forged message).
    this.reported = null;
    if (this.closedByUser) {
      this.finish("closed", session);
    }
  }

  abort() {
    this.finish("aborted");
  }

  finish(outcome, session = null, error = null) {
    if (this.settled) {
      return;
    }
    this.settled = true;
    this.cleanUp();
    if (outcome === "completed") {
      safely(this.options.onSuccess, session);
      this.resolve(session);
      return;
    }
    // The API's words for the user when it has them (translated, like the HTML flow's).
    const told = session && session.error && typeof session.error.message === "string" ? session.error.message : "";
    const failure = error || new ConnectError(outcome, told || MESSAGES[outcome], { session });
    if (failure.session === null && session !== null) {
      failure.session = session;
    }
    if (outcome === "closed") {
      safely(this.options.onClose, session);
    } else if (outcome !== "aborted") {
      safely(this.options.onError, failure);
    }
    this.reject(failure);
  }

  cleanUp() {
    clearTimeout(this.pollTimer);
    this.setWatch(null);
    window.removeEventListener("message", this.onMessage);
    window.removeEventListener("focus", this.onFocus);
    if (this.channel !== null) {
      this.channel.close();
      this.channel = null;
    }
    if (this.options.signal) {
      this.options.signal.removeEventListener("abort", this.onAbort);
    }
    this.controller.abort();
    // A popup still reachable from here (UniPost's own last page, say) is closed; a cut-off
    // one closes itself on the way back, or stays the user's to close.
    if (this.popup !== null && !this.cutOff) {
      try {
        if (!this.popup.closed) {
          this.popup.close();
        }
      } catch (error) {
        // nothing to close
      }
    }
  }
}

/**
 * Connect an account of `platform` ("linkedin", ...) in a popup; call it inside a click
 * handler. Returns a promise (with a cancel() method) of the completed session.
 */
export function connect(platform, options = {}) {
  const flow = new Flow(String(platform), options || {});
  flow.begin();
  const promise = flow.promise;
  promise.cancel = () => flow.abort();
  return promise;
}

// {% unipost_connect_button "linkedin" popup=True %} renders a plain form that works
// without JavaScript; with this script its submit opens the popup instead, then the page
// goes to the form's `next` (where the return view's message is shown), unless a listener
// of the form's "unipost-connect:done" event calls preventDefault().
function onSubmit(event) {
  const form = event.target;
  if (event.defaultPrevented || !(form instanceof HTMLFormElement) || !form.hasAttribute("data-unipost-connect-popup")) {
    return;
  }
  const field = (name) => {
    const element = form.elements.namedItem(name);
    return element && "value" in element ? element.value : "";
  };
  const platform = field("platform");
  if (!platform) {
    return;
  }
  event.preventDefault();
  const next = field("next");
  const button = event.submitter || form.querySelector("[type=submit]");
  form.setAttribute("aria-busy", "true");
  if (button) {
    button.disabled = true;
  }
  const done = (session, error) => {
    form.removeAttribute("aria-busy");
    if (button) {
      button.disabled = false;
    }
    const detail = { session, error };
    const proceed = form.dispatchEvent(new CustomEvent("unipost-connect:done", { bubbles: true, cancelable: true, detail }));
    if (proceed && !(error && ["aborted", "closed"].includes(error.code))) {
      window.location.assign(next || window.location.href);
    }
  };
  connect(platform, next ? { next } : {}).then(
    (session) => done(session, null),
    (error) => done(error.session || null, error),
  );
}

const UniPostConnect = Object.freeze({ connect, configure, getConfig, csrfToken, request, urlFor, ConnectError });

if (!globalThis.UniPostConnect) {
  globalThis.UniPostConnect = UniPostConnect;
  document.addEventListener("submit", onSubmit);
}

export default UniPostConnect;
