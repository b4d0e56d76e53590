import ConcertDomain
import ConcertStore
import Foundation
import Hummingbird
import SharedState

/// An RFC 9457 problem document, the body of every error response.
struct Problem: Encodable, Sendable {
    var type: String
    var title: String
    var status: Int
    var detail: String
    var code: String
    var requestId: String?
    /// Seconds before a retry makes sense (429, 503); sent as the `Retry-After` header too.
    var retryAfter: Int?
    /// Methods the route does answer (405); sent as the `Allow` header too.
    var allowed: [String]?

    init(status: HTTPResponse.Status, code: String, title: String, detail: String) {
        self.type = "urn:concertd:problem:" + code.lowercased().replacingOccurrences(of: "_", with: "-")
        self.title = title
        self.status = status.code
        self.detail = detail
        self.code = code
    }

    private enum CodingKeys: String, CodingKey { case type, title, status, detail, code, requestId }
}

/// The one place where errors become HTTP answers.
extension Problem {
    init(_ error: any Error) {
        switch error {
        case let error as DomainError: self.init(domain: error)
        case let error as APIError: self.init(api: error)
        case let error as StoreUnavailable:
            self.init(api: .serviceUnavailable("the database cannot be reached: \(error.description)"))
        case let error as SharedStateUnavailable:
            self.init(api: .serviceUnavailable("the waiting room store cannot be reached: \(error.description)"))
        case let error as HTTPError:
            switch error.status {
            case .contentTooLarge: self.init(api: .payloadTooLarge)
            case .notFound: self.init(api: .routeNotFound)
            case .methodNotAllowed: self.init(api: .methodNotAllowed(allowed: []))
            case .unauthorized: self.init(api: .unauthenticated(error.body ?? "authentication required"))
            case .badRequest: self.init(api: .malformedRequest(error.body ?? "the request could not be read"))
            case .serviceUnavailable: self.init(api: .serviceUnavailable(error.body ?? "try again shortly"))
            default:
                if (400..<500).contains(error.status.code) {
                    self.init(status: error.status, code: "MALFORMED_REQUEST", title: error.status.reasonPhrase,
                              detail: error.body ?? error.status.reasonPhrase)
                } else {
                    self.init(api: .internalError)
                }
            }
        default: self.init(api: .internalError)
        }
    }

    init(domain error: DomainError) {
        switch error {
        case .validation(let detail):
            self.init(status: .unprocessableContent, code: "VALIDATION_FAILED", title: "Validation failed", detail: detail)
        case .concertNotFound:
            self.init(status: .notFound, code: "CONCERT_NOT_FOUND", title: "Concert not found", detail: "There is no concert with this id.")
        case .concertNotReservable:
            self.init(status: .conflict, code: "CONCERT_NOT_RESERVABLE", title: "Concert not reservable",
                      detail: "The concert's booking window is not open.")
        case .concertSoldOut:
            self.init(status: .conflict, code: "CONCERT_SOLD_OUT", title: "Concert sold out",
                      detail: "Every seat of the concert's future schedules is sold.")
        case .drawNotFound:
            self.init(status: .notFound, code: "DRAW_NOT_FOUND", title: "Draw not found", detail: "The concert has no pre-queue, so no draw.")
        case .scheduleNotFound:
            self.init(status: .notFound, code: "SCHEDULE_NOT_FOUND", title: "Schedule not found", detail: "There is no schedule with this id.")
        case .scheduleNotReservable:
            self.init(status: .conflict, code: "SCHEDULE_NOT_RESERVABLE", title: "Schedule not reservable",
                      detail: "The schedule has started or the concert's booking window is closed.")
        case .seatOutOfRange(let seat, let total):
            self.init(status: .unprocessableContent, code: "VALIDATION_FAILED", title: "Validation failed",
                      detail: "seatNumber \(seat) is outside 1...\(total) for this schedule.")
        case .seatUnavailable:
            self.init(status: .conflict, code: "SEAT_UNAVAILABLE", title: "Seat unavailable", detail: "The seat is already held or sold.")
        case .holdLimitReached(let limit):
            self.init(status: .conflict, code: "HOLD_LIMIT_REACHED", title: "Hold limit reached",
                      detail: "You already hold \(limit) seats; pay for or cancel one first.")
        case .reservationNotFound:
            self.init(status: .notFound, code: "RESERVATION_NOT_FOUND", title: "Reservation not found",
                      detail: "You have no reservation with this id.")
        case .reservationNotHeld:
            self.init(status: .conflict, code: "RESERVATION_NOT_HELD", title: "Reservation not held",
                      detail: "Only a reservation whose hold is live can be cancelled or paid.")
        case .reservationExpired:
            self.init(status: .gone, code: "RESERVATION_EXPIRED", title: "Reservation expired",
                      detail: "The hold ran out before payment; the seat is free again.")
        case .reservationAlreadyPaid:
            self.init(status: .conflict, code: "RESERVATION_ALREADY_PAID", title: "Reservation already paid",
                      detail: "This reservation is already paid.")
        case .insufficientPoints(let balance, let price):
            self.init(status: .init(code: 402, reasonPhrase: "Payment Required"), code: "INSUFFICIENT_POINTS", title: "Insufficient points",
                      detail: "The price is \(price) points and the balance is \(balance).")
        case .invalidAmount(let detail):
            self.init(status: .unprocessableContent, code: "INVALID_AMOUNT", title: "Invalid amount", detail: detail)
        case .paymentNotFound:
            self.init(status: .notFound, code: "PAYMENT_NOT_FOUND", title: "Payment not found", detail: "You have no payment with this id.")
        case .refundNotAllowed:
            self.init(status: .conflict, code: "REFUND_NOT_ALLOWED", title: "Refund not allowed",
                      detail: "Refunds close CONCERT_REFUND_CUTOFF_SECONDS before the schedule starts.")
        case .paymentAlreadyRefunded:
            self.init(status: .conflict, code: "PAYMENT_ALREADY_REFUNDED", title: "Payment already refunded",
                      detail: "This payment has already been refunded.")
        case .webhookNotFound:
            self.init(status: .notFound, code: "WEBHOOK_NOT_FOUND", title: "Webhook not found", detail: "There is no webhook with this id.")
        case .queueTokenMissing:
            self.init(status: .unauthorized, code: "QUEUE_TOKEN_MISSING", title: "Queue token missing",
                      detail: "This endpoint needs an ACTIVE waiting-room token in the Queue-Token header.")
        case .queueTokenInvalid:
            self.init(status: .unauthorized, code: "QUEUE_TOKEN_INVALID", title: "Queue token invalid",
                      detail: "The Queue-Token is unknown, expired, another user's, or for another concert.")
        case .queueTokenNotActive:
            self.init(status: .forbidden, code: "QUEUE_TOKEN_NOT_ACTIVE", title: "Queue token not active",
                      detail: "The token is still WAITING; poll it until it is ACTIVE.")
        case .idempotencyKeyReused:
            self.init(status: .unprocessableContent, code: "IDEMPOTENCY_KEY_REUSED", title: "Idempotency key reused",
                      detail: "This Idempotency-Key was used with a different request.")
        case .idempotencyKeyInUse:
            self.init(status: .conflict, code: "IDEMPOTENCY_KEY_IN_USE", title: "Idempotency key in use",
                      detail: "A request with this Idempotency-Key is still running.")
        }
    }

