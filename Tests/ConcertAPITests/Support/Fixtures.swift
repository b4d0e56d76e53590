import Foundation

// The fixtures every HTTP test shares, whether the service runs in process (`withAPI`) or as
// `concertd` processes (`ConcertdProcess.api`): the JWT secret and the bodies that create a
// concert and a schedule. Tokens come from `JWTTestSigner`; an open concert from `API.openConcert`.

let testSecret = "test-secret-0123456789-abcdefghij"

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
