/* concertd web page: the fan's pages (concerts, waiting line, dates, seat map, checkout, reservations, points). */
"use strict";

(function (CT) {
  const { h, replace, append } = CT.ui;
  const fan = (CT.fan = {});

  // ---- shared bits ---------------------------------------------------------------------
  const viewRoot = () => document.getElementById("view");

  /** Queue tokens, per signed-in user and concert: {token, status, activeUntil}. */
  const ticketKey = (concertId) => "queue." + CT.auth.userId() + "." + concertId;
  fan.ticket = (concertId) => CT.store.get(ticketKey(concertId));
  fan.saveTicket = (concertId, ticket) => CT.store.set(ticketKey(concertId), {
    token: ticket.token, status: ticket.status, activeUntil: ticket.activeUntil || null,
  });
  fan.dropTicket = (concertId) => CT.store.remove(ticketKey(concertId));

  /** Concert details (public), remembered for the page's lifetime. */
  const concertCache = new Map();
  fan.concert = function (id) {
    const key = String(id);
    if (!concertCache.has(key)) {
      const promise = CT.api("GET", "/v1/concerts/" + key, { auth: false }).then((r) => r.data);
      promise.catch(() => concertCache.delete(key));
      concertCache.set(key, promise);
    }
    return concertCache.get(key);
  };

  function title(text) {
    return h("h1", { tabindex: "-1", text });
  }

  /** Renders a sign-in prompt when nobody is signed in; returns true when it did. */
  function needsSignIn(root, heading, why) {
    if (CT.auth.token()) return false;
    replace(root, title(heading),
      CT.ui.notice("info", why,
        h("div", { class: "notice-actions" },
          h("a", { href: "#/signin", class: "button", onclick: () => CT.ui.rememberReturn() }, "Sign in"))));
    return true;
  }

  /** The "your place in line is gone" box with a way back into the line. */
  function backToLine(concertId, error) {
    fan.dropTicket(concertId);
    return CT.ui.errorBox(error, {
      extra: h("a", { href: "#/concert/" + concertId, class: "button button-small", "data-action": "rejoin" }, "Back to the line"),
    });
  }

  /** A countdown (role=timer) to `isoTime`; calls onEnd once when it reaches zero. */
  function countdown(view, isoTime, onEnd) {
    const end = Date.parse(isoTime);
    const span = h("span", { class: "countdown", role: "timer", "aria-live": "off" });
    let ended = false;
    const id = view.every(1000, () => {
      const left = end - CT.now();
      span.textContent = CT.ui.clock(left);
      if (left <= 0 && !ended) {
        ended = true;
        clearInterval(id);
        if (onEnd) onEnd();
      }
    });
    return span;
  }

  // ---- concerts -----------------------------------------------------------------------
  fan.concertsView = function (view) {
    const root = viewRoot();
    const status = h("div", { class: "status-area" });
    const list = h("ul", { class: "cards", "aria-label": "Concerts on sale" });
    const more = h("div");
    replace(root, title("Concerts on sale"),
      h("p", { class: "lead" }, "Pick a concert and join its waiting line. When it's your turn you choose a date and a seat."),
      status, list, more);

    async function load(after) {
      replace(status, h("p", { class: "muted", text: "Loading concerts…" }));
      replace(more);
      let data;
      try {
        ({ data } = await CT.api("GET", "/v1/concerts?limit=100" + (after ? "&after=" + after : ""), { auth: false }));
      } catch (error) {
        if (!view.alive) return;
        replace(status, CT.ui.errorBox(error, { retry: () => load(after) }));
        return;
      }
      if (!view.alive) return;
      replace(status);
      const concerts = Array.isArray(data && data.concerts) ? data.concerts : [];
      if (!after && concerts.length === 0) {
        replace(status, CT.ui.notice("info", "No concerts are on sale right now. Please check back later."));
      }
      for (const concert of concerts) list.appendChild(card(concert));
      if (concerts.length === 100) {
        replace(more, h("button", { type: "button", class: "button button-secondary",
          onclick: () => load(concerts[concerts.length - 1].id) }, "Show more concerts"));
      }
    }

    function card(concert) {
      const signedIn = !!CT.auth.token();
      return h("li", { class: "card concert-card", "data-concert-id": concert.id },
        h("h2", { class: "card-title", text: concert.title }),
        h("p", { class: "card-artist", text: concert.artist }),
        h("p", { class: "muted" }, concert.venue),
        h("p", { class: "muted small" }, "Booking closes " + CT.ui.dateTime(concert.bookingClosesAt)),
        h("a", {
          href: "#/concert/" + concert.id,
          class: "button",
          "data-action": "join",
          "aria-label": (signedIn ? "Join the line for " : "Sign in to join the line for ") + concert.title,
          onclick: signedIn ? null : () => CT.store.set("returnTo", "#/concert/" + concert.id),
        }, signedIn ? "Join the line" : "Sign in to join"));
    }

    load(null);
  };

  // ---- one concert: the waiting line, then its dates ------------------------------------
  /** Lowercase hex SHA-256 of bytes, with the browser's Web Crypto. */
  async function sha256Hex(bytes) {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  function hexBytes(hex) {
    const out = new Uint8Array(hex.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
    return out;
  }

  /**
   * "Check the draw": the published commitment; after the draw, the revealed seed, whether its
   * SHA-256 is the commitment, and this fan's own key (SHA-256 of seed bytes followed by the
   * token), computed here in the browser. The line is ordered by ascending key.
   */
  fan.drawBox = function (concertId, token) {
    const box = h("details", { class: "draw-box", "data-draw": "" }, h("summary", null, "Check the draw"),
      h("p", { class: "muted small" }, "Loading the draw…"));
    box.addEventListener("toggle", async () => {
      if (!box.open || box.dataset.loaded) return;
      box.dataset.loaded = "1";
      try {
        const { data } = await CT.api("GET", "/v1/concerts/" + concertId + "/queue/draw", { auth: false });
        const parts = [h("summary", null, "Check the draw"),
          h("p", null, "Commitment (SHA-256 of the secret seed, published before the draw): ", h("code", { class: "draw-commitment", text: data.commitment }))];
        if (data.seed) {
          const matches = (await sha256Hex(hexBytes(data.seed))) === data.commitment;
          const mine = token ? await sha256Hex(new Uint8Array([...hexBytes(data.seed), ...new TextEncoder().encode(token)])) : null;
          parts.push(h("p", null, "Seed, revealed at the draw: ", h("code", { class: "draw-seed", text: data.seed })),
            h("p", { class: matches ? "draw-ok" : "draw-bad" }, matches ? "✓ The seed matches the commitment." : "✗ The seed does not match the commitment."),
            h("p", null, data.entrants === 1 ? "1 fan was in the pre-queue." : CT.ui.number(data.entrants) + " fans were in the pre-queue."));
          if (mine) parts.push(h("p", null, "Your key: ", h("code", { class: "draw-key", text: mine }), " (places go by ascending key)."));
        } else {
          parts.push(h("p", { class: "muted" }, "The seed is revealed at the draw; then this page checks it and computes your key."));
        }
        replace(box, parts);
      } catch (error) {
        replace(box, h("summary", null, "Check the draw"), CT.ui.errorBox(error));
      }
    });
    return box;
  };

  fan.concertView = function (view, { concertId }) {
    const root = viewRoot();
    const heading = title("Concert");
    const sub = h("p", { class: "lead" });
    if (!CT.auth.token()) {
      CT.store.set("returnTo", "#/concert/" + concertId);
      if (needsSignIn(root, "Join the line", "Sign in to join this concert's waiting line.")) return;
    }
    const lineBox = h("section", { class: "panel line-box", "aria-labelledby": "line-heading", "aria-live": "polite" },
      h("h2", { id: "line-heading" }, "The line"), h("p", { class: "muted" }, "Joining the line…"));
    const holdsBox = h("div");
    const datesBox = h("section", { class: "dates-box", "aria-labelledby": "dates-heading", hidden: true });
    replace(root, heading, sub, lineBox, holdsBox, datesBox);

    let concertInfo = null;
    let drawDetails = null;
    let wasPreQueue = false; // this fan was in a pre-queue: the draw is theirs to check
    /** One "check the draw" box per view, so that the polls' redraws keep it open. */
    function drawBox() {
      drawDetails = drawDetails || fan.drawBox(concertId, ticket && ticket.token);
      return drawDetails;
    }
    fan.concert(concertId).then((concert) => {
      if (!view.alive) return;
      concertInfo = concert;
      heading.textContent = concert.title;
      sub.textContent = concert.artist + " · " + concert.venue;
    }, (error) => {
      if (view.alive && error.code === "CONCERT_NOT_FOUND") replace(lineBox, CT.ui.errorBox(error));
    });

    let ticket = fan.ticket(concertId);
    let seenThisView = false; // a stored token from before is silently replaced when it is gone
    let delay = 1000;
    let errorDelay = 2000;
    let lastPosition = null;
    let checkedAt = null;

    async function step() {
      try {
        if (!ticket) {
          const { data } = await CT.api("POST", "/v1/concerts/" + concertId + "/queue/tokens");
          ticket = data;
        } else {
          const { data } = await CT.api("GET", "/v1/queue/tokens/current", { queueToken: ticket.token });
          ticket = data;
        }
      } catch (error) {
        if (!view.alive) return null;
        if (error.isQueueProblem) {
          fan.dropTicket(concertId);
          ticket = null;
          if (!seenThisView) return 0; // a stale token from an earlier visit: just join again
          showLost(error);
          return null;
        }
        if (error.retryable) {
          showProblem(error);
          errorDelay = Math.min(errorDelay * 2, 30000);
          return errorDelay;
        }
        replace(lineBox, CT.ui.errorBox(error, { extra: h("a", { href: "#/concerts", class: "button button-small button-secondary" }, "All concerts") }));
        return null;
      }
      if (!view.alive) return null;
      seenThisView = true;
      errorDelay = 2000;
      checkedAt = new Date();
      fan.saveTicket(concertId, ticket);
      if (ticket.status === "ACTIVE") {
        showActive();
        return null;
      }
      // Waiting: check every second at first and after every move, then back off to every 10 s
      // (well inside the time a waiting place is kept without a check).
      if (ticket.position !== lastPosition) delay = 1000;
      else delay = Math.min(Math.round(delay * 1.5), 10000);
      lastPosition = ticket.position;
      showWaiting();
      return delay;
    }
    let poll = view.loop(step);

    function leaveButton() {
      return h("button", {
        type: "button", class: "button button-secondary button-small", "data-action": "leave",
        onclick: async (event) => {
          const button = event.currentTarget;
          if (!ticket) return;
          try {
            await CT.ui.busy(button, "Leaving…", () => CT.api("DELETE", "/v1/queue/tokens/current", { queueToken: ticket.token }));
          } catch (error) {
            if (!error.isQueueProblem) {
              append(lineBox, CT.ui.errorBox(error));
              return;
            }
          }
          fan.dropTicket(concertId);
          poll.stop();
          location.hash = "#/concerts";
        },
      }, "Leave the line");
    }

    function showWaiting() {
      const ahead = ticket.position;
      lineBox.dataset.queueStatus = ticket.soldOut ? "SOLD_OUT" : ticket.preQueue ? "PRE_QUEUE" : "WAITING";
      if (ticket.soldOut) {
        replace(lineBox,
          h("h2", { id: "line-heading" }, "Sold out"),
          CT.ui.notice("info", "Every seat of this concert is sold. You can stop waiting."),
          h("div", { class: "actions" }, leaveButton(), h("a", { href: "#/concerts", class: "button button-small button-secondary" }, "All concerts")));
        return;
      }
      if (ticket.preQueue) {
        wasPreQueue = true;
        const opens = concertInfo ? CT.ui.dateTime(concertInfo.bookingOpensAt) : "the opening";
        replace(lineBox,
          h("h2", { id: "line-heading" }, "You're in the pre-queue"),
          h("p", { class: "queue-position" },
            h("strong", { "data-pre-queue": String(ahead), text: CT.ui.number(ahead) }), ahead === 1 ? " other fan is waiting with you." : " other fans are waiting with you."),
          h("p", null, "The draw happens at ", h("strong", { class: "draw-time", text: opens }),
            ": everyone in the pre-queue gets a place in a random order, so arriving early or late before then makes no difference."),
          drawBox(),
          h("p", { class: "muted small" },
            "Checked at " + checkedAt.toLocaleTimeString() + ". Keep this tab open: the page checks in for you."),
          h("div", { class: "actions" }, leaveButton()));
        return;
      }
      replace(lineBox,
        h("h2", { id: "line-heading" }, "You're in the line"),
        h("p", { class: "queue-position" },
          ahead === 0 ? h("strong", { "data-position": "0" }, "You're next.")
            : [h("strong", { "data-position": String(ahead), text: CT.ui.number(ahead) }), ahead === 1 ? " person ahead of you." : " people ahead of you."]),
        h("p", null, "Estimated wait: ", h("strong", { class: "queue-wait", text: CT.ui.wait(ticket.estimatedWaitSeconds) }), "."),
        (concertInfo && concertInfo.queueOpensAt) || wasPreQueue ? drawBox() : null,
        h("p", { class: "muted small" },
          "Checked at " + checkedAt.toLocaleTimeString() + ". Keep this tab open: the page checks in for you, and pauses while the tab is hidden."),
        h("div", { class: "actions" }, leaveButton()));
    }

    function showProblem(error) {
      const existing = lineBox.querySelector(".notice-error");
      if (existing) existing.remove();
      append(lineBox, CT.ui.errorBox(error, { retry: () => poll.now() }));
    }

    function showLost(error) {
      lineBox.dataset.queueStatus = "LOST";
      datesBox.hidden = true;
      activeShown = false;
      replace(lineBox,
        h("h2", { id: "line-heading" }, "Your place in line is gone"),
        CT.ui.errorBox(error),
        h("div", { class: "actions" }, h("button", {
          type: "button", class: "button", "data-action": "rejoin",
          onclick: () => {
            poll.stop();
            ticket = null;
            seenThisView = false;
            lastPosition = null;
            replace(lineBox, h("p", { class: "muted" }, "Joining the line…"));
            poll = view.loop(step);
          },
        }, "Join the line again")));
    }

    let activeShown = false;
    function showActive() {
      if (activeShown) return;
      activeShown = true;
      lineBox.dataset.queueStatus = "ACTIVE";
      const parts = [h("h2", { id: "line-heading" }, "It's your turn")];
      if (ticket.activeUntil) {
        parts.push(h("p", null, "Choose a date and a seat. Your turn ends in ",
          countdown(view, ticket.activeUntil, () => {
            fan.dropTicket(concertId);
            ticket = null;
            showLost(new CT.ApiError({ code: "QUEUE_TOKEN_INVALID", status: 401 }));
          }), "."));
      }
      if ((concertInfo && concertInfo.queueOpensAt) || wasPreQueue) {
        drawDetails = null; // a fresh box: the draw may have happened since the last one loaded
        parts.push(drawBox());
      }
      parts.push(h("div", { class: "actions" }, leaveButton()));
      replace(lineBox, ...parts);
      loadDates();
      loadHolds();
    }

    async function loadDates() {
      datesBox.hidden = false;
      replace(datesBox, h("h2", { id: "dates-heading" }, "Dates"), h("p", { class: "muted" }, "Loading dates…"));
      let data;
      try {
        ({ data } = await CT.api("GET", "/v1/concerts/" + concertId + "/schedules", { queueToken: ticket && ticket.token }));
      } catch (error) {
        if (!view.alive) return;
        if (error.isQueueProblem || error.code === "QUEUE_TOKEN_NOT_ACTIVE") {
          replace(datesBox, h("h2", { id: "dates-heading" }, "Dates"), backToLine(concertId, error));
          return;
        }
        replace(datesBox, h("h2", { id: "dates-heading" }, "Dates"), CT.ui.errorBox(error, { retry: loadDates }));
        return;
      }
      if (!view.alive) return;
      const schedules = Array.isArray(data && data.schedules) ? data.schedules : [];
      const list = h("ul", { class: "date-list" });
      for (const schedule of schedules) {
        const soldOut = schedule.availableSeats <= 0;
        const price = typeof schedule.price === "number" ? " · " + CT.ui.points(schedule.price) : "";
        const label = CT.ui.dateTime(schedule.startsAt);
        const seatsLeft = soldOut ? "Sold out" : CT.ui.number(schedule.availableSeats) + " of " + CT.ui.number(schedule.totalSeats) + " seats left";
        list.appendChild(h("li", null, soldOut
          ? h("div", { class: "date-item date-soldout", "data-schedule-id": schedule.id },
              h("span", { class: "date-when", text: label }), h("span", { class: "date-seats", text: seatsLeft }))
          : h("a", { class: "date-item", href: "#/concert/" + concertId + "/schedule/" + schedule.id, "data-schedule-id": schedule.id },
              h("span", { class: "date-when", text: label }), h("span", { class: "date-seats", text: seatsLeft + price }))));
      }
      replace(datesBox, h("h2", { id: "dates-heading" }, "Dates"),
        schedules.length ? list : CT.ui.notice("info", "There are no upcoming dates for this concert."));
    }

    async function loadHolds() {
      try {
        const { data } = await CT.api("GET", "/v1/reservations");
        if (!view.alive) return;
        const held = (data.reservations || []).filter((r) => String(r.concertId) === String(concertId) && r.status === "HELD");
        if (held.length === 0) return;
        replace(holdsBox, CT.ui.notice("info", "You have " + (held.length === 1 ? "a seat" : held.length + " seats") + " on hold for this concert.",
          h("div", { class: "notice-actions" }, held.map((r) =>
            h("a", { href: "#/checkout/" + r.id, class: "button button-small" }, "Pay for seat " + r.seatNumber)))));
      } catch (_) {
        // only a shortcut: the list is on "My reservations" too
      }
    }
  };

  // ---- the seat map --------------------------------------------------------------------
  fan.seatsView = function (view, { concertId, scheduleId }) {
    const root = viewRoot();
    if (needsSignIn(root, "Choose a seat", "Sign in to choose a seat.")) return;
    const ticket = fan.ticket(concertId);
    const heading = title("Choose a seat");
    const sub = h("p", { class: "lead" });
    if (!ticket || ticket.status !== "ACTIVE") {
      replace(root, heading, CT.ui.notice("info", "You need your turn in the concert's line before choosing a seat.",
        h("div", { class: "notice-actions" }, h("a", { href: "#/concert/" + concertId, class: "button button-small" }, "Go to the line"))));
      return;
    }
    const panel = h("section", { class: "panel seat-panel", "aria-live": "polite", "aria-label": "Your choice" },
      h("p", { class: "muted" }, "Pick an available (green) seat."));
    const turn = ticket.activeUntil ? h("p", { class: "muted small" }, "Your turn ends in ", countdown(view, ticket.activeUntil, () => {
      fan.dropTicket(concertId);
      replace(panel, backToLine(concertId, new CT.ApiError({ code: "QUEUE_TOKEN_INVALID", status: 401 })));
    }), ".") : null;
    const legend = h("ul", { class: "legend", "aria-label": "Seat colours" },
      h("li", null, h("span", { class: "swatch seat-available" }), "Available"),
      h("li", null, h("span", { class: "swatch seat-held" }), "Held by someone"),
      h("li", null, h("span", { class: "swatch seat-sold" }), "Sold"),
      h("li", null, h("span", { class: "swatch seat-selected" }), "Your choice"));
    const refreshNote = h("p", { class: "muted small", "aria-live": "off" });
    const problem = h("div", { class: "status-area" });
    const stage = h("div", { class: "stage", "aria-hidden": "true" }, "Stage");
    const grid = h("div", { class: "seat-grid", role: "group", "aria-label": "Seats (use the arrow keys to move)" });
    replace(root, heading, sub, turn, legend, problem, stage, grid, refreshNote, panel,
      h("p", null, h("a", { href: "#/concert/" + concertId }, "← Other dates")));

    fan.concert(concertId).then((concert) => { if (view.alive) heading.textContent = "Choose a seat · " + concert.title; }, () => {});
    CT.api("GET", "/v1/concerts/" + concertId + "/schedules", { queueToken: ticket.token }).then(({ data }) => {
      const schedule = (data.schedules || []).find((s) => String(s.id) === String(scheduleId));
      if (view.alive && schedule) sub.textContent = CT.ui.dateTime(schedule.startsAt);
    }, () => {});

    let seats = [];
    const buttons = new Map();
    let selected = null;
    let holding = false;
    let errorDelay = 4000;

    const poll = view.loop(async () => {
      let data;
      try {
        ({ data } = await CT.api("GET", "/v1/schedules/" + scheduleId + "/seats", { queueToken: ticket.token }));
      } catch (error) {
        if (!view.alive) return null;
        if (error.isQueueProblem || error.code === "QUEUE_TOKEN_NOT_ACTIVE") {
          replace(problem, backToLine(concertId, error));
          return null;
        }
        replace(problem, CT.ui.errorBox(error, { retry: () => poll.now() }));
        if (!error.retryable) return null;
        errorDelay = Math.min(errorDelay * 2, 30000);
        return errorDelay;
      }
      if (!view.alive) return null;
      errorDelay = 4000;
      replace(problem);
      seats = Array.isArray(data && data.seats) ? data.seats : [];
      renderSeats();
      refreshNote.textContent = "Seat map updated at " + new Date().toLocaleTimeString() + "; it refreshes every few seconds.";
      return 4000;
    });

    function statusWord(status) {
      return status === "AVAILABLE" ? "available" : status === "HELD" ? "held by someone" : "sold";
    }

    function renderSeats() {
      if (buttons.size !== seats.length) {
        ui_clearGrid();
        for (const seat of seats) {
          const button = h("button", { type: "button", class: "seat", "data-seat": seat.number, tabindex: "-1" }, String(seat.number));
          button.addEventListener("click", () => choose(seat.number));
          buttons.set(seat.number, button);
          grid.appendChild(button);
        }
      }
      for (const seat of seats) {
        const button = buttons.get(seat.number);
        const isSelected = selected === seat.number;
        button.className = "seat seat-" + seat.status.toLowerCase() + (isSelected ? " seat-selected" : "");
        button.dataset.status = seat.status;
        button.setAttribute("aria-pressed", isSelected ? "true" : "false");
        button.setAttribute("aria-label", "Seat " + seat.number + ", " + statusWord(seat.status) + ", " + CT.ui.points(seat.price));
        if (seat.status === "AVAILABLE") button.removeAttribute("aria-disabled");
        else button.setAttribute("aria-disabled", "true");
      }
      if (selected !== null) {
        const seat = seats.find((s) => s.number === selected);
        if (seat && seat.status !== "AVAILABLE" && !holding) {
          selected = null;
          renderSeats();
          replace(panel, CT.ui.notice("error", "Someone just took seat " + seat.number + ". Please pick another one."));
          return;
        }
      }
      // One seat is in the tab order (the choice, else the first free one); arrows move between seats.
      const focusable = selected !== null ? selected : (seats.find((s) => s.status === "AVAILABLE") || seats[0] || {}).number;
      const hasFocus = grid.contains(document.activeElement) ? Number(document.activeElement.dataset.seat) : null;
      for (const [number, button] of buttons) {
        button.tabIndex = (hasFocus !== null ? number === hasFocus : number === focusable) ? 0 : -1;
      }
    }
    function ui_clearGrid() {
      buttons.clear();
      CT.ui.clear(grid);
    }

    grid.addEventListener("keydown", (event) => {
      const current = document.activeElement && document.activeElement.dataset ? Number(document.activeElement.dataset.seat) : NaN;
      if (!Number.isInteger(current)) return;
      const list = Array.from(buttons.values());
      const index = list.findIndex((b) => Number(b.dataset.seat) === current);
      const top = list[0] ? list[0].offsetTop : 0;
      const columns = Math.max(1, list.filter((b) => b.offsetTop === top).length);
      let next = index;
      switch (event.key) {
        case "ArrowRight": next = index + 1; break;
        case "ArrowLeft": next = index - 1; break;
        case "ArrowDown": next = index + columns; break;
        case "ArrowUp": next = index - columns; break;
        case "Home": next = 0; break;
        case "End": next = list.length - 1; break;
        default: return;
      }
      event.preventDefault();
      if (next < 0 || next >= list.length) return;
      list[index].tabIndex = -1;
      list[next].tabIndex = 0;
      list[next].focus();
    });

    function choose(number) {
      if (holding) return;
      const seat = seats.find((s) => s.number === number);
      if (!seat) return;
      if (seat.status !== "AVAILABLE") {
        replace(panel, CT.ui.notice("info", "Seat " + number + " is " + statusWord(seat.status) + ". Please pick a green seat."));
        return;
      }
      selected = number;
      renderSeats();
      const holdButton = h("button", { type: "button", class: "button", "data-action": "hold" }, "Hold seat " + number);
      holdButton.addEventListener("click", () => hold(number, holdButton));
      replace(panel,
        h("h2", null, "Seat " + number),
        h("p", null, "Price: ", h("strong", { text: CT.ui.points(seat.price) }),
          ". Holding it keeps it for you for a few minutes while you pay."),
        h("div", { class: "actions" }, holdButton));
    }

    async function hold(number, button) {
      // Never send a seat the schedule doesn't have.
      if (!Number.isInteger(number) || number < 1 || number > seats.length) {
        replace(panel, CT.ui.notice("error", "Please pick a seat from the map."));
        return;
      }
      holding = true;
      const oldNotice = panel.querySelector(".notice");
      if (oldNotice) oldNotice.remove();
      let reservation;
      try {
        ({ data: reservation } = await CT.ui.busy(button, "Holding…", () => CT.api("POST", "/v1/reservations", {
          body: { scheduleId: Number(scheduleId), seatNumber: number }, queueToken: ticket.token,
        })));
      } catch (error) {
        holding = false;
        if (!view.alive) return;
        if (error.code === "SEAT_UNAVAILABLE" || error.retryable) {
          // Maybe the hold went through and only its answer was lost.
          const mine = await myLiveHold(number);
          if (mine) {
            location.hash = "#/checkout/" + mine.id;
            return;
          }
        }
        if (error.isQueueProblem || error.code === "QUEUE_TOKEN_NOT_ACTIVE") {
          append(panel, backToLine(concertId, error));
          return;
        }
        if (error.code === "SEAT_UNAVAILABLE") {
          selected = null;
          replace(panel, CT.ui.errorBox(error));
          poll.now();
          return;
        }
        append(panel, CT.ui.errorBox(error, {
          retry: () => hold(number, button),
          extra: error.code === "HOLD_LIMIT_REACHED" ? h("a", { href: "#/reservations", class: "button button-small button-secondary" }, "My reservations") : null,
        }));
        return;
      }
      holding = false;
      location.hash = "#/checkout/" + reservation.id;
    }

    async function myLiveHold(number) {
      try {
        const { data } = await CT.api("GET", "/v1/reservations");
        return (data.reservations || []).find((r) => String(r.scheduleId) === String(scheduleId) &&
          r.seatNumber === number && r.status === "HELD") || null;
      } catch (_) {
        return null;
      }
    }
  };

  // ---- charging points (a form used on two pages) ---------------------------------------
  /**
   * The charge form. Each attempt gets its own Idempotency-Key; one that got no answer keeps its
   * key, so trying the same amount again cannot charge twice.
   */
  fan.chargeForm = function ({ idPrefix, balance, onCharged }) {
    const amount = CT.ui.field({
      id: idPrefix + "-amount", label: "Amount to charge (points)",
      hint: "A whole number from 1 to 10,000,000.",
      attrs: { inputmode: "numeric", autocomplete: "off", "data-field": "amount" },
    });
    const submit = h("button", { type: "submit", class: "button", "data-action": "charge" }, "Charge points");
    const result = h("div", { class: "status-area", "aria-live": "polite" });
    const form = h("form", { class: "form form-inline", novalidate: true, "aria-label": "Charge points" },
      amount.field, h("div", { class: "actions" }, submit), result);
    const draft = CT.ui.keepDraft(form, "charge." + idPrefix);
    const pendingKey = () => "chargekey." + CT.auth.userId();

    async function attempt() {
      replace(result);
      const checked = CT.validate.integer(amount.input.value, { min: 1, max: CT.MAX_CHARGE, name: "The amount" });
      if (checked.error) {
        amount.setError(checked.error);
        amount.input.focus();
        return;
      }
      const current = balance ? balance() : null;
      if (typeof current === "number" && current + checked.value > CT.MAX_BALANCE) {
        amount.setError("A balance can't pass 1,000,000,000 points; you can charge at most " + CT.ui.number(CT.MAX_BALANCE - current) + ".");
        return;
      }
      // The same amount after a lost answer reuses its key; anything else is a new attempt.
      let pending = CT.store.get(pendingKey());
      if (!pending || pending.amount !== checked.value) {
        pending = { amount: checked.value, key: CT.newKey("charge") };
        CT.store.set(pendingKey(), pending);
      }
      let data;
      try {
        ({ data } = await CT.ui.busy(submit, "Charging…", () => CT.apiWithRetry("POST", "/v1/points/charges", {
          body: { amount: checked.value }, idempotencyKey: pending.key,
        }, { onRetry: () => replace(result, CT.ui.notice("info", "Connection trouble; trying again safely…")) })));
      } catch (error) {
        if (!error.retryable) CT.store.remove(pendingKey());
        replace(result, CT.ui.errorBox(error, { retry: attempt }));
        return;
      }
      CT.store.remove(pendingKey());
      amount.input.value = "";
      draft.clear();
      replace(result, CT.ui.notice("success", "Charged " + CT.ui.points(checked.value) + ". Your balance is " + CT.ui.points(data.balance) + "."));
      if (onCharged) onCharged(data.balance);
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      attempt();
    });
    return { form, setAmount(value) { if (!amount.input.value) amount.input.value = String(value); } };
  };

  // ---- checkout: a held seat, its countdown, points and paying ---------------------------
  fan.checkoutView = function (view, { reservationId }) {
    const root = viewRoot();
    if (needsSignIn(root, "Checkout", "Sign in to see your hold.")) return;
    const status = h("div", { class: "status-area" });
    const main = h("div");
    replace(root, title("Checkout"), status, main);

    let reservation = null;
    let balance = null;

    async function load() {
      replace(status, h("p", { class: "muted", text: "Loading your reservation…" }));
      try {
        const [r, b] = await Promise.all([
          CT.api("GET", "/v1/reservations/" + reservationId),
          CT.api("GET", "/v1/points"),
        ]);
        reservation = r.data;
        balance = b.data.balance;
      } catch (error) {
        if (view.alive) replace(status, CT.ui.errorBox(error, { retry: load }));
        return;
      }
      if (!view.alive) return;
      replace(status);
      render();
    }

    const payKey = () => "paykey." + CT.auth.userId() + "." + reservationId;
    const refundKey = () => "refundkey." + CT.auth.userId() + "." + reservationId;

    function render() {
      const r = reservation;
      const concertName = h("span", null, "Concert #" + r.concertId);
      const badge = h("span", { class: "badge badge-" + r.status.toLowerCase(), "data-field": "status", text: r.status });
      fan.concert(r.concertId).then((c) => { concertName.textContent = c.title; }, () => {});
      const details = h("dl", { class: "details" },
        h("dt", null, "Concert"), h("dd", null, concertName),
        h("dt", null, "Seat"), h("dd", { "data-field": "seat" }, String(r.seatNumber)),
        h("dt", null, "Price"), h("dd", { "data-field": "price" }, CT.ui.points(r.price)),
        h("dt", null, "Status"), h("dd", null, badge));
      const parts = [h("section", { class: "panel", "aria-label": "Your reservation" }, details)];

      if (r.status === "CONFIRMED") {
        parts.push(CT.ui.notice("success", "Paid. Seat " + r.seatNumber + " is yours.",
          h("div", { class: "notice-actions" }, h("a", { href: "#/reservations", class: "button button-small" }, "My reservations"))));
        // The reservation names its payment (wherever it was paid); the server refuses a refund
        // after the cutoff with a readable REFUND_NOT_ALLOWED.
        const paymentId = fan.paymentIdOf(r);
        if (paymentId) parts.push(refundPanel(paymentId));
        replace(main, ...parts);
        return;
      }
      if (r.status !== "HELD") {
        parts.push(CT.ui.notice("error", r.status === "EXPIRED" ? CT.messageFor(new CT.ApiError({ code: "RESERVATION_EXPIRED" }))
          : "This reservation was cancelled (a hold let go, a refund, or a cancelled date).",
          h("div", { class: "notice-actions" }, h("a", { href: "#/concert/" + r.concertId, class: "button button-small" }, "Pick a seat again"))));
        replace(main, ...parts);
        return;
      }

      const payResult = h("div", { class: "status-area", "aria-live": "polite" });
      const payButton = h("button", { type: "button", class: "button button-primary", "data-action": "pay" }, "Pay " + CT.ui.points(r.price));
      const holdLine = h("p", { class: "hold-timer" }, "Your hold ends in ", countdown(view, r.heldUntil, () => {
        payButton.disabled = true;
        badge.textContent = "EXPIRED";
        badge.className = "badge badge-expired";
        replace(payResult, CT.ui.errorBox(new CT.ApiError({ code: "RESERVATION_EXPIRED", status: 410 }), {
          extra: h("a", { href: "#/concert/" + r.concertId, class: "button button-small" }, "Pick a seat again"),
        }));
      }), ".");
      const balanceValue = h("strong", { "data-field": "balance", text: CT.ui.points(balance) });
      const shortfall = h("p", { class: "shortfall" });
      function updateBalance() {
        balanceValue.textContent = CT.ui.points(balance);
        shortfall.textContent = balance < r.price ? "You need " + CT.ui.points(r.price - balance) + " more to pay." : "";
        shortfall.hidden = balance >= r.price;
      }
      const charge = fan.chargeForm({
        idPrefix: "checkout", balance: () => balance,
        onCharged: (newBalance) => { balance = newBalance; updateBalance(); },
      });
      updateBalance();
      payButton.addEventListener("click", () => pay(payButton, payResult, (newBalance) => { balance = newBalance; updateBalance(); }));

      parts.push(holdLine,
        h("section", { class: "panel", "aria-labelledby": "points-heading" },
          h("h2", { id: "points-heading" }, "Points"),
          h("p", null, "Your balance: ", balanceValue), shortfall, charge.form),
        h("section", { class: "panel", "aria-labelledby": "pay-heading" },
          h("h2", { id: "pay-heading" }, "Pay"),
          h("p", null, "Paying takes " + CT.ui.points(r.price) + " from your balance and the seat is yours."),
          h("div", { class: "actions" }, payButton), payResult));
      replace(main, ...parts);
    }

    /** A refund button with a confirmation step; refunds close a while before the date (the server says when). */
    function refundPanel(paymentId) {
      const r = reservation;
      const result = h("div", { class: "status-area", "aria-live": "polite" });
      const button = h("button", { type: "button", class: "button button-secondary", "data-action": "refund" },
        "Refund " + CT.ui.points(r.price) + "…");
      button.addEventListener("click", () => {
        const yes = h("button", { type: "button", class: "button button-danger", "data-action": "confirm-refund" },
          "Yes, refund and give up seat " + r.seatNumber);
        const no = h("button", { type: "button", class: "button button-secondary", "data-action": "keep-seat" }, "Keep my seat");
        no.addEventListener("click", () => { replace(result); button.focus(); });
        yes.addEventListener("click", () => refund(paymentId, yes, result));
        replace(result, CT.ui.notice("warning", "Refund this payment? " + CT.ui.points(r.price) + " go back to your balance and seat " +
          r.seatNumber + " is released.", h("div", { class: "notice-actions" }, yes, no)));
        yes.focus();
      });
      return h("section", { class: "panel", "aria-labelledby": "refund-heading" },
        h("h2", { id: "refund-heading" }, "Refund"),
        h("p", { class: "muted" }, "You can refund until shortly before the date starts."),
        h("div", { class: "actions" }, button), result);
    }

    async function refund(paymentId, button, result) {
      // One key per refund, kept until a definite answer, so a retry never refunds twice.
      let key = CT.store.get(refundKey());
      if (!key) {
        key = CT.newKey("refund");
        CT.store.set(refundKey(), key);
      }
      let data;
      try {
        ({ data } = await CT.ui.busy(button, "Refunding…", () => CT.apiWithRetry("POST", "/v1/payments/" + paymentId + "/refund", {
          body: {}, idempotencyKey: key,
        }, { onRetry: () => replace(result, CT.ui.notice("info", "Connection trouble; retrying the refund safely…")) })));
      } catch (error) {
        if (!view.alive) return;
        if (!error.retryable) CT.store.remove(refundKey());
        if (error.code === "PAYMENT_ALREADY_REFUNDED") {
          load();
          return;
        }
        replace(result, CT.ui.errorBox(error));
        return;
      }
      CT.store.remove(refundKey());
      reservation = Object.assign({}, reservation, { status: "CANCELLED" });
      render();
      append(main, CT.ui.notice("success", "Refunded " + CT.ui.points(data.amount) + ". Your balance is now " +
        CT.ui.points(data.balance) + "."));
    }

    async function pay(button, result, setBalance) {
      const r = reservation;
      replace(result);
      const ticket = fan.ticket(r.concertId);
      if (!ticket || ticket.status !== "ACTIVE") {
        replace(result, backToLine(r.concertId, new CT.ApiError({ code: "QUEUE_TOKEN_MISSING", status: 401 })));
        return;
      }
      if (!Number.isSafeInteger(Number(r.id)) || Number(r.id) < 1) return;
      // One key per payment of this reservation, kept until a definite answer: a retry after a
      // lost answer is replayed by the server instead of paying twice.
      let key = CT.store.get(payKey());
      if (!key) {
        key = CT.newKey("pay");
        CT.store.set(payKey(), key);
      }
      let data;
      try {
        ({ data } = await CT.ui.busy(button, "Paying…", () => CT.apiWithRetry("POST", "/v1/payments", {
          body: { reservationId: Number(r.id) }, queueToken: ticket.token, idempotencyKey: key,
        }, { onRetry: () => replace(result, CT.ui.notice("info", "Connection trouble; retrying the payment safely (you won't pay twice)…")) })));
      } catch (error) {
        if (!view.alive) return;
        if (!error.retryable) CT.store.remove(payKey());
        if (error.isQueueProblem || error.code === "QUEUE_TOKEN_NOT_ACTIVE") {
          replace(result, backToLine(r.concertId, error));
          return;
        }
        if (error.code === "RESERVATION_ALREADY_PAID") {
          load();
          return;
        }
        replace(result, CT.ui.errorBox(error, {
          retry: () => pay(button, result, setBalance),
          extra: error.code === "RESERVATION_EXPIRED"
            ? h("a", { href: "#/concert/" + r.concertId, class: "button button-small" }, "Pick a seat again") : null,
        }));
        if (error.code === "RESERVATION_EXPIRED") button.disabled = true;
        if (error.code === "INSUFFICIENT_POINTS") {
          const input = document.getElementById("checkout-amount");
          if (input && !input.value) input.focus();
        }
        return;
      }
      CT.store.remove(payKey());
      fan.dropTicket(r.concertId); // paying ends the turn in line
      reservation = Object.assign({}, r, { status: "CONFIRMED", paymentId: data.id });
      render();
      if (typeof data.balance === "number") {
        append(main, CT.ui.notice("info", "Your balance is now " + CT.ui.points(data.balance) + "."));
      }
    }

    load();
  };

  /** The payment id a reservation names (`paymentId`, once paid), or null. */
  fan.paymentIdOf = function (reservation) {
    const id = Number(reservation && reservation.paymentId);
    return Number.isSafeInteger(id) && id > 0 ? id : null;
  };

  // ---- my reservations -----------------------------------------------------------------
  fan.reservationsView = function (view) {
    const root = viewRoot();
    if (needsSignIn(root, "My reservations", "Sign in to see your reservations.")) return;
    const status = h("div", { class: "status-area", "aria-live": "polite" });
    const body = h("div");
    replace(root, title("My reservations"), status, body);

    async function load() {
      replace(status, h("p", { class: "muted", text: "Loading…" }));
      let data;
      try {
        ({ data } = await CT.api("GET", "/v1/reservations"));
      } catch (error) {
        if (view.alive) replace(status, CT.ui.errorBox(error, { retry: load }));
        return;
      }
      if (!view.alive) return;
      replace(status);
      const reservations = (Array.isArray(data && data.reservations) ? data.reservations : []).slice()
        .sort((a, b) => Number(b.id) - Number(a.id));
      if (reservations.length === 0) {
        replace(body, CT.ui.notice("info", "You have no reservations yet.",
          h("div", { class: "notice-actions" }, h("a", { href: "#/concerts", class: "button button-small" }, "Find a concert"))));
        return;
      }
      const rows = reservations.map((r) => {
        const concertCell = h("td", null, "Concert #" + r.concertId);
        fan.concert(r.concertId).then((c) => { concertCell.textContent = c.title; }, () => {});
        const actions = h("div", { class: "row-actions" });
        if (r.status === "HELD") {
          actions.appendChild(h("a", { href: "#/checkout/" + r.id, class: "button button-small" }, "Pay"));
          actions.appendChild(h("button", {
            type: "button", class: "button button-small button-secondary",
            onclick: (event) => cancel(r, event.currentTarget),
          }, "Cancel hold"));
        }
        if (r.status === "CONFIRMED" && fan.paymentIdOf(r)) {
          actions.appendChild(h("a", { href: "#/checkout/" + r.id, class: "button button-small button-secondary", "data-action": "open-refund" },
            "Refund…"));
        }
        const when = r.status === "HELD" ? "Held until " + CT.ui.dateTime(r.heldUntil) : "Booked " + CT.ui.dateTime(r.createdAt);
        return h("tr", { "data-reservation-id": r.id },
          h("td", null, String(r.id)), concertCell, h("td", null, String(r.seatNumber)),
          h("td", { class: "num" }, CT.ui.points(r.price)),
          h("td", null, h("span", { class: "badge badge-" + r.status.toLowerCase(), "data-field": "status", text: r.status })),
          h("td", null, when), h("td", null, actions));
      });
      replace(body, h("div", { class: "table-wrap" }, h("table", { class: "table" },
        h("caption", { class: "visually-hidden" }, "Your reservations, newest first"),
        h("thead", null, h("tr", null, ["#", "Concert", "Seat", "Price", "Status", "When", "Actions"].map((t) => h("th", { scope: "col", class: t === "Price" ? "num" : null, text: t })))),
        h("tbody", null, rows))),
        h("div", { class: "actions" }, h("button", { type: "button", class: "button button-secondary", onclick: load }, "Refresh")));
    }

    async function cancel(reservation, button) {
      if (!window.confirm("Cancel your hold on seat " + reservation.seatNumber + "?")) return;
      try {
        await CT.ui.busy(button, "Cancelling…", () => CT.api("DELETE", "/v1/reservations/" + reservation.id));
      } catch (error) {
        replace(status, CT.ui.errorBox(error, { retry: () => cancel(reservation, button) }));
        return;
      }
      replace(status, CT.ui.notice("success", "Your hold on seat " + reservation.seatNumber + " was cancelled."));
      load().then(() => {});
    }

    load();
  };

  // ---- points: balance, charging, history ----------------------------------------------
  fan.pointsView = function (view) {
    const root = viewRoot();
    if (needsSignIn(root, "Points", "Sign in to see your points.")) return;
    let balance = null;
    const balanceValue = h("strong", { class: "big-number", "data-field": "balance" }, "…");
    const status = h("div", { class: "status-area" });
    const history = h("section", { class: "panel", "aria-labelledby": "history-heading" }, h("h2", { id: "history-heading" }, "History"));
    const charge = fan.chargeForm({ idPrefix: "points", balance: () => balance, onCharged: (b) => { balance = b; show(); loadHistory(); } });
    replace(root, title("Points"),
      h("section", { class: "panel", "aria-labelledby": "balance-heading" },
        h("h2", { id: "balance-heading" }, "Balance"), h("p", null, balanceValue),
        h("p", { class: "muted small" }, "1 point = 1 KRW. Points pay for seats.")),
      status,
      h("section", { class: "panel", "aria-labelledby": "charge-heading" }, h("h2", { id: "charge-heading" }, "Charge points"), charge.form),
      history);

    function show() { balanceValue.textContent = balance === null ? "…" : CT.ui.points(balance); }

    async function loadBalance() {
      try {
        ({ data: { balance } } = await CT.api("GET", "/v1/points"));
        if (view.alive) { replace(status); show(); }
      } catch (error) {
        if (view.alive) replace(status, CT.ui.errorBox(error, { retry: loadBalance }));
      }
    }

    async function loadHistory() {
      let data;
      try {
        ({ data } = await CT.api("GET", "/v1/points/history"));
      } catch (error) {
        if (view.alive) replace(history, h("h2", { id: "history-heading" }, "History"), CT.ui.errorBox(error, { retry: loadHistory }));
        return;
      }
      if (!view.alive) return;
      const entries = Array.isArray(data && data.entries) ? data.entries : [];
      if (entries.length === 0) {
        replace(history, h("h2", { id: "history-heading" }, "History"), h("p", { class: "muted" }, "No charges or payments yet."));
        return;
      }
      replace(history, h("h2", { id: "history-heading" }, "History"),
        h("div", { class: "table-wrap" }, h("table", { class: "table" },
          h("caption", { class: "visually-hidden" }, "Charges and payments, newest first"),
          h("thead", null, h("tr", null, ["When", "What", "Amount", "Balance after"].map((t) => h("th", { scope: "col", class: t === "Amount" || t === "Balance after" ? "num" : null, text: t })))),
          h("tbody", null, entries.map((e) => h("tr", { "data-entry-type": e.type },
            h("td", null, CT.ui.dateTime(e.createdAt)),
            h("td", null, e.type === "CHARGE" ? "Charge" : e.type === "PAYMENT" ? "Payment" : e.type),
            h("td", { class: "num " + (e.amount < 0 ? "negative" : "positive") }, (e.amount > 0 ? "+" : "") + CT.ui.number(e.amount)),
            h("td", { class: "num" }, CT.ui.number(e.balanceAfter))))))));
    }

    loadBalance();
    loadHistory();
  };
})(window.CT);
