import ConcertDomain

/// A registered receiver of events.
public struct Webhook: Sendable, Equatable {
    public var id: Int64
    public var url: String
    public var events: [String]
    /// `whsec_` + base64 of 32 random bytes; only the registration answer shows it.
    public var secret: String
    public var createdAt: Timestamp
    public init(id: Int64, url: String, events: [String], secret: String, createdAt: Timestamp) {
        self.id = id
        self.url = url
        self.events = events
        self.secret = secret
        self.createdAt = createdAt
    }
}

/// One event due for one webhook, claimed by a relay until `leaseUntil`.
public struct WebhookDelivery: Sendable, Equatable {
    public var id: Int64
    public var webhookId: Int64
    public var eventId: Int64
    public var url: String
    public var secret: String
    public var type: String
    /// The outbox row's snapshot of the changed row (JSON, times in milliseconds).
    public var data: String
    public var occurredAt: Timestamp
    /// Attempts made before this one.
    public var attempts: Int
    /// When the event was fanned out to this webhook (the retry schedule counts from here).
    public var createdAt: Timestamp
    /// The lease this claim holds; recording an attempt needs it (a relay whose lease ran out and
    /// was re-claimed by another cannot overwrite the newer attempt's outcome).
    public var leaseUntil: Timestamp
    public init(id: Int64, webhookId: Int64, eventId: Int64, url: String, secret: String, type: String, data: String,
                occurredAt: Timestamp, attempts: Int, createdAt: Timestamp, leaseUntil: Timestamp) {
        self.id = id
        self.webhookId = webhookId
        self.eventId = eventId
        self.url = url
        self.secret = secret
        self.type = type
        self.data = data
        self.occurredAt = occurredAt
        self.attempts = attempts
        self.createdAt = createdAt
        self.leaseUntil = leaseUntil
    }
}

/// How one delivery attempt ended.
public enum WebhookAttemptOutcome: Sendable, Equatable {
    /// 2xx: done.
    case delivered(status: Int)
    /// Try again at `at`.
    case retry(at: Timestamp, status: Int?, error: String)
    /// Given up (past the retry window).
    case failed(status: Int?, error: String)
}

extension WebhookAttemptOutcome {
    /// The delivery columns an outcome writes (the same on both engines).
    public struct Columns: Sendable {
        public var state: String
        public var nextAttemptAt: Int64
        public var status: Int?
        public var error: String?
        public var deliveredAt: Int64?
    }

    public func columns(now: Timestamp) -> Columns {
        switch self {
        case .delivered(let status):
            Columns(state: "DELIVERED", nextAttemptAt: now.milliseconds, status: status, error: nil, deliveredAt: now.milliseconds)
        case .retry(let at, let status, let error):
            Columns(state: "PENDING", nextAttemptAt: at.milliseconds, status: status, error: String(error.prefix(500)), deliveredAt: nil)
        case .failed(let status, let error):
            Columns(state: "FAILED", nextAttemptAt: now.milliseconds, status: status, error: String(error.prefix(500)), deliveredAt: nil)
        }
    }
}

/// A recent delivery, for the operators' view.
public struct WebhookDeliveryRecord: Sendable, Equatable {
    public var id: Int64
    public var webhookId: Int64
    public var eventId: Int64
    public var type: String
    public var state: String
    public var attempts: Int
    public var lastStatus: Int?
    public var lastError: String?
    public var createdAt: Timestamp
    public var deliveredAt: Timestamp?
    public init(id: Int64, webhookId: Int64, eventId: Int64, type: String, state: String, attempts: Int, lastStatus: Int?,
                lastError: String?, createdAt: Timestamp, deliveredAt: Timestamp?) {
        self.id = id
        self.webhookId = webhookId
        self.eventId = eventId
        self.type = type
        self.state = state
        self.attempts = attempts
        self.lastStatus = lastStatus
        self.lastError = lastError
        self.createdAt = createdAt
        self.deliveredAt = deliveredAt
    }
}

/// What is waiting to go out: outbox events not yet fanned out plus deliveries not yet done.
public struct WebhookBacklog: Sendable, Equatable {
    public var undispatchedEvents: Int
    public var pendingDeliveries: Int
    /// The oldest of them (event time or fan-out time), nil when nothing waits.
    public var oldest: Timestamp?
    public init(undispatchedEvents: Int, pendingDeliveries: Int, oldest: Timestamp?) {
        self.undispatchedEvents = undispatchedEvents
        self.pendingDeliveries = pendingDeliveries
        self.oldest = oldest
    }
}

/// Webhook registrations, the transactional outbox (written by database triggers in the same
/// transaction as each change; see the migrations) and its per-webhook deliveries.
///
/// Every method is safe on any number of instances at once: PostgreSQL claims rows with
/// `FOR UPDATE SKIP LOCKED` (and deliveries with a lease), SQLite serialises writers.
public protocol WebhookStore: Sendable {
    func createWebhook(url: String, events: [String], secret: String, now: Timestamp) async throws -> Webhook
    /// By id.
    func webhooks() async throws -> [Webhook]
    /// Removes the webhook and its undelivered deliveries; false when there was none.
    func deleteWebhook(id: Int64) async throws -> Bool

    /// Fans up to `limit` outbox events (oldest first) out to one delivery per webhook subscribed
    /// to the event's type, due at `now`, and marks them dispatched; returns how many events.
    func dispatchWebhookEvents(now: Timestamp, limit: Int) async throws -> Int
    /// Claims up to `limit` due deliveries until `now + leaseMilliseconds`: PENDING, due, not
    /// leased (or the lease ran out: its relay died), and none waiting behind an earlier
    /// undelivered event of the same reservation for the same webhook.
    func claimWebhookDeliveries(now: Timestamp, leaseMilliseconds: Int64, limit: Int) async throws -> [WebhookDelivery]
    /// Records the attempt of a claimed delivery; ignored when its lease was taken over.
    func recordWebhookAttempt(_ delivery: WebhookDelivery, outcome: WebhookAttemptOutcome, now: Timestamp) async throws
    func webhookBacklog() async throws -> WebhookBacklog
    /// Newest first.
    func recentWebhookDeliveries(limit: Int) async throws -> [WebhookDeliveryRecord]

    /// Writes down up to `limit` holds that ran out by `now` (HELD → EXPIRED, which fires
    /// `reservation.expired`); returns how many.
    func expireRunOutHolds(now: Timestamp, limit: Int) async throws -> Int

    /// Retention: deletes up to `limit` outbox events (oldest first) that happened before `before`,
    /// were fanned out, and whose every delivery is finished (DELIVERED or FAILED) since before
    /// `before`, together with those deliveries; returns how many events. Events not yet fanned out
    /// and events with a PENDING delivery are never deleted. Safe on every instance at once
    /// (PostgreSQL skips events another sweep has locked; SQLite serialises writers).
    func pruneWebhookEvents(before: Timestamp, limit: Int) async throws -> Int
}
