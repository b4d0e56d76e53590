import ConcertDomain
import ConcertStore
import Crypto
import Metrics
import SharedState
import Synchronization

/// Each concert's line as this instance sees it: the stored policy (or the settings' defaults),
/// the draw, and the seats its admission depends on. One read of each per concert at most every
/// 500 ms (single-flight: concurrent requests wait for the same read), so that a change made on
/// another instance holds here within a second and the seat count costs one cheap query per
/// concert per half second, not one per request. A change made here is seen here at once
/// (`invalidate`).
///
/// It is the waiting rooms' `QueuePolicySource`: every line operation gets the effective
/// `QueuePolicy` from here (`OnSaleRules.effectivePolicy`).
public final class LinePolicies: QueuePolicySource {
    /// What one read gives.
    struct Snapshot: Sendable {
        var concert: Concert
        var stored: StoredQueuePolicy?
        var line: LinePolicy
        var availability: Availability
        /// The draw happened (recorded in the database, or by this instance just now).
        var drawn: Bool
    }

    private struct Entry {
        var task: Task<Snapshot?, any Error>
        var readAt: Timestamp
        var readAtInstant: ContinuousClock.Instant
    }

    static let refreshMilliseconds: Int64 = 500

    private let store: any ConcertStore
    let settings: QueuePolicy
    private let clock: WallClock
    private let entries = Mutex<[Int64: Entry]>([:])
    /// Up to when each line's admissions have been added to the admissions counter.
    private let countedUpTo = Mutex<[Int64: Timestamp]>([:])
    /// Concerts whose draw this instance made or saw recorded.
    private let drawn = Mutex<Set<Int64>>([])
    let drawRule = Draw(sha256: { Array(SHA256.hash(data: $0)) })

    public init(store: any ConcertStore, settings: QueuePolicy, clock: WallClock) {
        self.store = store
        self.settings = settings
        self.clock = clock
    }

    /// The concert's line now; nil when there is no such concert (never cached).
    func snapshot(concertId: Int64) async throws -> Snapshot? {
        let now = clock.now()
        let instant = ContinuousClock.now
        let task: Task<Snapshot?, any Error> = entries.withLock { entries in
            if let entry = entries[concertId] {
                let age = now.milliseconds - entry.readAt.milliseconds
                if age >= 0, age < Self.refreshMilliseconds, instant - entry.readAtInstant < .milliseconds(Self.refreshMilliseconds) {
                    return entry.task
                }
            }
            let task = Task { try await self.read(concertId: concertId, now: now) }
            entries[concertId] = Entry(task: task, readAt: now, readAtInstant: instant)
            return task
        }
        do {
            let snapshot = try await task.value
            if snapshot == nil { forget(concertId, task: task) }
            return snapshot
        } catch {
            forget(concertId, task: task)
            throw error
        }
    }

    private func forget(_ concertId: Int64, task: Task<Snapshot?, any Error>) {
        entries.withLock { entries in
            if entries[concertId]?.task == task { entries[concertId] = nil }
        }
    }

    private func read(concertId: Int64, now: Timestamp) async throws -> Snapshot? {
        guard let concert = try await store.concert(id: concertId) else { return nil }
        let stored = try await store.queuePolicy(concertId: concertId)
        let availability = try await store.availability(concertId: concertId, now: now)
        let line = stored?.policy ?? LinePolicy.defaults(settings)
        let drawnHere = drawn.withLock { $0.contains(concertId) }
        return Snapshot(concert: concert, stored: stored, line: line, availability: availability,
                        drawn: drawnHere || stored?.draw?.drawnAt != nil)
    }

    /// The next read of the concert goes to the database (after a change made here).
    func invalidate(concertId: Int64) {
        _ = entries.withLock { $0.removeValue(forKey: concertId) }
    }

    public func policy(concertId: Int64, now: Timestamp) async throws -> QueuePolicy {
        guard let snapshot = try await snapshot(concertId: concertId) else { return settings }
        return effective(snapshot, now: now)
    }

    func effective(_ snapshot: Snapshot, now: Timestamp) -> QueuePolicy {
        OnSaleRules.effectivePolicy(line: snapshot.line, concert: snapshot.concert, availability: snapshot.availability,
                                    drawn: snapshot.drawn, now: now, idleSeconds: settings.idleMilliseconds / 1000)
    }

    /// Draws the concert's pre-queue when it is due and not drawn yet (idempotent across
    /// instances: the waiting room draws once, the database records once).
    func drawIfDue(_ snapshot: Snapshot, waitingRoom: any WaitingRoom, now: Timestamp) async throws {
        guard !snapshot.drawn, OnSaleRules.drawIsDue(line: snapshot.line, concert: snapshot.concert, now: now),
              let record = snapshot.stored?.draw, let seed = Draw.bytes(hex: record.seedHex) else { return }
        let rule = drawRule
        let entrants = try await waitingRoom.draw(concertId: snapshot.concert.id, now: now) { tokens in
            rule.order(seed: seed, tokens: tokens)
        }
        try await store.recordDraw(concertId: snapshot.concert.id, entrants: entrants, at: now)
        drawn.withLock { _ = $0.insert(snapshot.concert.id) }
        invalidate(concertId: snapshot.concert.id)
        Counter(label: "concertd_queue_draws_total").increment()
    }

    /// Every concert this instance has looked at lately whose draw is due: drawn now. Run by the
    /// sweeper, so the draw happens at opening even if nobody joins then.
    func drawDue(waitingRoom: any WaitingRoom, now: Timestamp) async throws {
        let concertIds = entries.withLock { Array($0.keys) }
        for concertId in concertIds {
            guard let snapshot = try await snapshot(concertId: concertId) else { continue }
            try await drawIfDue(snapshot, waitingRoom: waitingRoom, now: now)
        }
    }

    /// Per-concert gauges of the lines this instance knows (waiting, active, admitted in the last
    /// minute) and the counter of their admissions, for dashboards.
    func recordGauges(waitingRoom: any WaitingRoom, now: Timestamp) async {
        let concertIds = entries.withLock { Array($0.keys) }
        for concertId in concertIds {
            guard let counts = try? await waitingRoom.lineCounts(concertId: concertId, now: now) else { continue }
            let dimensions = [("concert", "\(concertId)")]
            Gauge(label: "concertd_queue_waiting", dimensions: dimensions).record(counts.waiting)
            Gauge(label: "concertd_queue_active", dimensions: dimensions).record(counts.active)
            Gauge(label: "concertd_queue_admitted_last_minute", dimensions: dimensions).record(counts.admittedLastMinute)
            // The line's admissions since the last look, the last minute's at the first look
            // (every instance counts the same line's admissions: take the max over instances,
            // not the sum).
            let floor = now.adding(milliseconds: -QueuePolicy.rateWindowMilliseconds)
            let after = countedUpTo.withLock { $0[concertId] }.map { max($0, floor) } ?? floor
            if let admissions = try? await waitingRoom.admissions(concertId: concertId, after: after, now: now) {
                countedUpTo.withLock { $0[concertId] = now }
                if admissions > 0 {
                    Counter(label: "concertd_queue_admissions_total", dimensions: dimensions).increment(by: admissions)
                }
            }
        }
    }

    /// A fresh secret seed (32 bytes from the system's generator) and its commitment.
    func newSeed() -> (hex: String, commitment: String) {
        var generator = SystemRandomNumberGenerator()
        let seed = Draw.makeSeed(using: &generator)
        return (Draw.hex(seed), drawRule.commitment(seed: seed))
    }
}