    init(api error: APIError) {
        switch error {
        case .malformedRequest(let detail):
            self.init(status: .badRequest, code: "MALFORMED_REQUEST", title: "Malformed request", detail: detail)
        case .validationFailed(let detail):
            self.init(status: .unprocessableContent, code: "VALIDATION_FAILED", title: "Validation failed", detail: detail)
        case .payloadTooLarge:
            self.init(status: .contentTooLarge, code: "PAYLOAD_TOO_LARGE", title: "Payload too large",
                      detail: "The request body is over \(JSONBody.maxBytes) bytes.")
        case .headersTooLarge(let limit):
            // Still MALFORMED_REQUEST: the contract's code for a request that cannot be read.
            self.init(status: .init(code: 431, reasonPhrase: "Request Header Fields Too Large"), code: "MALFORMED_REQUEST",
                      title: "Request header fields too large", detail: "The request line and headers are over \(limit) bytes.")
        case .requestTimeout(let seconds):
            self.init(status: .init(code: 408, reasonPhrase: "Request Timeout"), code: "MALFORMED_REQUEST", title: "Request timeout",
                      detail: "The request was not received completely within \(seconds) s.")
        case .unauthenticated(let detail):
            self.init(status: .unauthorized, code: "UNAUTHENTICATED", title: "Unauthenticated",
                      detail: "A valid bearer token is required (\(detail)).")
        case .forbidden:
            self.init(status: .forbidden, code: "FORBIDDEN", title: "Forbidden", detail: "This endpoint needs an admin token.")
        case .routeNotFound:
            self.init(status: .notFound, code: "NOT_FOUND", title: "Not found", detail: "No such endpoint.")
        case .methodNotAllowed(let allowed):
            self.init(status: .methodNotAllowed, code: "METHOD_NOT_ALLOWED", title: "Method not allowed",
                      detail: allowed.isEmpty ? "This endpoint does not answer this method."
                          : "This endpoint answers \(allowed.joined(separator: ", ")).")
            self.allowed = allowed
        case .rateLimited(let seconds):
            self.init(status: .tooManyRequests, code: "RATE_LIMITED", title: "Too many requests",
                      detail: "Slow down; retry after \(seconds) s.")
            self.retryAfter = seconds
        case .serviceUnavailable(let detail):
            self.init(status: .serviceUnavailable, code: "SERVICE_UNAVAILABLE", title: "Service unavailable", detail: detail)
            self.retryAfter = 1
        case .internalError:
            self.init(status: .internalServerError, code: "INTERNAL", title: "Internal error",
                      detail: "Something went wrong on our side; it has been logged.")
        }
    }

    func response(requestId: String) -> Response {
        let (headers, body) = encoded(requestId: requestId)
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// The headers and JSON body of this problem's response (also used below the router, where
    /// connection-level errors are answered).
    func encoded(requestId: String) -> (headers: HTTPFields, body: Data) {
        var problem = self
        problem.requestId = requestId.isEmpty ? nil : requestId
        var headers = HTTPFields()
        headers[.contentType] = "application/problem+json"
        if !requestId.isEmpty { headers[.requestId] = requestId }
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        if let allowed, !allowed.isEmpty { headers[.allow] = allowed.joined(separator: ", ") }
        let body = (try? JSONEncoder().encode(problem)) ?? Data("{\"code\":\"INTERNAL\"}".utf8)
        return (headers, body)
    }
}
