import ConcertDomain
import ConcertTestSupport
import Foundation
import Testing

/// Many requests released together against a real SQLite file (WAL, a pool of connections).
@Suite("Races through HTTP on SQLite")
struct RaceTests {
    @Test(arguments: TestBackend.races) func twoHundredHoldsOnOneSeatMakeExactlyOneReservation(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert()
            var tokens: [Int64: String] = [:]
            for user in Int64(100)..<300 { tokens[user] = try await api.activeToken(concert.concertId, user: user) }
            let gate = StartGate()
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for (user, token) in tokens {
                    group.addTask {
                        await gate.wait()
                        return try await api.hold(concert.scheduleId, seat: 1, user: user, token: token).status
                    }
                }
                await gate.open(whenArrived: tokens.count)
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 201 }.count == 1)
            #expect(statuses.filter { $0 == 409 }.count == 199)
        }
    }

    @Test(arguments: TestBackend.races) func oneHundredConcurrentChargesAllApply(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let gate = StartGate()
            try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 1...100 {
                    group.addTask {
                        await gate.wait()
                        return try await api.charge(Int64(i), user: 5).status
                    }
                }
                await gate.open(whenArrived: 100)
                for try await status in group { #expect(status == 200) }
            }
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 5050)
            let entries = try await api.call(.get, "/v1/points/history", user: 5).array("entries")
            #expect(entries.count == 100)
            #expect(entries.compactMap { $0["amount"] as? Int }.reduce(0, +) == 5050)
        }
    }

    @Test(arguments: TestBackend.races) func concurrentPaymentsOfOneReservationChargeOnce(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert(price: 1000)
            let token = try await api.activeToken(concert.concertId, user: 5)
            let hold = try await api.hold(concert.scheduleId, seat: 1, user: 5, token: token)
            _ = try await api.charge(10_000, user: 5)
            let gate = StartGate()
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        await gate.wait()
                        return try await api.pay(hold.int("id")!, user: 5, token: token).status
                    }
                }
                await gate.open(whenArrived: 20)
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 201 }.count == 1)
            #expect(statuses.allSatisfy { [201, 409, 401].contains($0) }, "\(statuses)")
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 9000)
        }
    }

    @Test(arguments: TestBackend.races) func oneUserRacingHoldsGetsOnlyTheLimit(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.rules.maxHoldsPerUser = 4 }) { api in
            let concert = try await api.openConcert()
            let token = try await api.activeToken(concert.concertId, user: 5)
            let gate = StartGate()
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for seat in 1...20 {
                    group.addTask {
                        await gate.wait()
                        return try await api.hold(concert.scheduleId, seat: seat, user: 5, token: token).status
                    }
                }
                await gate.open(whenArrived: 20)
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 201 }.count == 4)
        }
    }
}

