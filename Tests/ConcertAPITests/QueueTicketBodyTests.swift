import ConcertDomain
import Foundation
import Testing
@testable import ConcertAPI

/// The ticket body is written by hand for speed; it must stay the bytes JSONEncoder gives.
@Suite("Queue ticket body")
struct QueueTicketBodyTests {
    static let tickets: [QueueTicket] = [
        QueueTicket(token: "1.327d03f577ace81359fe0bb8ad6315fc", userId: 7, concertId: 1, status: .waiting,
                    position: 9_799, estimatedWaitSeconds: 1_234, activeUntil: nil),
        QueueTicket(token: "42.ab", userId: 7, concertId: 42, status: .active, position: 0, estimatedWaitSeconds: 0,
                    activeUntil: Timestamp(milliseconds: 1_796_176_749_371), preQueue: false, soldOut: true),
        QueueTicket(token: "3.x", userId: 1, concertId: 3, status: .waiting, position: 12, estimatedWaitSeconds: 0,
                    activeUntil: Timestamp(milliseconds: -1_500), preQueue: true, soldOut: false),
        // Not a token the service makes, but whatever string a ticket holds is escaped alike.
        QueueTicket(token: "q\"uote\\back/slash é ✓ 🎫" + String((0..<0x20).map { Character(UnicodeScalar(UInt8($0))) }) + "\u{7F}",
                    userId: 9, concertId: Int64.max, status: .waiting, position: Int.max, estimatedWaitSeconds: -1,
                    activeUntil: nil),
    ]

    @Test(arguments: tickets)
    func theHandWrittenBytesAreJSONEncodersBytes(ticket: QueueTicket) throws {
        let body = QueueTicketBody(ticket: ticket)
        let expected = try JSONBody.encode(body)
        #expect(String(decoding: body.jsonBytes, as: UTF8.self) == String(decoding: expected, as: UTF8.self))
        #expect(body.jsonBytes == expected)
    }
}
