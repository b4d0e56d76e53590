import ConcertDomain
import Metrics

/// Counters an operator watches during an on-sale, next to Hummingbird's per-route request
/// counts and latency histograms: how holds and payments end, by outcome.
enum BusinessMetrics {
    static func hold(_ outcome: String) { Counter(label: "concertd_holds_total", dimensions: [("outcome", outcome)]).increment() }
    static func payment(_ outcome: String) { Counter(label: "concertd_payments_total", dimensions: [("outcome", outcome)]).increment() }
    static func charge(_ outcome: String) { Counter(label: "concertd_charges_total", dimensions: [("outcome", outcome)]).increment() }
    static func refund(_ outcome: String) { Counter(label: "concertd_refunds_total", dimensions: [("outcome", outcome)]).increment() }

    /// The outcome label of a failed operation: the contract code for domain failures.
    static func outcome(of error: any Error) -> String {
        switch error {
        case let error as DomainError: Problem(domain: error).code.lowercased()
        default: "error"
        }
    }

    static func recording<T>(_ record: (String) -> Void, _ body: () async throws -> T) async throws -> T {
        do {
            let value = try await body()
            record("ok")
            return value
        } catch {
            record(outcome(of: error))
            throw error
        }
    }
}
