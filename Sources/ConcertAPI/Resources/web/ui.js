/* concertd web page: DOM helpers, formatting, view lifecycle and polling loops. */
"use strict";

(function (CT) {
  const ui = (CT.ui = {});

  /**
   * Builds an element: h("button", {class: "x", onclick: fn, "aria-label": "..."}, "text", child).
   * Text is always set as text (never parsed as HTML).
   */
  ui.h = function (tag, attrs, ...children) {
    const element = document.createElement(tag);
    if (attrs) {
      for (const [name, value] of Object.entries(attrs)) {
        if (value === undefined || value === null || value === false) continue;
        if (name.startsWith("on") && typeof value === "function") {
          element.addEventListener(name.slice(2), value);
        } else if (name === "class") {
          element.className = value;
        } else if (name === "text") {
          element.textContent = value;
        } else if (name === "dataset") {
          Object.assign(element.dataset, value);
        } else if (value === true) {
          element.setAttribute(name, "");
        } else if (name === "value") {
          element.value = value;
        } else {
          element.setAttribute(name, String(value));
        }
      }
    }
    ui.append(element, children);
    return element;
  };
  ui.append = function (parent, ...children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return parent;
  };
  ui.clear = function (element) {
    while (element.firstChild) element.removeChild(element.firstChild);
    return element;
  };
  ui.replace = function (element, ...children) {
    ui.clear(element);
    return ui.append(element, children);
  };

  // ---- formatting ----------------------------------------------------------------------
  ui.points = (n) => Number(n).toLocaleString("en-US") + " points";
  ui.number = (n) => Number(n).toLocaleString("en-US");
  ui.dateTime = function (iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso);
    return date.toLocaleString(undefined, {
      weekday: "short", year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    });
  };
  /** "about 2 minutes" for an estimated wait in seconds. */
  ui.wait = function (seconds) {
    const s = Math.max(0, Math.round(Number(seconds) || 0));
    if (s < 10) return "a few seconds";
    if (s < 60) return "about " + s + " seconds";
    const minutes = Math.round(s / 60);
    if (minutes < 60) return "about " + minutes + (minutes === 1 ? " minute" : " minutes");
    const hours = Math.floor(minutes / 60);
    return "about " + hours + " h " + (minutes % 60) + " min";
  };
  /** "4:07" for a remaining duration in milliseconds. */
  ui.clock = function (ms) {
    const total = Math.max(0, Math.ceil(ms / 1000));
    const hours = Math.floor(total / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const seconds = String(total % 60).padStart(2, "0");
    return hours > 0 ? hours + ":" + String(minutes).padStart(2, "0") + ":" + seconds : minutes + ":" + seconds;
  };

  // ---- messages ------------------------------------------------------------------------
  /** A notice: kind is "error", "success" or "info". Errors are announced (role=alert). */
  ui.notice = function (kind, text, ...extra) {
    return ui.h("div", { class: "notice notice-" + kind, role: kind === "error" ? "alert" : "status" },
      ui.h("p", { class: "notice-text", text }), extra);
  };
  /**
   * An error box with a readable message; a "Try again" button when retrying makes sense and
   * `retry` is given; a sign-in link when the sign-in is gone.
   */
  ui.errorBox = function (error, { retry, extra } = {}) {
    const parts = [];
    if (error instanceof CT.ApiError && error.code === "UNAUTHENTICATED") {
      parts.push(ui.h("a", { href: "#/signin", class: "button button-small", onclick: () => ui.rememberReturn() }, "Sign in"));
    }
    if (retry && (!(error instanceof CT.ApiError) || error.retryable)) {
      parts.push(ui.h("button", { type: "button", class: "button button-small", onclick: retry }, "Try again"));
    }
    if (extra) parts.push(extra);
    const box = ui.notice("error", CT.messageFor(error), parts.length ? ui.h("div", { class: "notice-actions" }, parts) : null);
    box.dataset.code = error instanceof CT.ApiError ? error.code : "CLIENT";
    return box;
  };
  ui.rememberReturn = function () {
    if (!location.hash.startsWith("#/signin")) CT.store.set("returnTo", location.hash || "#/concerts");
  };

  /** The banner under the header (for messages that survive a page change). */
  ui.banner = function (text, kind = "info") {
    const banner = document.getElementById("banner");
    if (!text) {
      banner.hidden = true;
      ui.clear(banner);
      return;
    }
    banner.className = "banner banner-" + kind;
    ui.replace(banner, ui.h("p", { text }),
      ui.h("button", { type: "button", class: "banner-close", "aria-label": "Dismiss message", onclick: () => ui.banner(null) }, "×"));
    banner.hidden = false;
  };

  // ---- forms ---------------------------------------------------------------------------
  /** A labelled input with a hint and an error slot. Returns {field, input, setError}. */
  ui.field = function ({ id, label, hint, type = "text", value = "", attrs = {} }) {
    const hintId = hint ? id + "-hint" : null;
    const errorId = id + "-error";
    const input = ui.h(type === "textarea" ? "textarea" : "input", Object.assign({
      id, name: id, type: type === "textarea" ? undefined : type, "aria-describedby": [hintId, errorId].filter(Boolean).join(" "),
    }, attrs));
    if (value !== undefined && value !== null) input.value = value;
    const error = ui.h("p", { class: "field-error", id: errorId, hidden: true });
    const field = ui.h("div", { class: "field" },
      ui.h("label", { for: id, text: label }), input, hint ? ui.h("p", { class: "field-hint", id: hintId, text: hint }) : null, error);
    function setError(message) {
      if (message) {
        error.textContent = message;
        error.hidden = false;
        input.setAttribute("aria-invalid", "true");
      } else {
        error.textContent = "";
        error.hidden = true;
        input.removeAttribute("aria-invalid");
      }
    }
    input.addEventListener("input", () => setError(null));
    return { field, input, setError };
  };

  /** Keeps what is typed into `form` in sessionStorage under `key`, so nothing is lost on errors or reloads. */
  ui.keepDraft = function (form, key) {
    const saved = CT.store.get("draft." + key);
    const controls = Array.from(form.elements).filter((el) => el.name && el.type !== "submit" && el.type !== "button");
    if (saved && typeof saved === "object") {
      for (const el of controls) {
        if (!(el.name in saved)) continue;
        if (el.type === "checkbox") el.checked = !!saved[el.name];
        else el.value = saved[el.name];
      }
    }
    const save = () => {
      const draft = {};
      for (const el of controls) draft[el.name] = el.type === "checkbox" ? el.checked : el.value;
      CT.store.set("draft." + key, draft);
    };
    form.addEventListener("input", save);
    form.addEventListener("change", save);
    return { clear: () => CT.store.remove("draft." + key) };
  };

  /** Disables a button while `work` runs, with a busy label. */
  ui.busy = async function (button, busyLabel, work) {
    const label = button.textContent;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    button.textContent = busyLabel;
    try {
      return await work();
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      button.textContent = label;
    }
  };

  // ---- views: one at a time; leaving one stops its timers --------------------------------
  let current = null;
  ui.beginView = function () {
    if (current) current.leave();
    const cleanups = [];
    let alive = true;
    const view = {
      get alive() { return alive; },
      onLeave(fn) { cleanups.push(fn); },
      leave() {
        alive = false;
        cleanups.splice(0).forEach((fn) => { try { fn(); } catch (_) { /* ignore */ } });
      },
      /** setInterval that ends with the view (for countdowns). */
      every(ms, fn) {
        const id = setInterval(() => { if (alive) fn(); }, ms);
        cleanups.push(() => clearInterval(id));
        fn();
        return id;
      },
      /**
       * A polling loop: `task` returns the delay in ms before the next run, or null to stop.
       * Nothing runs while the tab is hidden (document.visibilityState); it runs at once when
       * the tab is shown again. Returns {now(), stop()}.
       */
      loop(task, firstDelay = 0) {
        let timer = null;
        let running = false;
        let stopped = false;
        let waitingForVisible = false;
        async function tick() {
          timer = null;
          if (stopped || !alive) return;
          if (document.visibilityState === "hidden") {
            waitingForVisible = true;
            return;
          }
          running = true;
          let next = null;
          try {
            next = await task();
          } catch (error) {
            console.error(error);
            next = 10000;
          }
          running = false;
          if (stopped || !alive || next === null || next === undefined) return;
          timer = setTimeout(tick, next);
        }
        function onVisibility() {
          if (document.visibilityState === "visible" && waitingForVisible && !running && !stopped) {
            waitingForVisible = false;
            tick();
          }
        }
        document.addEventListener("visibilitychange", onVisibility);
        const control = {
          now() {
            if (stopped || running) return;
            if (timer) clearTimeout(timer);
            waitingForVisible = false;
            tick();
          },
          stop() {
            stopped = true;
            if (timer) clearTimeout(timer);
            document.removeEventListener("visibilitychange", onVisibility);
          },
        };
        cleanups.push(() => control.stop());
        timer = setTimeout(tick, firstDelay);
        return control;
      },
    };
    current = view;
    return view;
  };
})(window.CT);
