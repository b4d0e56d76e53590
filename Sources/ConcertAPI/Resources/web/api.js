/* concertd web page: talking to the API (fetch wrapper, errors, sign-in state, validation). */
"use strict";

window.CT = window.CT || {};

(function (CT) {
  // ---- sessionStorage, namespaced -------------------------------------------------------
  const PREFIX = "concertd.";
  CT.store = {
    get(key, fallback = null) {
      try {
        const raw = sessionStorage.getItem(PREFIX + key);
        return raw === null ? fallback : JSON.parse(raw);
      } catch (_) {
        return fallback;
      }
    },
    set(key, value) {
      try { sessionStorage.setItem(PREFIX + key, JSON.stringify(value)); } catch (_) { /* storage full or off */ }
    },
    remove(key) {
      try { sessionStorage.removeItem(PREFIX + key); } catch (_) { /* ignore */ }
    },
  };

  // ---- the signed-in user (JWT kept in sessionStorage) -----------------------------------
  function decodeClaims(jwt) {
    const parts = String(jwt).split(".");
    if (parts.length !== 3) return null;
    try {
      let b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
      while (b64.length % 4) b64 += "=";
      const json = decodeURIComponent(Array.prototype.map.call(atob(b64),
        (c) => "%" + ("00" + c.charCodeAt(0).toString(16)).slice(-2)).join(""));
      const claims = JSON.parse(json);
      return claims && typeof claims === "object" ? claims : null;
    } catch (_) {
      return null;
    }
  }

  const listeners = [];
  CT.auth = {
    token() {
      const token = CT.store.get("jwt");
      if (!token) return null;
      const claims = decodeClaims(token);
      if (claims && typeof claims.exp === "number" && claims.exp * 1000 <= Date.now()) {
        CT.store.remove("jwt");
        return null;
      }
      return token;
    },
    claims() {
      const token = this.token();
      return token ? decodeClaims(token) : null;
    },
    userId() {
      const claims = this.claims();
      return claims && claims.sub ? String(claims.sub) : null;
    },
    isAdmin() {
      const claims = this.claims();
      return !!(claims && claims.role === "admin");
    },
    /** Checks a pasted JWT's shape; returns an error message or null. The server checks the signature. */
    problemWith(jwt) {
      if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(jwt)) {
        return "That doesn't look like a JWT (three dot-separated parts).";
      }
      const claims = decodeClaims(jwt);
      if (!claims) return "The token's claims could not be read.";
      if (typeof claims.sub !== "string" || !/^[1-9][0-9]*$/.test(claims.sub)) return "The token names no user (its sub claim).";
      if (typeof claims.exp !== "number") return "The token has no expiry (exp claim).";
      if (claims.exp * 1000 <= Date.now()) return "The token has expired.";
      return null;
    },
    signIn(jwt) {
      CT.store.set("jwt", jwt);
      listeners.forEach((fn) => fn());
    },
    signOut() {
      CT.store.remove("jwt");
      listeners.forEach((fn) => fn());
    },
    onChange(fn) { listeners.push(fn); },
  };

  // ---- server time (countdowns follow the server's clock) --------------------------------
  let clockOffset = 0;
  CT.now = () => Date.now() + clockOffset;
  function noteServerDate(headers) {
    const date = headers.get("Date");
    if (!date) return;
    const server = Date.parse(date);
    if (Number.isNaN(server)) return;
    const offset = server - Date.now();
    // The header has one-second precision: only correct clocks that are clearly off.
    clockOffset = Math.abs(offset) > 2000 ? offset : 0;
  }

  // ---- errors --------------------------------------------------------------------------
  class ApiError extends Error {
    constructor({ code, status = 0, detail = null, retryAfter = null, requestId = null }) {
      super(code);
      this.code = code;
      this.status = status;
      this.detail = detail;
      this.retryAfter = retryAfter;
      this.requestId = requestId;
    }
    /** Worth trying again unchanged: the network, the server, or a rate limit. */
    get retryable() {
      return this.code === "NETWORK" || this.status >= 500 || this.status === 0 ||
        this.code === "RATE_LIMITED" || this.code === "IDEMPOTENCY_KEY_IN_USE";
    }
    get isQueueProblem() {
      return this.code === "QUEUE_TOKEN_MISSING" || this.code === "QUEUE_TOKEN_INVALID";
    }
  }
  CT.ApiError = ApiError;

  const MESSAGES = {
    NETWORK: "We couldn't reach the server. Check your connection and try again — nothing you entered is lost.",
    UNAUTHENTICATED: "Your sign-in is missing or has expired. Please sign in again.",
    FORBIDDEN: "This needs an operator (admin) sign-in.",
    CONCERT_NOT_FOUND: "That concert doesn't exist.",
    CONCERT_NOT_RESERVABLE: "Booking for this concert isn't open right now.",
    CONCERT_SOLD_OUT: "This concert is sold out.",
    DRAW_NOT_FOUND: "This concert has no pre-queue, so there is no draw to check.",
    SCHEDULE_NOT_FOUND: "That date doesn't exist.",
    SCHEDULE_NOT_RESERVABLE: "This date can no longer be booked: it has started or booking has closed.",
    SEAT_UNAVAILABLE: "Someone just took that seat. Please pick another one.",
    HOLD_LIMIT_REACHED: "You already hold as many seats as you may. Pay for or cancel a hold first.",
    RESERVATION_NOT_FOUND: "That reservation wasn't found.",
    RESERVATION_NOT_HELD: "That reservation is no longer on hold.",
    RESERVATION_EXPIRED: "Your hold ran out and the seat is free again. Pick a seat once more.",
    RESERVATION_ALREADY_PAID: "This reservation is already paid.",
    INSUFFICIENT_POINTS: "Not enough points. Charge more points, then pay.",
    INVALID_AMOUNT: "That amount can't be charged: use a whole number from 1 to 10,000,000, and a balance can't pass 1,000,000,000.",
    PAYMENT_NOT_FOUND: "That payment wasn't found.",
    PAYMENT_ALREADY_REFUNDED: "This payment has already been refunded.",
    REFUND_NOT_ALLOWED: "Refunds for this date have closed: it starts too soon.",
    QUEUE_TOKEN_MISSING: "You need a place in the line first. Join the line again.",
    QUEUE_TOKEN_INVALID: "Your place in the line is gone (it ran out or was used). Join the line again.",
    QUEUE_TOKEN_NOT_ACTIVE: "It's not your turn yet. Please wait in the line.",
    IDEMPOTENCY_KEY_REUSED: "This attempt clashed with an earlier one. Please try again.",
    IDEMPOTENCY_KEY_IN_USE: "Your previous attempt is still being processed. Try again in a moment.",
    RATE_LIMITED: "Too many requests at once. Please wait a moment and try again.",
    SERVICE_UNAVAILABLE: "The service is briefly unavailable. Please try again in a moment.",
    INTERNAL: "Something went wrong on our side. Please try again.",
    MALFORMED_REQUEST: "The server couldn't read that request. Please reload the page and try again.",
    PAYLOAD_TOO_LARGE: "That was too much text to send.",
    NOT_FOUND: "That page or item wasn't found.",
    METHOD_NOT_ALLOWED: "The server doesn't allow that action here.",
  };

  /** A readable sentence for any error; never a raw response body. */
  CT.messageFor = function (error) {
    if (!(error instanceof ApiError)) return "Something went wrong in this page. Please reload and try again.";
    let message = MESSAGES[error.code];
    if (error.code === "VALIDATION_FAILED") {
      message = "Some input wasn't accepted" + (error.detail ? ": " + String(error.detail).slice(0, 300) : ".");
    }
    if (!message) {
      message = error.status >= 500 ? MESSAGES.INTERNAL : "The request was refused (" + (error.status || "no answer") + ").";
    }
    if ((error.code === "RATE_LIMITED" || error.code === "SERVICE_UNAVAILABLE") && error.retryAfter) {
      message += " (Retry in about " + error.retryAfter + " s.)";
    }
    return message;
  };

  // ---- requests ------------------------------------------------------------------------
  /**
   * One HTTP call. Resolves to {status, data, headers} on 2xx; rejects with ApiError otherwise
   * (code NETWORK when no answer came).
   */
  CT.api = async function (method, path, options = {}) {
    const { body, queueToken, idempotencyKey, auth = true, timeoutMs = 15000 } = options;
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth) {
      const token = CT.auth.token();
      if (token) headers.Authorization = "Bearer " + token;
    }
    if (queueToken) headers["Queue-Token"] = queueToken;
    if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    let response;
    let text;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
        cache: "no-store",
        credentials: "same-origin",
      });
      text = await response.text();
    } catch (_) {
      throw new ApiError({ code: "NETWORK" });
    } finally {
      clearTimeout(timer);
    }
    noteServerDate(response.headers);
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = null; }
    }
    if (response.ok) return { status: response.status, data, headers: response.headers };
    const code = data && typeof data.code === "string" ? data.code
      : response.status >= 500 ? "INTERNAL" : "HTTP_" + response.status;
    const error = new ApiError({
      code,
      status: response.status,
      detail: data && typeof data.detail === "string" ? data.detail : null,
      retryAfter: response.headers.get("Retry-After"),
      requestId: response.headers.get("Request-Id"),
    });
    if (code === "UNAUTHENTICATED" && headers.Authorization) CT.auth.signOut();
    throw error;
  };

  /**
   * Sends a request that is safe to repeat (an idempotent POST with its key): on a network drop
   * or a server error it tries again with the very same options, waiting 1 s, 2 s, 4 s.
   */
  CT.apiWithRetry = async function (method, path, options, { attempts = 4, onRetry } = {}) {
    let delay = 1000;
    for (let attempt = 1; ; attempt++) {
      try {
        return await CT.api(method, path, options);
      } catch (error) {
        const again = error instanceof ApiError &&
          (error.code === "NETWORK" || error.code === "IDEMPOTENCY_KEY_IN_USE" ||
           error.code === "SERVICE_UNAVAILABLE" || error.code === "INTERNAL" || error.status >= 500);
        if (!again || attempt >= attempts) throw error;
        if (onRetry) onRetry(error, attempt);
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay *= 2;
      }
    }
  };

  /** A fresh Idempotency-Key (works outside secure contexts too). */
  CT.newKey = function (prefix) {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return prefix + "-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  };

  // ---- validation (never send what the contract would reject for its shape) -------------
  CT.validate = {
    /** A whole number in [min, max] typed by a person ("50,000" allowed); returns {value} or {error}. */
    integer(text, { min, max, name }) {
      const cleaned = String(text).trim().replace(/[,_\s]/g, "");
      if (cleaned === "") return { error: name + " is required." };
      if (!/^[0-9]+$/.test(cleaned)) return { error: name + " must be a whole number (digits only)." };
      const value = Number(cleaned);
      if (!Number.isSafeInteger(value) || value < min || value > max) {
        return { error: name + " must be between " + min.toLocaleString("en-US") + " and " + max.toLocaleString("en-US") + "." };
      }
      return { value };
    },
    /** A datetime-local value as RFC 3339 UTC with a Z (no fraction); returns {value} or {error}. */
    dateTime(text, { name }) {
      if (!text) return { error: name + " is required." };
      const date = new Date(text);
      if (Number.isNaN(date.getTime())) return { error: name + " is not a valid date and time." };
      const year = date.getUTCFullYear();
      if (year < 1970 || year > 9999) return { error: name + " must be between the years 1970 and 9999." };
      return { value: date.toISOString().replace(/\.\d{3}Z$/, "Z"), date };
    },
    /** Free text of 1–200 characters after trimming. */
    text(text, { name, max = 200 }) {
      const value = String(text).trim();
      if (!value) return { error: name + " is required." };
      if (value.length > max) return { error: name + " must be at most " + max + " characters." };
      return { value };
    },
  };
  CT.MAX_CHARGE = 10000000;
  CT.MAX_BALANCE = 1000000000;
})(window.CT);
