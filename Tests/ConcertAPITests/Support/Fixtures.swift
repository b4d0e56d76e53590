import ConcertAPI
import ConcertServer
import Foundation
import Testing

// The fixtures every HTTP test shares: the JWT secret, tokens, and an open concert with one
// schedule, whether the service runs in process (`API`) or as `concertd` processes.

let testSecret = "test-secret-0123456789-abcdefghij"

/// A JWT for `user` signed with `testSecret`.
func testToken(user: Int64, admin: Bool = false, ttl: Int64 = 600) async throws -> String {
    try await ConcertService.token(secret: testSecret, userId: user, admin: admin, ttlSeconds: ttl)
}

enum Fixture {
    /// The body of `POST /v1/admin/concerts` for a concert booking from `opensAt` to `closesAt`.
    static func concert(opensAt: String, closesAt: String) -> String {
        #"{"title": "Test", "artist": "Band", "venue": "Hall", "bookingOpensAt": "\#(opensAt)", "bookingClosesAt": "\#(closesAt)"}"#
    }

    /// The body of `POST /v1/admin/concerts/{id}/schedules`.
    static func schedule(startsAt: String, price: Int64, seats: Int) -> String {
        #"{"startsAt": "\#(startsAt)", "price": \#(price), "seatCount": \#(seats)}"#
    }
}

/// Creates, through the server at `base`, a concert open for booking until 2099 with one schedule
/// in 2098.
func createOpenConcert(through base: URL, seats: Int, price: Int, client: HTTPClient = HTTPClient()) async throws -> (concertId: Int, scheduleId: Int) {
    let admin = try await testToken(user: 1, admin: true)
    let concert = await client.send(base, "POST", "v1/admin/concerts", jwt: admin,
                                    body: Fixture.concert(opensAt: "2020-01-01T00:00:00Z", closesAt: "2099-01-01T00:00:00Z"))
    let concertId = try #require(concert.int("id"), "\(concert)")
    let schedule = await client.send(base, "POST", "v1/admin/concerts/\(concertId)/schedules", jwt: admin,
                                     body: Fixture.schedule(startsAt: "2098-01-01T00:00:00Z", price: Int64(price), seats: seats))
    return (concertId, try #require(schedule.int("id"), "\(schedule)"))
}
