import ConcertDomain
import ConcertStore
import Foundation
import Hummingbird
import Prometheus
import SharedState

/// Health, readiness, metrics and the OpenAPI document.
struct OperationsController {
    let store: any ConcertStore
    let waitingRoom: any WaitingRoom
    let registry: PrometheusCollectorRegistry

    func addRoutes(to routes: inout Routes) {
        routes.add(.get, "/healthz", health)
        routes.add(.get, "/readyz", ready)
        routes.add(.get, "/metrics", metrics)
        routes.add(.get, "/openapi.yaml", openAPI)
    }

    func health(_ request: Request, context: AppRequestContext) async throws -> Response {
        try JSONBody.response(["status": "ok"])
    }

    /// 200 when the database (and Redis, where configured) answer within 2 s each, else 503.
    func ready(_ request: Request, context: AppRequestContext) async throws -> Response {
        let store = store, waitingRoom = waitingRoom
        let checks: [(String, @Sendable () async throws -> Void)] = [
            ("database", { try await store.ping() }),
            ("waitingRoom", { try await waitingRoom.ping() }),
        ]
        var failed: [String] = []
        for (name, check) in checks {
            do {
                try await withDeadline(seconds: 2) { try await check() }
            } catch {
                failed.append(name)
            }
        }
        let ready = failed.isEmpty
        if !ready {
            return Problem(api: .serviceUnavailable("not ready: \(failed.joined(separator: ", ")) unavailable"))
                .response(requestId: context.requestId)
        }
        return try JSONBody.response(["status": "ready"])
    }

    func metrics(_ request: Request, context: AppRequestContext) async throws -> Response {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16 * 1024)
        registry.emit(into: &buffer)
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
    }

    func openAPI(_ request: Request, context: AppRequestContext) async throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/yaml"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: OpenAPIDocument.bytes)))
    }
}

enum OpenAPIDocument {
    static let bytes: [UInt8] = {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "yaml"),
              let data = try? Data(contentsOf: url) else { return Array("openapi: 3.1.0\n".utf8) }
        return [UInt8](data)
    }()
}
