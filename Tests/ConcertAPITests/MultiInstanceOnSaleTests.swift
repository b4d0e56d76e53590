import ConcertAPI
import ConcertTestSupport
import Foundation
import Testing

extension MultiInstanceTests {
    /// A policy change through one instance holds on the other within a second, and the cap is
    /// never exceeded across the two while it is lowered, a line is paused and resumed.
    @Test(.enabled(if: serversAreConfigured), arguments: [true, false])
    func aPolicyChangeOnOneInstanceHoldsOnTheOtherWithinASecond(redis: Bool) async throws {
        let cluster = try await Cluster.start(count: 2, redis: redis, environment: ["CONCERT_QUEUE_MAX_ACTIVE": "3"])
        do {
            let servers = cluster.instances
            let admin = try await JWTTestSigner.token(user: 1, admin: true)
            let (concertId, _) = try await servers[0].api.openConcert(seats: 50, price: 100)
            var joined: [(jwt: String, queue: String, active: Bool)] = []
            for user in 10..<20 {
                let jwt = try await JWTTestSigner.token(user: Int64(user))
                let reply = try await servers[user % 2].api.call(.post, "/v1/concerts/\(concertId)/queue/tokens", jwt: jwt)
                #expect(reply.status == 201)
                joined.append((jwt, reply.json["token"] as! String, reply.json["status"] as? String == "ACTIVE"))
            }
            #expect(joined.filter(\.active).count == 3)
            let policyPath = "/v1/admin/concerts/\(concertId)/queue"

            func activeEverywhere() async throws -> [Int] {
                var counts: [Int] = []
                for server in servers { counts.append(try await server.api.call(.get, policyPath, jwt: admin).json["active"] as? Int ?? -1) }
                return counts
            }

            // Lower the cap through instance 0; instance 1 sees it within a second.
            let changed = try await servers[0].api.call(.patch, policyPath, jwt: admin, json: #"{"maxActive": 1}"#)
            #expect(changed.status == 200 && changed.json["maxActive"] as? Int == 1)
            let start = ContinuousClock.now
            while try await servers[1].api.call(.get, policyPath, jwt: admin).json["maxActive"] as? Int != 1 {
                #expect(ContinuousClock.now - start < .seconds(1), "instance 1 still has the old cap")
                if ContinuousClock.now - start > .seconds(2) { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(ContinuousClock.now - start < .seconds(1))
            // Nobody's token ended; ending two of three admits nobody.
            #expect(try await activeEverywhere() == [3, 3])
            let active = joined.filter(\.active)
            for (index, holder) in active.prefix(2).enumerated() {
                let left = try await servers[index % 2].api.call(.delete, "/v1/queue/tokens/current", jwt: holder.jwt, queueToken: holder.queue)
                #expect(left.status == 204)
            }
            try await Task.sleep(for: .milliseconds(1200))
            #expect(try await activeEverywhere() == [1, 1])

            // Paused through instance 1: the last ACTIVE leaves and nobody is admitted on either.
            let paused = try await servers[1].api.call(.patch, policyPath, jwt: admin, json: #"{"paused": true}"#)
            #expect(paused.json["paused"] as? Bool == true)
            try await Task.sleep(for: .milliseconds(1100))
            let last = active[2]
            #expect(try await servers[0].api.call(.delete, "/v1/queue/tokens/current", jwt: last.jwt, queueToken: last.queue).status == 204)
            for _ in 0..<10 {
                #expect(try await activeEverywhere() == [0, 0])
                try await Task.sleep(for: .milliseconds(120))
            }
            // Resumed through instance 0: the head of the line, and only one, within a second.
            _ = try await servers[0].api.call(.patch, policyPath, jwt: admin, json: #"{"paused": false}"#)
            try await Task.sleep(for: .milliseconds(1100))
            for _ in 0..<5 {
                #expect(try await activeEverywhere() == [1, 1])
                try await Task.sleep(for: .milliseconds(100))
            }
            let head = joined.filter { !$0.active }[0]
            let headNow = try await servers[1].api.call(.get, "/v1/queue/tokens/current", jwt: head.jwt, queueToken: head.queue)
            #expect(headNow.json["status"] as? String == "ACTIVE")
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }
}
