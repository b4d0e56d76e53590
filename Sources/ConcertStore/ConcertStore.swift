import ConcertDomain

/// Concerts, schedules and the seat map.
public protocol CatalogStore: Sendable {
    func createConcert(_ new: NewConcert) async throws -> Concert
    /// Throws `DomainError.concertNotFound`.
    func createSchedule(_ new: NewSchedule) async throws -> Schedule
    func concert(id: Int64) async throws -> Concert?
    /// Concerts whose booking window is open at `now` and that have a schedule after `now`, by id.
    func reservableConcerts(now: Timestamp, after: Int64?, limit: Int) async throws -> ReservableConcertPage
    /// Whether the concert has a schedule starting after `now`.
    func hasFutureSchedule(concertId: Int64, now: Timestamp) async throws -> Bool
    /// Schedules starting after `now`, by start time, with the seats that can be held now.
    func futureSchedules(concertId: Int64, now: Timestamp) async throws -> [ScheduleAvailability]
    func schedule(id: Int64) async throws -> Schedule?
    /// Every seat of the schedule with its status at `now`; nil when there is no such schedule.
    func seatMap(scheduleId: Int64, now: Timestamp) async throws -> [Seat]?
    /// Seats of the concert's future schedules: in all, held at `now`, and sold (operators' view).
    func seatCounts(concertId: Int64, now: Timestamp) async throws -> SeatCounts
    /// Cancels a schedule for good, in one transaction: marks it cancelled, refunds every PAID
    /// payment of its seats (whatever the refund cutoff) and cancels every live hold. A schedule
    /// already cancelled answers 0 refunded and 0 released, so concurrent calls refund each
    /// seat once. Throws `scheduleNotFound`.
    ///
    /// Every read above leaves a cancelled schedule out (`schedule(id:)` and `seatMap` answer
    /// nil, lists and counts skip it), and holds and payments on it are refused.
    func cancelSchedule(id: Int64, now: Timestamp) async throws -> ScheduleCancellation
}

public struct SeatCounts: Sendable, Equatable {
    public var total: Int
    public var held: Int
    public var sold: Int
    public init(total: Int, held: Int, sold: Int) {
        self.total = total
        self.held = held
        self.sold = sold
    }
}

/// A page of reservable concerts, and until when it stays true if no one writes anything.
public struct ReservableConcertPage: Sendable, Equatable {
    public var concerts: [Concert]
    /// The first instant after `now` at which some concert may enter or leave the list
    /// (a window opens or closes, a last schedule starts). Nil when nothing is scheduled to change.
    public var changesAt: Timestamp?
    public init(concerts: [Concert], changesAt: Timestamp?) {
        self.concerts = concerts
        self.changesAt = changesAt
    }
}

public struct HoldRequest: Sendable, Equatable {
    public var userId: Int64
    public var scheduleId: Int64
    public var seatNumber: Int
    public var now: Timestamp
    public var rules: BookingRules
    public init(userId: Int64, scheduleId: Int64, seatNumber: Int, now: Timestamp, rules: BookingRules) {
        self.userId = userId
        self.scheduleId = scheduleId
        self.seatNumber = seatNumber
        self.now = now
        self.rules = rules
    }
}

/// Seat holds and their reservations.
public protocol ReservationStore: Sendable {
    /// Places a hold, atomically: the seat must be free at `now`, the user under the hold limit.
    /// Throws `scheduleNotFound`, `seatOutOfRange`, `scheduleNotReservable`, `seatUnavailable`,
    /// `holdLimitReached`.
    func hold(_ request: HoldRequest) async throws -> Reservation
    /// The user's reservations, newest first.
    func reservations(userId: Int64) async throws -> [Reservation]
    func reservation(id: Int64, userId: Int64) async throws -> Reservation?
    /// Cancels a live hold of the user and returns it as cancelled. Throws `reservationNotFound`,
    /// `reservationNotHeld`.
    @discardableResult
    func cancel(reservationId: Int64, userId: Int64, now: Timestamp) async throws -> Reservation
}

/// Points: balance, charges and the append-only history.
public protocol WalletStore: Sendable {
    func balance(userId: Int64) async throws -> Int64
    /// Adds `amount` and writes a CHARGE entry in one transaction; returns the new balance.
    /// Throws `invalidAmount`.
    func charge(userId: Int64, amount: Int64, now: Timestamp, rules: BookingRules,
                idempotency: IdempotentCompletion<Int64>?) async throws -> Int64
    /// Newest first.
    func history(userId: Int64) async throws -> [PointEntry]
}

