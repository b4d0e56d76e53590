import ConcertDomain
import ConcertStore
import Logging
import Metrics
import NIOCore
import ServiceLifecycle

/// Tuning of the relay; the defaults suit production, tests shorten the waits.
public struct WebhookRelayOptions: Sendable {
    /// Sleep between rounds that found nothing to do.
    public var idleMilliseconds: Int64 = 200
    /// How long a claimed delivery stays with its relay; past it another instance takes it
    /// over (the relay died). Longer than an attempt may take.
    public var leaseMilliseconds: Int64 = 15_000
    public var dispatchBatch = 500
    public var claimBatch = 32
    /// How often holds that ran out are written down (`reservation.expired` within 5 s).
    public var expirySweepMilliseconds: Int64 = 1_000
    public var expiryBatch = 200
    /// Retention of finished events (`CONCERT_WEBHOOK_RETENTION_HOURS`): events whose deliveries
    /// all ended (DELIVERED or FAILED) longer ago than this are deleted; 0 keeps them forever.
    public var retentionMilliseconds: Int64 = 168 * 3_600_000
    /// How often the retention sweep runs; each run deletes batches until one comes back short.
    public var retentionSweepMilliseconds: Int64 = 60_000
    public var retentionBatch = 500
    public init() {}
}

/// On every instance: fans outbox events out to per-webhook deliveries, POSTs the due ones
/// (signed, Standard Webhooks) and records each outcome with its retry time; also writes down
/// holds that ran out (which fires `reservation.expired`) and publishes the backlog gauges.
///
/// Several instances at once are safe: the store claims events and deliveries with
/// `FOR UPDATE SKIP LOCKED` and a lease (PostgreSQL) or under SQLite's single writer, so no
/// event is sent twice on purpose; a delivery whose relay died is re-claimed when its lease ends.
public struct WebhookRelay: Service {
    let store: any WebhookStore
    let guardrail: WebhookAddressGuard
    let client: WebhookHTTPClient
    let clock: WallClock
    let options: WebhookRelayOptions
    let logger: Logger

