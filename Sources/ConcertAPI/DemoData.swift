import ConcertDomain
import ConcertStore

/// A few concerts whose booking is open, so the very first dev run has something to book.
enum DemoData {
    static func seed(into store: any ConcertStore, now exact: Timestamp) async throws {
        let now = Timestamp(seconds: exact.milliseconds / 1000)
        let day: Int64 = 86_400
        let concerts: [(String, String, String, [Int64], Int64)] = [
            ("Winter Lights", "Aurora Quartet", "Seoul Arts Center", [7, 8], 50_000),
            ("Midnight City Tour", "The Neon Foxes", "Olympic Hall", [14], 88_000),
            ("Symphony No. 9", "Seoul Philharmonic", "Lotte Concert Hall", [21, 22, 23], 120_000),
        ]
        for (title, artist, venue, days, price) in concerts {
            let concert = try await store.createConcert(NewConcert(
                title: title, artist: artist, venue: venue,
                bookingOpensAt: now.adding(seconds: -3600), bookingClosesAt: now.adding(seconds: 60 * day)))
            for offset in days {
                _ = try await store.createSchedule(NewSchedule(concertId: concert.id, startsAt: now.adding(seconds: offset * day),
                                                               price: price))
            }
        }
    }
}
