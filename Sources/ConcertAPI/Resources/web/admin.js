/* concertd web page: the operator's page (create concerts and dates, live counts per concert). */
"use strict";

(function (CT) {
  const { h, replace, append } = CT.ui;
  const admin = (CT.admin = {});

  /** "YYYY-MM-DDTHH:MM" in local time, as a datetime-local input wants it. */
  function localInput(date) {
    const pad = (n) => String(n).padStart(2, "0");
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + "T" + pad(date.getHours()) + ":" + pad(date.getMinutes());
  }

  /** Concerts the operator follows: [{id, title}], kept for the tab's session. */
  function watched() {
    const list = CT.store.get("admin.watch", []);
    return Array.isArray(list) ? list : [];
  }
  function watch(concert) {
    const list = watched().filter((c) => String(c.id) !== String(concert.id));
    list.push({ id: concert.id, title: concert.title });
    list.sort((a, b) => Number(a.id) - Number(b.id));
    CT.store.set("admin.watch", list);
  }
  function unwatch(id) {
    CT.store.set("admin.watch", watched().filter((c) => String(c.id) !== String(id)));
  }

  const EVENT_TYPES = ["reservation.held", "reservation.cancelled", "reservation.expired", "payment.paid", "payment.refunded", "schedule.cancelled"];

  /** Webhooks: register (the secret is shown once), remove, and the newest deliveries with their failures. */
  function webhooksPanel(view) {
    const url = CT.ui.field({ id: "wh-url", label: "Receiver URL", hint: "http or https; private addresses are refused.",
      attrs: { autocomplete: "off", maxlength: "2048", required: true } });
    const boxes = EVENT_TYPES.map((type) => h("label", { class: "check" },
      h("input", { type: "checkbox", value: type, checked: true, "data-event": type }), " " + type));
    const result = h("div", { class: "status-area", "aria-live": "polite" });
    const submit = h("button", { type: "submit", class: "button", "data-action": "create-webhook" }, "Register webhook");
    const form = h("form", { class: "form", novalidate: true, "aria-labelledby": "wh-heading" },
      url.field, h("fieldset", { class: "field" }, h("legend", null, "Events"), boxes), h("div", { class: "actions" }, submit), result);
    const list = h("tbody");
    const deliveries = h("tbody");
    const problem = h("div", { class: "status-area" });

    async function refresh() {
      try {
        const [hooks, recent] = await Promise.all([CT.api("GET", "/v1/admin/webhooks"), CT.api("GET", "/v1/admin/webhooks/deliveries")]);
        if (!view.alive) return;
        replace(problem);
        replace(list, (hooks.data.webhooks || []).map((w) => h("tr", null,
          h("td", { class: "num", text: "#" + w.id }), h("td", { text: w.url }), h("td", { text: w.events.join(", ") }),
          h("td", null, h("button", { type: "button", class: "button button-secondary", "data-action": "remove-webhook",
            onclick: async () => {
              try { await CT.api("DELETE", "/v1/admin/webhooks/" + w.id); } catch (error) { replace(problem, CT.ui.notice("error", error.detail || error.code)); }
              refresh();
            } }, "Remove")))));
        replace(deliveries, (recent.data.deliveries || []).map((d) => h("tr", null,
          h("td", { text: d.eventId }), h("td", { text: d.type }), h("td", { text: "#" + d.webhookId }), h("td", { text: d.state }),
          h("td", { class: "num", text: String(d.attempts) }),
          h("td", { text: d.lastError ? d.lastError : (d.lastStatus ? "HTTP " + d.lastStatus : "") }))));
      } catch (error) {
        if (view.alive) replace(problem, CT.ui.notice("error", "Could not load the webhooks: " + (error.detail || error.code)));
      }
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      replace(result);
      const events = boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
      try {
        const { data } = await CT.ui.busy(submit, "Registering…", () => CT.api("POST", "/v1/admin/webhooks", { body: { url: url.input.value.trim(), events } }));
        url.setError(null);
        replace(result, CT.ui.notice("success", "Webhook #" + data.id + " registered. Its signing secret is shown only now: ",
          h("code", { "data-secret": "" }, data.secret)));
        refresh();
      } catch (error) {
        url.setError(error.detail || error.code);
      }
    });
    refresh();
    const timer = setInterval(() => { if (view.alive) refresh(); else clearInterval(timer); }, 5000);

    return h("section", { class: "panel", "aria-labelledby": "wh-heading" }, h("h2", { id: "wh-heading" }, "Webhooks"),
      h("p", { class: "muted small" }, "Signed event deliveries (Standard Webhooks) for holds, payments, refunds and cancelled dates."),
      form, problem,
      h("div", { class: "table-wrap" }, h("table", { class: "table", id: "webhooks-table" },
        h("caption", { class: "visually-hidden" }, "Registered webhooks"),
        h("thead", null, h("tr", null, ["Id", "URL", "Events", ""].map((t) => h("th", { scope: "col", text: t })))), list)),
      h("h3", null, "Recent deliveries"),
      h("div", { class: "table-wrap" }, h("table", { class: "table", id: "deliveries-table" },
        h("caption", { class: "visually-hidden" }, "The 50 newest deliveries"),
        h("thead", null, h("tr", null, ["Event", "Type", "Webhook", "State", "Attempts", "Last failure"].map((t) => h("th", { scope: "col", text: t })))),
        deliveries)));
  }

  admin.view = function (view) {
    const root = document.getElementById("view");
    const heading = h("h1", { tabindex: "-1" }, "Operator");
    if (!CT.auth.token() || !CT.auth.isAdmin()) {
      replace(root, heading, CT.ui.notice("info",
        CT.auth.token() ? "This page is for operators. You are signed in without the admin role." : "Sign in as an operator (admin) to manage concerts.",
        h("div", { class: "notice-actions" }, h("a", { href: "#/signin", class: "button", onclick: () => CT.ui.rememberReturn() }, "Sign in as operator"))));
      return;
    }

    // ---- new concert ----
    const title = CT.ui.field({ id: "nc-title", label: "Title", attrs: { maxlength: "200", autocomplete: "off", required: true } });
    const artist = CT.ui.field({ id: "nc-artist", label: "Artist", attrs: { maxlength: "200", autocomplete: "off", required: true } });
    const venue = CT.ui.field({ id: "nc-venue", label: "Venue", attrs: { maxlength: "200", autocomplete: "off", required: true } });
    const now = new Date();
    now.setSeconds(0, 0);
    const opens = CT.ui.field({ id: "nc-opens", label: "Booking opens", type: "datetime-local", value: localInput(now),
      hint: "Your local time.", attrs: { required: true } });
    const closes = CT.ui.field({ id: "nc-closes", label: "Booking closes", type: "datetime-local",
      value: localInput(new Date(now.getTime() + 30 * 86400000)), hint: "Must be after booking opens.", attrs: { required: true } });
    const concertSubmit = h("button", { type: "submit", class: "button", "data-action": "create-concert" }, "Create concert");
    const concertResult = h("div", { class: "status-area", "aria-live": "polite" });
    const concertForm = h("form", { class: "form", novalidate: true, "aria-labelledby": "nc-heading" },
      h("div", { class: "form-grid" }, title.field, artist.field, venue.field, opens.field, closes.field),
      h("div", { class: "actions" }, concertSubmit), concertResult);
    const concertDraft = CT.ui.keepDraft(concertForm, "admin.concert");

    // ---- new schedule ----
    const concertSelect = h("select", { id: "ns-concert", name: "ns-concert", "aria-describedby": "ns-concert-error" });
    const concertSelectError = h("p", { class: "field-error", id: "ns-concert-error", hidden: true });
    const startDefault = new Date(now.getTime() + 14 * 86400000);
    startDefault.setHours(19, 0, 0, 0);
    const startsAt = CT.ui.field({ id: "ns-starts", label: "Starts at", type: "datetime-local", value: localInput(startDefault),
      hint: "Your local time; fans see dates in the future only.", attrs: { required: true } });
    const price = CT.ui.field({ id: "ns-price", label: "Price per seat (points)", value: "50000",
      hint: "A whole number from 0 to 1,000,000,000.", attrs: { inputmode: "numeric", autocomplete: "off", required: true } });
    const seatCount = CT.ui.field({ id: "ns-seats", label: "Number of seats", value: "50",
      hint: "1 to 1,000.", attrs: { inputmode: "numeric", autocomplete: "off" } });
    const scheduleSubmit = h("button", { type: "submit", class: "button", "data-action": "create-schedule" }, "Add date");
    const scheduleResult = h("div", { class: "status-area", "aria-live": "polite" });
    const scheduleForm = h("form", { class: "form", novalidate: true, "aria-labelledby": "ns-heading" },
      h("div", { class: "form-grid" },
        h("div", { class: "field" }, h("label", { for: "ns-concert" }, "Concert"), concertSelect, concertSelectError),
        startsAt.field, price.field, seatCount.field),
      h("div", { class: "actions" }, scheduleSubmit), scheduleResult);

    // ---- cancel a date (with a confirmation step) ----
    const cancelField = CT.ui.field({ id: "cs-schedule", label: "Date (schedule) id",
      hint: "Every paid seat of the date is refunded and every hold released. This cannot be undone.",
      attrs: { inputmode: "numeric", autocomplete: "off", required: true } });
    const cancelSubmit = h("button", { type: "submit", class: "button button-danger", "data-action": "cancel-schedule" }, "Cancel this date…");
    const cancelResult = h("div", { class: "status-area", "aria-live": "polite" });
    const cancelForm = h("form", { class: "form", novalidate: true, "aria-labelledby": "cs-heading" },
      h("div", { class: "form-grid" }, cancelField.field),
      h("div", { class: "actions" }, cancelSubmit), cancelResult);

    // ---- live counts ----
    const statsBody = h("tbody");
    const statsNote = h("p", { class: "muted small", "aria-live": "off" });
    const statsProblem = h("div", { class: "status-area" });
    const watchField = CT.ui.field({ id: "watch-id", label: "Follow concert id", attrs: { inputmode: "numeric", autocomplete: "off" } });
    const watchForm = h("form", { class: "form form-inline", novalidate: true, "aria-label": "Follow another concert" },
      watchField.field, h("div", { class: "actions" }, h("button", { type: "submit", class: "button button-secondary" }, "Follow")));

    // ---- line control (on-sale policy) ----
    const lineSelect = h("select", { id: "lc-concert", name: "lc-concert", "data-line-concert": "" });
    const maxActive = CT.ui.field({ id: "lc-max", label: "Shopping at once (maxActive)", hint: "1 to 1,000,000.",
      attrs: { inputmode: "numeric", autocomplete: "off" } });
    const rate = CT.ui.field({ id: "lc-rate", label: "Admissions per minute", hint: "Blank for no rate; 1 to 10,000,000.",
      attrs: { inputmode: "numeric", autocomplete: "off" } });
    const activeSeconds = CT.ui.field({ id: "lc-active", label: "Turn length (seconds)", hint: "30 to 86,400; applies to later admissions.",
      attrs: { inputmode: "numeric", autocomplete: "off" } });
    const queueOpens = CT.ui.field({ id: "lc-opens", label: "Pre-queue opens", type: "datetime-local",
      hint: "Your local time, before booking opens; blank for no pre-queue." });
    const lineSave = h("button", { type: "submit", class: "button", "data-action": "save-policy" }, "Save");
    const pauseButton = h("button", { type: "button", class: "button button-secondary", "data-action": "pause" }, "Pause admission");
    const lineStatus = h("div", { class: "status-area", "aria-live": "polite" });
    const lineFacts = h("dl", { class: "facts", "data-line-facts": "" });
    const lineForm = h("form", { class: "form", novalidate: true, "aria-labelledby": "lc-heading" },
      h("div", { class: "field" }, h("label", { for: "lc-concert" }, "Concert"), lineSelect),
      h("div", { class: "form-grid" }, maxActive.field, rate.field, activeSeconds.field, queueOpens.field),
      h("div", { class: "actions" }, lineSave, pauseButton), lineStatus, lineFacts);
    let policy = null;

    function showPolicy(data, draw) {
      policy = data;
      maxActive.input.value = String(data.maxActive);
      rate.input.value = data.admitPerMinute == null ? "" : String(data.admitPerMinute);
      activeSeconds.input.value = String(data.activeSeconds);
      queueOpens.input.value = data.queueOpensAt ? localInput(new Date(data.queueOpensAt)) : "";
      pauseButton.textContent = data.paused ? "Resume admission" : "Pause admission";
      pauseButton.dataset.action = data.paused ? "resume" : "pause";
      const fact = (term, value, name) => [h("dt", null, term), h("dd", { "data-fact": name, text: value })];
      replace(lineFacts,
        fact("Admission", data.paused ? "Paused" : data.soldOut ? "Sold out" : "Running", "state"),
        fact("Waiting", CT.ui.number(data.waiting), "waiting"), fact("Active", CT.ui.number(data.active), "active"),
        fact("Admitted in the last minute", CT.ui.number(data.admittedLastMinute), "admitted"),
        draw ? fact("Draw commitment", draw.commitment, "commitment") : null,
        draw ? fact("Draw seed", draw.seed || "secret until the draw", "seed") : null,
        draw && draw.entrants != null ? fact("Drawn entrants", CT.ui.number(draw.entrants), "entrants") : null);
    }

    async function loadPolicy() {
      const id = lineSelect.value;
      if (!/^[1-9][0-9]*$/.test(id)) { replace(lineFacts); return; }
      try {
        const { data } = await CT.api("GET", "/v1/admin/concerts/" + id + "/queue");
        const draw = await CT.api("GET", "/v1/concerts/" + id + "/queue/draw", { auth: false }).then((r) => r.data, () => null);
        if (view.alive && lineSelect.value === id) showPolicy(data, draw);
      } catch (error) {
        replace(lineStatus, CT.ui.errorBox(error, { retry: loadPolicy }));
      }
    }

    async function changePolicy(body, button, label) {
      const id = lineSelect.value;
      if (!/^[1-9][0-9]*$/.test(id)) return;
      replace(lineStatus);
      try {
        await CT.ui.busy(button, label, () => CT.api("PATCH", "/v1/admin/concerts/" + id + "/queue", { body }));
        replace(lineStatus, CT.ui.notice("success", "Saved. Every instance follows within a second."));
        await loadPolicy();
      } catch (error) {
        replace(lineStatus, CT.ui.errorBox(error));
      }
    }

    lineSelect.addEventListener("change", loadPolicy);
    pauseButton.addEventListener("click", () =>
      changePolicy({ paused: !(policy && policy.paused) }, pauseButton, policy && policy.paused ? "Resuming…" : "Pausing…"));
    lineForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const checks = [
        [maxActive, CT.validate.integer(maxActive.input.value, { min: 1, max: 1000000, name: "Shopping at once" })],
        [activeSeconds, CT.validate.integer(activeSeconds.input.value, { min: 30, max: 86400, name: "Turn length" })],
        [rate, rate.input.value.trim() === "" ? { value: null } : CT.validate.integer(rate.input.value, { min: 1, max: 10000000, name: "Admissions per minute" })],
        [queueOpens, queueOpens.input.value === "" ? { value: null } : CT.validate.dateTime(queueOpens.input.value, { name: "Pre-queue opens" })],
      ];
      let firstBad = null;
      for (const [field, check] of checks) {
        field.setError(check.error || null);
        if (check.error && !firstBad) firstBad = field;
      }
      if (firstBad) { firstBad.input.focus(); return; }
      changePolicy({ maxActive: checks[0][1].value, activeSeconds: checks[1][1].value, admitPerMinute: checks[2][1].value,
        queueOpensAt: checks[3][1].value }, lineSave, "Saving…");
    });

    replace(root, heading,
      h("p", { class: "lead" }, "Create concerts and their dates, and watch each concert's line and seats live."),
      h("section", { class: "panel", "aria-labelledby": "stats-heading" }, h("h2", { id: "stats-heading" }, "Live counts"),
        statsProblem,
        h("div", { class: "table-wrap" }, h("table", { class: "table", id: "stats-table" },
          h("caption", { class: "visually-hidden" }, "Line and seat counts per concert (future dates only)"),
          h("thead", null, h("tr", null, h("th", { scope: "col" }, "Concert"),
            ["Waiting", "Active", "Seats", "Held", "Sold", "Free"].map((t) => h("th", { scope: "col", class: "num", text: t })),
            h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
          statsBody)),
        statsNote, watchForm),
      h("section", { class: "panel", "aria-labelledby": "lc-heading" }, h("h2", { id: "lc-heading" }, "Line control"),
        h("p", { class: "muted small" }, "Pause or resume admission, change the cap, the rate and the turn length while the sale runs, and open a pre-queue whose order is drawn at the booking opening."),
        lineForm),
      h("section", { class: "panel", "aria-labelledby": "nc-heading" }, h("h2", { id: "nc-heading" }, "New concert"), concertForm),
      h("section", { class: "panel", "aria-labelledby": "ns-heading" }, h("h2", { id: "ns-heading" }, "New date"),
        h("p", { class: "muted small" }, "A concert is on sale while its booking window is open and it has a date in the future."),
        scheduleForm),
      h("section", { class: "panel", "aria-labelledby": "cs-heading" }, h("h2", { id: "cs-heading" }, "Cancel a date"),
        cancelForm),
      webhooksPanel(view));

    cancelForm.addEventListener("submit", (event) => {
      event.preventDefault();
      replace(cancelResult);
      cancelField.setError(null);
      const check = CT.validate.integer(cancelField.input.value, { min: 1, max: Number.MAX_SAFE_INTEGER, name: "The date id" });
      if (check.error) {
        cancelField.setError(check.error);
        return;
      }
      const scheduleId = check.value;
      const confirmButton = h("button", { type: "button", class: "button button-danger", "data-action": "confirm-cancel-schedule" },
        "Yes, cancel date #" + scheduleId + " and refund everyone");
      const keepButton = h("button", { type: "button", class: "button button-secondary", "data-action": "keep-schedule" }, "Keep it");
      keepButton.addEventListener("click", () => { replace(cancelResult); cancelSubmit.focus(); });
      confirmButton.addEventListener("click", async () => {
        let data;
        try {
          ({ data } = await CT.ui.busy(confirmButton, "Cancelling…", () =>
            CT.api("POST", "/v1/admin/schedules/" + scheduleId + "/cancel")));
        } catch (error) {
          replace(cancelResult, CT.ui.errorBox(error));
          return;
        }
        cancelField.input.value = "";
        replace(cancelResult, CT.ui.notice("success", data.refunded === 0 && data.released === 0
          ? "Date #" + data.scheduleId + " is cancelled; nothing was left to refund or release."
          : "Cancelled date #" + data.scheduleId + ": refunded " + CT.ui.number(data.refunded) + " paid seat(s) and released " +
            CT.ui.number(data.released) + " hold(s)."));
        stats.now();
      });
      replace(cancelResult, CT.ui.notice("warning", "Cancel date #" + scheduleId + " for good? Every paid seat is refunded and every hold released.",
        h("div", { class: "notice-actions" }, confirmButton, keepButton)));
      confirmButton.focus();
    });

    const scheduleDraft = CT.ui.keepDraft(scheduleForm, "admin.schedule");
    let preferredConcert = CT.store.get("draft.admin.schedule", {})["ns-concert"] || null;

    function fillSelect() {
      const chosen = concertSelect.value || preferredConcert;
      replace(concertSelect, h("option", { value: "" }, "Choose a concert…"),
        watched().map((c) => h("option", { value: String(c.id) }, "#" + c.id + " " + c.title)));
      if (chosen && watched().some((c) => String(c.id) === String(chosen))) concertSelect.value = String(chosen);
      const lineChosen = lineSelect.value;
      replace(lineSelect, h("option", { value: "" }, "Choose a concert…"),
        watched().map((c) => h("option", { value: String(c.id) }, "#" + c.id + " " + c.title)));
      if (lineChosen && watched().some((c) => String(c.id) === lineChosen)) lineSelect.value = lineChosen;
    }

    // The reservable concerts are followed from the start; new ones as they are created.
    CT.api("GET", "/v1/concerts?limit=500", { auth: false }).then(({ data }) => {
      for (const c of (data && data.concerts) || []) {
        if (!watched().some((w) => String(w.id) === String(c.id))) watch(c);
      }
      if (view.alive) { fillSelect(); stats.now(); }
    }, () => {});
    fillSelect();

    concertForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      replace(concertResult);
      const checks = [
        [title, CT.validate.text(title.input.value, { name: "Title" })],
        [artist, CT.validate.text(artist.input.value, { name: "Artist" })],
        [venue, CT.validate.text(venue.input.value, { name: "Venue" })],
        [opens, CT.validate.dateTime(opens.input.value, { name: "Booking opens" })],
        [closes, CT.validate.dateTime(closes.input.value, { name: "Booking closes" })],
      ];
      let firstBad = null;
      for (const [field, check] of checks) {
        field.setError(check.error || null);
        if (check.error && !firstBad) firstBad = field;
      }
      if (!firstBad && checks[4][1].date <= checks[3][1].date) {
        closes.setError("Booking must close after it opens.");
        firstBad = closes;
      }
      if (firstBad) {
        firstBad.input.focus();
        return;
      }
      const body = {
        title: checks[0][1].value, artist: checks[1][1].value, venue: checks[2][1].value,
        bookingOpensAt: checks[3][1].value, bookingClosesAt: checks[4][1].value,
      };
      let concert;
      try {
        ({ data: concert } = await CT.ui.busy(concertSubmit, "Creating…", () => CT.api("POST", "/v1/admin/concerts", { body })));
      } catch (error) {
        replace(concertResult, CT.ui.errorBox(error, { retry: () => concertForm.requestSubmit() }));
        return;
      }
      watch(concert);
      concertDraft.clear();
      title.input.value = "";
      artist.input.value = "";
      venue.input.value = "";
      preferredConcert = String(concert.id);
      concertSelect.value = "";
      fillSelect();
      concertSelect.value = String(concert.id);
      concertSelect.dispatchEvent(new Event("change", { bubbles: true }));
      replace(concertResult, CT.ui.notice("success", "Created concert #" + concert.id + " “" + concert.title + "”. Add a date for it below to put it on sale."));
      stats.now();
    });

    scheduleForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      replace(scheduleResult);
      const concertId = concertSelect.value;
      const checks = [
        [startsAt, CT.validate.dateTime(startsAt.input.value, { name: "Start" })],
        [price, CT.validate.integer(price.input.value, { min: 0, max: 1000000000, name: "Price" })],
        [seatCount, CT.validate.integer(seatCount.input.value || "50", { min: 1, max: 1000, name: "Number of seats" })],
      ];
      let firstBad = null;
      if (!/^[1-9][0-9]*$/.test(concertId)) {
        concertSelectError.textContent = "Choose a concert.";
        concertSelectError.hidden = false;
        firstBad = { input: concertSelect };
      } else {
        concertSelectError.hidden = true;
      }
      for (const [field, check] of checks) {
        field.setError(check.error || null);
        if (check.error && !firstBad) firstBad = field;
      }
      if (firstBad) {
        firstBad.input.focus();
        return;
      }
      const body = { startsAt: checks[0][1].value, price: checks[1][1].value, seatCount: checks[2][1].value };
      let schedule;
      try {
        ({ data: schedule } = await CT.ui.busy(scheduleSubmit, "Adding…", () =>
          CT.api("POST", "/v1/admin/concerts/" + concertId + "/schedules", { body })));
      } catch (error) {
        replace(scheduleResult, CT.ui.errorBox(error, { retry: () => scheduleForm.requestSubmit() }));
        return;
      }
      scheduleDraft.clear();
      replace(scheduleResult, CT.ui.notice("success", "Added a date for concert #" + schedule.concertId + ": " +
        CT.ui.dateTime(schedule.startsAt) + ", " + CT.ui.number(schedule.totalSeats) + " seats at " + CT.ui.points(schedule.price) + "."));
      stats.now();
    });

    watchForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const check = CT.validate.integer(watchField.input.value, { min: 1, max: Number.MAX_SAFE_INTEGER, name: "The concert id" });
      if (check.error) {
        watchField.setError(check.error);
        return;
      }
      try {
        const concert = await CT.fan.concert(check.value);
        watch(concert);
        watchField.input.value = "";
        fillSelect();
        stats.now();
      } catch (error) {
        watchField.setError(CT.messageFor(error));
      }
    });

    // ---- the live counts, every 3 s while the tab is visible ----
    const rows = new Map();
    function row(concert) {
      const key = String(concert.id);
      if (!rows.has(key)) {
        const cells = {};
        const tr = h("tr", { "data-concert-id": key },
          h("th", { scope: "row" }, "#" + concert.id + " ", h("span", { text: concert.title })),
          ["waiting", "active", "totalSeats", "seatsHeld", "seatsSold", "free"].map((name) => (cells[name] = h("td", { class: "num", "data-stat": name }, "…"))),
          h("td", null, h("button", {
            type: "button", class: "button button-small button-secondary", "aria-label": "Stop following concert #" + concert.id,
            onclick: () => { unwatch(concert.id); tr.remove(); rows.delete(key); fillSelect(); },
          }, "Hide")));
        rows.set(key, { tr, cells });
      }
      return rows.get(key);
    }

    const stats = view.loop(async () => {
      const list = watched();
      if (list.length === 0) {
        replace(statsBody, h("tr", null, h("td", { colspan: "8", class: "muted" }, "No concerts followed yet.")));
        rows.clear();
        return 3000;
      }
      const results = await Promise.all(list.map((c) =>
        CT.api("GET", "/v1/admin/concerts/" + c.id + "/stats").then((r) => ({ c, data: r.data }), (error) => ({ c, error }))));
      if (!view.alive) return null;
      const order = [];
      let problem = null;
      for (const { c, data, error } of results) {
        const { tr, cells } = row(c);
        order.push(tr);
        if (error) {
          problem = problem || error;
          for (const cell of Object.values(cells)) cell.textContent = "—";
          continue;
        }
        cells.waiting.textContent = CT.ui.number(data.waiting);
        cells.active.textContent = CT.ui.number(data.active);
        cells.totalSeats.textContent = CT.ui.number(data.totalSeats);
        cells.seatsHeld.textContent = CT.ui.number(data.seatsHeld);
        cells.seatsSold.textContent = CT.ui.number(data.seatsSold);
        cells.free.textContent = CT.ui.number(Math.max(0, data.totalSeats - data.seatsHeld - data.seatsSold));
      }
      replace(statsBody, order);
      if (problem) {
        replace(statsProblem, CT.ui.errorBox(problem, { retry: () => stats.now() }));
        if (problem.code === "FORBIDDEN" || problem.code === "UNAUTHENTICATED") return null;
      } else {
        replace(statsProblem);
      }
      statsNote.textContent = "Updated at " + new Date().toLocaleTimeString() + "; refreshes every 3 seconds while this tab is visible.";
      return problem && problem.retryable ? 10000 : 3000;
    });
  };
})(window.CT);