    public init(store: any WebhookStore, guard guardrail: WebhookAddressGuard, client: WebhookHTTPClient = WebhookHTTPClient(),
                clock: WallClock, options: WebhookRelayOptions = WebhookRelayOptions(), logger: Logger) {
        self.store = store
        self.guardrail = guardrail
        self.client = client
        self.clock = clock
        self.options = options
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await relayLoop() }
                group.addTask { await expiryLoop() }
                group.addTask { await gaugeLoop() }
                if options.retentionMilliseconds > 0 { group.addTask { await retentionLoop() } }
                await group.waitForAll()
            }
        }
    }

    func relayLoop() async {
        while !Task.isCancelled {
            var busy = false
            do {
                busy = try await round()
            } catch {
                logger.debug("webhook relay round failed", metadata: ["error": "\(error)"])
            }
            if !busy { try? await Task.sleep(for: .milliseconds(options.idleMilliseconds)) }
        }
    }

    /// One pass: fan out, claim, deliver. Whether it found work (then the next pass starts at once).
    @discardableResult
    public func round() async throws -> Bool {
        let dispatched = try await store.dispatchWebhookEvents(now: clock.now(), limit: options.dispatchBatch)
        if dispatched > 0 { Counter(label: "concertd_webhook_events_total").increment(by: dispatched) }
        let claimed = try await store.claimWebhookDeliveries(now: clock.now(), leaseMilliseconds: options.leaseMilliseconds,
                                                             limit: options.claimBatch)
        await withTaskGroup(of: Void.self) { group in
            for delivery in claimed { group.addTask { await deliver(delivery) } }
        }
        return dispatched > 0 || !claimed.isEmpty
    }

    func deliver(_ delivery: WebhookDelivery) async {
        let outcome: WebhookAttemptOutcome
        do {
            let status = try await attempt(delivery)
            if (200..<300).contains(status) {
                outcome = .delivered(status: status)
            } else {
                outcome = failure(delivery, status: status, error: "HTTP \(status)")
            }
        } catch {
            outcome = failure(delivery, status: nil, error: "\(error)")
        }
        switch outcome {
        case .delivered: Counter(label: "concertd_webhook_deliveries_total", dimensions: [("outcome", "delivered")]).increment()
        case .retry: Counter(label: "concertd_webhook_deliveries_total", dimensions: [("outcome", "retry")]).increment()
        case .failed:
            Counter(label: "concertd_webhook_deliveries_total", dimensions: [("outcome", "failed")]).increment()
            logger.warning("webhook delivery given up", metadata: ["delivery": "\(delivery.id)", "webhook": "\(delivery.webhookId)"])
        }
        do {
            try await store.recordWebhookAttempt(delivery, outcome: outcome, now: clock.now())
        } catch {
            // The lease runs out and another round (here or elsewhere) tries again: at least once.
            logger.debug("could not record a webhook attempt", metadata: ["error": "\(error)"])
        }
    }

    func failure(_ delivery: WebhookDelivery, status: Int?, error: String) -> WebhookAttemptOutcome {
        let now = clock.now()
        let age = now.milliseconds - delivery.createdAt.milliseconds
        guard let delay = WebhookRetryPolicy.delayMilliseconds(afterFailedAttempts: delivery.attempts + 1, age: age) else {
            return .failed(status: status, error: error)
        }
        return .retry(at: now.adding(milliseconds: delay), status: status, error: error)
    }

    /// Resolves once, checks, connects to that address; the status of the answer.
    func attempt(_ delivery: WebhookDelivery) async throws -> Int {
        guard let target = WebhookTarget(url: delivery.url) else { throw WebhookURLProblem.notHTTP }
        let address = try await guardrail.addressForDelivery(target)
        let body = try WebhookPayload.render(type: delivery.type, data: delivery.data, occurredAt: delivery.occurredAt)
        let id = WebhookSigning.messageId(eventId: delivery.eventId)
        let timestamp = clock.now().milliseconds / 1000
        let headers = [
            ("webhook-id", id),
            ("webhook-timestamp", "\(timestamp)"),
            ("webhook-signature", WebhookSigning.signature(secret: delivery.secret, id: id, timestamp: timestamp, body: body)),
        ]
        return try await client.post(to: target, at: address, headers: headers, body: body,
                                     timeout: .milliseconds(WebhookRetryPolicy.attemptTimeoutMilliseconds)).status
    }

    func expiryLoop() async {
        while !Task.isCancelled {
            do {
                while try await store.expireRunOutHolds(now: clock.now(), limit: options.expiryBatch) >= options.expiryBatch, !Task.isCancelled {}
            } catch {
                logger.debug("hold expiry sweep failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .milliseconds(options.expirySweepMilliseconds))
        }
    }

    func retentionLoop() async {
        while !Task.isCancelled {
            do {
                try await pruneFinishedEvents()
            } catch {
                logger.debug("webhook retention sweep failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .milliseconds(options.retentionSweepMilliseconds))
        }
    }

    /// One retention sweep: deletes finished events older than the retention, in batches, until a
    /// batch comes back short; returns how many. Every instance sweeps; the store makes that safe.
    @discardableResult
    public func pruneFinishedEvents() async throws -> Int {
        guard options.retentionMilliseconds > 0 else { return 0 }
        var total = 0
        while !Task.isCancelled {
            let before = clock.now().adding(milliseconds: -options.retentionMilliseconds)
            let pruned = try await store.pruneWebhookEvents(before: before, limit: options.retentionBatch)
            if pruned > 0 { Counter(label: "concertd_webhook_events_pruned_total").increment(by: pruned) }
            total += pruned
            if pruned < options.retentionBatch { break }
        }
        return total
    }

    func gaugeLoop() async {
        let backlog = Gauge(label: "concertd_webhook_backlog")
        let oldest = Gauge(label: "concertd_webhook_oldest_age_seconds")
        while !Task.isCancelled {
            if let state = try? await store.webhookBacklog() {
                backlog.record(state.undispatchedEvents + state.pendingDeliveries)
                let age = state.oldest.map { Double(clock.now().milliseconds - $0.milliseconds) / 1000 } ?? 0
                oldest.record(max(age, 0))
            }
            try? await Task.sleep(for: .seconds(5))
        }
    }
}