public protocol PaymentStore: Sendable {
    /// In one transaction: deducts the price, confirms the reservation, writes the PAYMENT entry
    /// and the payment. Throws `reservationNotFound`, `reservationAlreadyPaid`,
    /// `reservationExpired`, `reservationNotHeld`, `insufficientPoints`.
    func pay(userId: Int64, reservationId: Int64, now: Timestamp,
             idempotency: IdempotentCompletion<PaymentReceipt>?) async throws -> PaymentReceipt
    func payment(id: Int64, userId: Int64) async throws -> Payment?
    /// In one transaction: gives the payment's points back (the charge cap does not apply), marks
    /// it REFUNDED, cancels its reservation (the seat is AVAILABLE again) and writes a REFUND
    /// entry. Throws `paymentNotFound` (also for another user's), `paymentAlreadyRefunded`,
    /// `refundNotAllowed` (see `RefundPolicy`).
    func refund(userId: Int64, paymentId: Int64, now: Timestamp, rules: BookingRules,
                idempotency: IdempotentCompletion<RefundReceipt>?) async throws -> RefundReceipt
}

/// A response kept for an Idempotency-Key.
public struct StoredResponse: Sendable, Equatable {
    public var status: Int
    public var body: [UInt8]
    public init(status: Int, body: [UInt8]) {
        self.status = status
        self.body = body
    }
}

public enum IdempotencyClaim: Sendable, Equatable {
    /// The key is new (or its earlier attempt was abandoned): go ahead.
    case proceed
    /// The same request already finished: answer this.
    case replay(StoredResponse)
    /// The same key is being used for a request that has not finished.
    case inUse
    /// The key was used with a different request.
    case reused
}

/// How a successful idempotent write records its answer in the same transaction as the write,
/// so that a crash between the two can never let a retry act twice.
///
/// `claimedAt` is the `now` of the claim this write belongs to. It fences a slow request whose
/// claim was taken over after its lease: its completion finds the row claimed at another time,
/// throws `DomainError.idempotencyKeyInUse`, and so rolls its own write back.
public struct IdempotentCompletion<Result: Sendable>: Sendable {
    public var userId: Int64
    public var key: String
    public var claimedAt: Timestamp
    public var render: @Sendable (Result) throws -> StoredResponse
    public init(userId: Int64, key: String, claimedAt: Timestamp, render: @escaping @Sendable (Result) throws -> StoredResponse) {
        self.userId = userId
        self.key = key
        self.claimedAt = claimedAt
        self.render = render
    }
}

public protocol IdempotencyStore: Sendable {
    /// Claims `key` for a request whose canonical form is `fingerprint`. Only successful answers are
    /// kept (written by the write itself through `IdempotentCompletion`); a request that fails
    /// changes nothing and releases its claim, so a corrected retry may act. A claim left
    /// unfinished for longer than `leaseMilliseconds` counts as abandoned; a finished one is kept
    /// for `retentionMilliseconds`.
    func claim(userId: Int64, key: String, fingerprint: String, now: Timestamp,
               leaseMilliseconds: Int64, retentionMilliseconds: Int64) async throws -> IdempotencyClaim
    /// Deletes the keys claimed before `cutoff` (past their retention); returns how many.
    @discardableResult
    func purgeIdempotencyKeys(claimedBefore cutoff: Timestamp) async throws -> Int

    /// Forgets the claim made at `claimedAt` whose request could not complete (so a retry may
    /// act). A claim that finished, or that another request took over, is left alone.
    func release(userId: Int64, key: String, claimedAt: Timestamp) async throws
}

/// A concert's stored line policy and its pre-queue's draw.
public struct StoredQueuePolicy: Sendable, Equatable {
    public var policy: LinePolicy
    public var draw: DrawRecord?
    public init(policy: LinePolicy, draw: DrawRecord?) {
        self.policy = policy
        self.draw = draw
    }
}

/// The pre-queue's draw as stored: the seed is secret until `drawnAt` is set.
public struct DrawRecord: Sendable, Equatable {
    public var seedHex: String
    public var commitment: String
    public var drawnAt: Timestamp?
    public var entrants: Int?
    public init(seedHex: String, commitment: String, drawnAt: Timestamp?, entrants: Int?) {
        self.seedHex = seedHex
        self.commitment = commitment
        self.drawnAt = drawnAt
        self.entrants = entrants
    }
}

