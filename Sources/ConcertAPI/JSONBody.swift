import ConcertDomain
import Foundation
import Hummingbird
import NIOCore

/// Reading request bodies and writing JSON responses, with the contract's rules: at most
/// 64 KiB (413), unparsable JSON, wrong types and missing fields are 400.
enum JSONBody {
    static let maxBytes = 64 * 1024

    static func decode<T: Decodable>(_ type: T.Type, from request: Request) async throws -> T {
        try await decode(type, from: request, orIfEmpty: nil)
    }

    /// For an endpoint whose body is optional: no body at all reads as `empty`.
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, orIfEmpty empty: T?) async throws -> T {
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > maxBytes {
            throw APIError.payloadTooLarge
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maxBytes)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError.payloadTooLarge
        } catch is NIOTooManyBytesError {
            // A chunked body (no Content-Length) that grows past the limit while being read.
            throw APIError.payloadTooLarge
        }
        guard buffer.readableBytes <= maxBytes else { throw APIError.payloadTooLarge }
        guard buffer.readableBytes > 0 else {
            if let empty { return empty }
            throw APIError.malformedRequest("a JSON body is required")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer: buffer))
        } catch let error as DomainError {
            throw error
        } catch let DecodingError.keyNotFound(key, _) {
            throw APIError.malformedRequest("missing field '\(key.stringValue)'")
        } catch let DecodingError.typeMismatch(_, context) {
            throw APIError.malformedRequest("wrong type for '\(path(context))'")
        } catch let DecodingError.valueNotFound(_, context) {
            throw APIError.malformedRequest("'\(path(context))' must not be null")
        } catch let DecodingError.dataCorrupted(context) {
            if context.codingPath.isEmpty { throw APIError.malformedRequest("the body is not valid JSON") }
            throw APIError.malformedRequest("invalid value for '\(path(context))'")
        } catch {
            throw APIError.malformedRequest("the body is not valid JSON")
        }
    }

    private static func path(_ context: DecodingError.Context) -> String {
        context.codingPath.map(\.stringValue).joined(separator: ".")
    }

    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        try response(bytes: encode(value), status: status)
    }

    /// Keys sorted, so that the same value always gives the same bytes (replays compare equal).
    static func encode(_ value: some Encodable) throws -> [UInt8] {
        [UInt8](try encoder.encode(value))
    }

    /// One for every response (JSONEncoder is Sendable: each `encode` reads the options at its
    /// start and keeps no state between calls); a new one per response was measurable.
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    static func response(bytes: [UInt8], status: HTTPResponse.Status) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

/// Path and query parameters.
extension Request {
    /// An id from the path; anything that is not a positive 64-bit integer names nothing, so the
    /// caller answers with its own "not found".
    func pathId(_ name: String, context: some RequestContext, orElse notFound: DomainError) throws -> Int64 {
        guard let text = context.parameters.get(name), let id = Int64(text), id > 0 else { throw notFound }
        return id
    }

    /// An optional integer query parameter: 400 when it is not an integer, 422 out of range.
    func queryInteger(_ name: String, default value: Int64, range: ClosedRange<Int64>) throws(APIError) -> Int64 {
        guard let text = uri.queryParameters[name[...]] else { return value }
        guard let number = Int64(String(text)) else { throw .malformedRequest("'\(name)' must be an integer") }
        guard range.contains(number) else {
            throw .validationFailed("'\(name)' must be between \(range.lowerBound) and \(range.upperBound)")
        }
        return number
    }
}

/// Times in and out as RFC 3339 strings.
struct WireTime: Codable, Sendable {
    var timestamp: Timestamp
    init(_ timestamp: Timestamp) { self.timestamp = timestamp }

    init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let timestamp = RFC3339.parse(text) else {
            throw DomainError.validation("'\(decoder.codingPath.map(\.stringValue).joined(separator: "."))' must be an RFC 3339 date-time such as 2026-12-24T19:00:00Z")
        }
        self.timestamp = timestamp
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(RFC3339.format(timestamp))
    }
}
