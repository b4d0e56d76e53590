/* concertd web page: sign-in, the header, and the hash router. */
"use strict";

(function (CT) {
  const { h, replace } = CT.ui;

  // ---- sign-in -------------------------------------------------------------------------
  let devSignIn = null; // null: not known yet; true/false once asked

  /** Whether the server runs with --dev: POST /dev/token exists (a GET answers 405 then, 404 otherwise). */
  async function probeDev() {
    if (devSignIn !== null) return devSignIn;
    try {
      const response = await fetch("/dev/token", { method: "GET", cache: "no-store", headers: { Accept: "application/json" } });
      devSignIn = response.status === 405;
    } catch (_) {
      return false; // unknown: ask again next time
    }
    return devSignIn;
  }

  function afterSignIn() {
    const back = CT.store.get("returnTo");
    CT.store.remove("returnTo");
    location.hash = back && back !== "#/signin" ? back : CT.auth.isAdmin() ? "#/admin" : "#/concerts";
  }

  function signInView(view) {
    const root = document.getElementById("view");
    const status = h("div", { class: "status-area" });
    const devBox = h("div", null, h("p", { class: "muted" }, "Checking how to sign in…"));

    const jwt = CT.ui.field({ id: "jwt", label: "JWT", type: "textarea",
      hint: "Paste a token, e.g. the output of “concertd token --user 42”. It is kept in this tab only (sessionStorage).",
      attrs: { rows: "4", autocomplete: "off", spellcheck: "false" } });
    const jwtForm = h("form", { class: "form", novalidate: true, "aria-labelledby": "jwt-heading" },
      jwt.field, h("div", { class: "actions" }, h("button", { type: "submit", class: "button", "data-action": "use-jwt" }, "Use this token")));
    jwtForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = jwt.input.value.trim();
      const problem = CT.auth.problemWith(value);
      if (problem) {
        jwt.setError(problem);
        jwt.input.focus();
        return;
      }
      CT.auth.signIn(value);
      afterSignIn();
    });
    const jwtSection = h("section", { class: "panel", "aria-labelledby": "jwt-heading" },
      h("h2", { id: "jwt-heading" }, "Sign in with a token"), jwtForm);

    const current = CT.auth.userId()
      ? CT.ui.notice("info", "You are signed in as " + whoText() + ".",
          h("div", { class: "notice-actions" }, h("button", { type: "button", class: "button button-small button-secondary", onclick: () => { CT.auth.signOut(); route(); } }, "Sign out")))
      : null;
    replace(root, h("h1", { tabindex: "-1" }, "Sign in"), current, status, devBox, jwtSection);

    probeDev().then((dev) => {
      if (!view.alive) return;
      if (!dev) {
        replace(devBox);
        return;
      }
      const userId = CT.ui.field({ id: "dev-user", label: "User id", value: "42",
        hint: "Any positive whole number; a user exists from first use.", attrs: { inputmode: "numeric", autocomplete: "off" } });
      const adminBox = h("input", { type: "checkbox", id: "dev-admin", name: "dev-admin" });
      const submit = h("button", { type: "submit", class: "button", "data-action": "dev-signin" }, "Sign in");
      const result = h("div", { class: "status-area", "aria-live": "polite" });
      const form = h("form", { class: "form", novalidate: true, "aria-labelledby": "dev-heading" },
        h("div", { class: "form-grid" }, userId.field,
          h("div", { class: "field field-check" }, adminBox, h("label", { for: "dev-admin" }, "Sign in as operator (admin)"))),
        h("div", { class: "actions" }, submit), result);
      CT.ui.keepDraft(form, "devsignin");
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        replace(result);
        const check = CT.validate.integer(userId.input.value, { min: 1, max: Number.MAX_SAFE_INTEGER, name: "The user id" });
        if (check.error) {
          userId.setError(check.error);
          userId.input.focus();
          return;
        }
        let data;
        try {
          ({ data } = await CT.ui.busy(submit, "Signing in…", () =>
            CT.api("POST", "/dev/token", { body: { userId: check.value, admin: adminBox.checked }, auth: false })));
        } catch (error) {
          replace(result, CT.ui.errorBox(error, { retry: () => form.requestSubmit() }));
          return;
        }
        if (!data || typeof data.token !== "string") {
          replace(result, CT.ui.notice("error", "The server gave no token. Please try again."));
          return;
        }
        CT.auth.signIn(data.token);
        afterSignIn();
      });
      replace(devBox, h("section", { class: "panel", "aria-labelledby": "dev-heading" },
        h("h2", { id: "dev-heading" }, "Development sign-in"),
        h("p", { class: "muted small" }, "This server runs with --dev, so you can sign in as any user, or as an operator."),
        form));
    });
  }

  function notFoundView() {
    replace(document.getElementById("view"), h("h1", { tabindex: "-1" }, "Page not found"),
      CT.ui.notice("info", "There is nothing at this address.",
        h("div", { class: "notice-actions" }, h("a", { href: "#/concerts", class: "button button-small" }, "Concerts"))));
  }

  // ---- header --------------------------------------------------------------------------
  function whoText() {
    const id = CT.auth.userId();
    if (!id) return "nobody";
    return CT.auth.isAdmin() ? "operator (user " + id + ")" : "user " + id;
  }
  function updateHeader() {
    const signedIn = !!CT.auth.userId();
    document.getElementById("session-who").textContent = signedIn ? "Signed in as " + whoText() : "Not signed in";
    document.getElementById("signin-link").hidden = signedIn;
    document.getElementById("signout").hidden = !signedIn;
    const page = (location.hash.match(/^#\/([a-z]+)/) || [])[1] || "concerts";
    const section = page === "concert" || page === "checkout" ? (page === "checkout" ? "reservations" : "concerts") : page;
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  // ---- router --------------------------------------------------------------------------
  const ID = "([1-9][0-9]{0,17})";
  const routes = [
    [/^#?\/?$/, (view) => CT.fan.concertsView(view)],
    [/^#\/concerts$/, (view) => CT.fan.concertsView(view)],
    [new RegExp("^#/concert/" + ID + "$"), (view, m) => CT.fan.concertView(view, { concertId: m[1] })],
    [new RegExp("^#/concert/" + ID + "/schedule/" + ID + "$"), (view, m) => CT.fan.seatsView(view, { concertId: m[1], scheduleId: m[2] })],
    [new RegExp("^#/checkout/" + ID + "$"), (view, m) => CT.fan.checkoutView(view, { reservationId: m[1] })],
    [/^#\/reservations$/, (view) => CT.fan.reservationsView(view)],
    [/^#\/points$/, (view) => CT.fan.pointsView(view)],
    [/^#\/admin$/, (view) => CT.admin.view(view)],
    [/^#\/signin$/, (view) => signInView(view)],
  ];

  let firstRender = true;
  let flash = null; // a message for the banner after the next page change
  function route() {
    const view = CT.ui.beginView();
    updateHeader();
    const hash = location.hash || "#/";
    let matched = false;
    for (const [pattern, render] of routes) {
      const m = hash.match(pattern);
      if (m) {
        matched = true;
        render(view, m);
        break;
      }
    }
    if (!matched) notFoundView();
    document.body.dataset.route = hash.replace(/[0-9]+/g, ":id");
    if (!firstRender) {
      const heading = document.querySelector("#view h1");
      if (heading) heading.focus();
    }
    firstRender = false;
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("signout").addEventListener("click", () => {
      CT.auth.signOut();
      if (location.hash === "#/signin") route();
      else { flash = "You are signed out."; location.hash = "#/signin"; }
    });
    document.getElementById("signin-link").addEventListener("click", () => CT.ui.rememberReturn());
    CT.auth.onChange(updateHeader);
    window.addEventListener("hashchange", () => {
      CT.ui.banner(flash);
      flash = null;
      route();
    });
    route();
  });
})(window.CT);