/// Per-concert line policies (on-sale control), and the seat counts admission looks at.
public protocol QueuePolicyStore: Sendable {
    /// Nil when nobody changed the concert's policy (the settings' defaults apply).
    func queuePolicy(concertId: Int64) async throws -> StoredQueuePolicy?
    /// In one atomic statement: applies `change` to the stored policy (or to `defaults` when there
    /// is none), and when the result has a pre-queue (`queueOpensAt` < `bookingOpensAt`) and no
    /// seed is stored yet, stores `newSeedHex` and its `commitment` (never replaced afterwards).
    /// Two racing changes leave one after the other, never a mix of fields of one row.
    func changeQueuePolicy(concertId: Int64, change: LinePolicyChange, defaults: LinePolicy, bookingOpensAt: Timestamp,
                           newSeedHex: String, commitment: String) async throws -> StoredQueuePolicy
    /// Records that the draw happened (the first call only; later ones change nothing).
    func recordDraw(concertId: Int64, entrants: Int, at: Timestamp) async throws
    /// Seats of the concert's future, not-cancelled schedules at `now`: in all, AVAILABLE, SOLD.
    func availability(concertId: Int64, now: Timestamp) async throws -> Availability
    /// `reservableConcerts`, plus the concerts whose booking window opens after `now`, by id.
    func upcomingConcerts(now: Timestamp, after: Int64?, limit: Int) async throws -> ReservableConcertPage
}

/// Everything the service keeps in its database.
public protocol ConcertStore: CatalogStore, ReservationStore, WalletStore, PaymentStore, IdempotencyStore, WebhookStore,
                              QueuePolicyStore {
    /// Brings the schema up to date.
    func migrate() async throws
    /// Answers when the database does (readiness).
    func ping() async throws
    /// Whether the database holds no concert yet (dev mode fills demo data then).
    func isEmpty() async throws -> Bool
    /// How many rows break each of the service's invariants (`Invariant.all`); all zero when sound.
    func countInvariantBreaches() async throws -> [(invariant: Invariant, breaches: Int64)]
}

/// A promise the data must keep whatever the code does, with the SQL (the same on both engines)
/// that counts the rows breaking it. `concertd verify` and the tests check them.
public struct Invariant: Sendable, Equatable {
    public var name: String
    public var countingSQL: String

    public static let all: [Invariant] = [
        Invariant(name: "no seat has two live (HELD or CONFIRMED) reservations", countingSQL: """
            SELECT COUNT(*) FROM (SELECT schedule_id, seat_number FROM reservations
              WHERE status IN ('HELD', 'CONFIRMED') GROUP BY schedule_id, seat_number HAVING COUNT(*) > 1) doubled
            """),
        Invariant(name: "every CONFIRMED reservation has exactly one payment, PAID", countingSQL: """
            SELECT COUNT(*) FROM reservations r WHERE r.status = 'CONFIRMED'
              AND (SELECT COUNT(*) FROM payments p WHERE p.reservation_id = r.id AND p.status = 'PAID') <> 1
            """),
        Invariant(name: "every PAID payment belongs to a CONFIRMED reservation of its payer at its price", countingSQL: """
            SELECT COUNT(*) FROM payments p LEFT JOIN reservations r ON r.id = p.reservation_id
              WHERE r.id IS NULL OR r.user_id <> p.user_id OR r.price <> p.amount
                OR (p.status = 'PAID' AND r.status <> 'CONFIRMED')
            """),
        Invariant(name: "every REFUNDED payment has a CANCELLED reservation, a refund time and exactly one REFUND entry of its amount", countingSQL: """
            SELECT COUNT(*) FROM payments p JOIN reservations r ON r.id = p.reservation_id
              WHERE p.status = 'REFUNDED' AND (r.status <> 'CANCELLED' OR p.refunded_at IS NULL
                OR (SELECT COUNT(*) FROM point_entries e
                    WHERE e.payment_id = p.id AND e.type = 'REFUND' AND e.user_id = p.user_id AND e.amount = p.amount) <> 1)
            """),
        Invariant(name: "every REFUND entry gives back one REFUNDED payment", countingSQL: """
            SELECT COUNT(*) FROM point_entries e LEFT JOIN payments p ON p.id = e.payment_id
              WHERE e.type = 'REFUND' AND (p.id IS NULL OR p.status <> 'REFUNDED')
            """),
        Invariant(name: "no seat is SOLD (a CONFIRMED reservation) on a cancelled schedule", countingSQL: """
            SELECT COUNT(*) FROM reservations r JOIN schedules s ON s.id = r.schedule_id
              WHERE s.cancelled_at IS NOT NULL AND r.status = 'CONFIRMED'
            """),
        Invariant(name: "every balance equals the sum of its history", countingSQL: """
            SELECT COUNT(*) FROM users u
              WHERE u.balance <> COALESCE((SELECT SUM(e.amount) FROM point_entries e WHERE e.user_id = u.id), 0)
            """),
        Invariant(name: "no balance is negative", countingSQL: "SELECT COUNT(*) FROM users WHERE balance < 0"),
    ]
}

/// The database could not be reached or did not answer in time.
public struct StoreUnavailable: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
