import ConcertDomain
import ConcertStore
import Hummingbird
import SharedState

/// On-sale control: an operator reads and changes a concert's line policy; anyone checks the
/// pre-queue's draw.
struct OnSaleController {
    let store: any ConcertStore
    let waitingRoom: any WaitingRoom
    let policies: LinePolicies
    let cache: any ResponseCache
    let clock: WallClock

    func addRoutes(to routes: inout Routes) {
        routes.add(.get, "/v1/admin/concerts/{concertId}/queue", show)
        routes.add(.patch, "/v1/admin/concerts/{concertId}/queue", change)
        routes.add(.get, "/v1/concerts/{concertId}/queue/draw", draw)
    }

    func show(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let concertId = try request.pathId("concertId", context: context, orElse: .concertNotFound)
        guard let snapshot = try await policies.snapshot(concertId: concertId) else { throw DomainError.concertNotFound }
        return try JSONBody.response(try await body(snapshot))
    }

    func change(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let concertId = try request.pathId("concertId", context: context, orElse: .concertNotFound)
        let change = try await JSONBody.decode(QueuePolicyPatchBody.self, from: request).change
        guard let concert = try await store.concert(id: concertId) else { throw DomainError.concertNotFound }
        try change.validate(for: concert)
        if change != LinePolicyChange() {
            let seed = policies.newSeed()
            _ = try await store.changeQueuePolicy(concertId: concertId, change: change, defaults: LinePolicy.defaults(policies.settings),
                                                  bookingOpensAt: concert.bookingOpensAt, newSeedHex: seed.hex,
                                                  commitment: seed.commitment)
            policies.invalidate(concertId: concertId)
            if change.queueOpensAt != nil {
                // The concert's `queueOpensAt` shows in the lists.
                await CacheAside(cache: cache, logger: context.logger).invalidate(CacheAside.concertList)
            }
        }
        guard let snapshot = try await policies.snapshot(concertId: concertId) else { throw DomainError.concertNotFound }
        return try JSONBody.response(try await body(snapshot))
    }

    /// Public. The seed and the entrants stay null until the draw has happened (a read once it is
    /// due makes it, should no sweeper have got there yet).
    func draw(_ request: Request, context: AppRequestContext) async throws -> Response {
        let concertId = try request.pathId("concertId", context: context, orElse: .concertNotFound)
        guard let snapshot = try await policies.snapshot(concertId: concertId) else { throw DomainError.concertNotFound }
        try await policies.drawIfDue(snapshot, waitingRoom: waitingRoom, now: clock.now())
        guard let record = try await store.queuePolicy(concertId: concertId)?.draw else { throw DomainError.drawNotFound }
        let drawn = record.drawnAt != nil
        return try JSONBody.response(QueueDrawBody(concertId: concertId, commitment: record.commitment,
                                                   seed: drawn ? record.seedHex : nil, entrants: drawn ? record.entrants : nil))
    }

    private func body(_ snapshot: LinePolicies.Snapshot) async throws -> QueuePolicyBody {
        let now = clock.now()
        let concertId = snapshot.concert.id
        let counts = try await waitingRoom.lineCounts(concertId: concertId, now: now)
        return QueuePolicyBody(concertId: concertId, policy: snapshot.line, waiting: counts.waiting, active: counts.active,
                               admittedLastMinute: counts.admittedLastMinute, soldOut: snapshot.availability.soldOut)
    }
}

/// A `PATCH` of a line policy: any subset of the writable fields. A wrong JSON type is 400; an
/// unknown or read-only field 422 (`DomainError.validation`), after the types were read.
struct QueuePolicyPatchBody: Decodable {
    var change = LinePolicyChange()

    static let readOnly: Set<String> = ["concertId", "waiting", "active", "admittedLastMinute", "soldOut"]

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        var unknown: [String] = []
        for key in container.allKeys {
            switch key.stringValue {
            case "maxActive": change.maxActive = try container.decode(Int.self, forKey: key)
            case "activeSeconds": change.activeSeconds = try container.decode(Int.self, forKey: key)
            case "paused": change.paused = try container.decode(Bool.self, forKey: key)
            case "admitPerMinute":
                if try container.decodeNil(forKey: key) {
                    change.admitPerMinute = .some(nil)
                } else {
                    change.admitPerMinute = .some(try container.decode(Int.self, forKey: key))
                }
            case "queueOpensAt":
                if try container.decodeNil(forKey: key) {
                    change.queueOpensAt = .some(nil)
                } else {
                    change.queueOpensAt = .some(try container.decode(WireTime.self, forKey: key).timestamp)
                }
            default: unknown.append(key.stringValue)
            }
        }
        if let field = unknown.sorted().first {
            throw DomainError.validation(Self.readOnly.contains(field) ? "'\(field)' is read-only" : "unknown field '\(field)'")
        }
    }
}
