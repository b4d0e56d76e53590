import Foundation
import Hummingbird

/// The web front end (static files kept as resources of the executable) and, in `--dev` only,
/// a sign-in helper that issues tokens.
struct WebController {
    /// Signs the `--dev` sign-in helper's tokens; nil (the helper is not served) without `--dev`.
    let devTokens: Authenticator?

    func addRoutes(to routes: inout Routes) {
        routes.add(.get, "/", index)
        routes.add(.get, "/assets/{name}", asset)
    }

    /// `/dev/token`, registered only with `--dev`.
    func addDevRoutes(to routes: inout Routes) {
        guard devTokens != nil else { return }
        routes.add(.post, "/dev/token", devToken)
    }

    /// Files under Resources/web, read once.
    static let files: [String: (bytes: [UInt8], contentType: String)] = {
        guard let directory = Bundle.module.url(forResource: "web", withExtension: nil),
              let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else { return [:] }
        var files: [String: (bytes: [UInt8], contentType: String)] = [:]
        for name in names {
            guard let data = FileManager.default.contents(atPath: directory.appendingPathComponent(name).path) else { continue }
            files[name] = ([UInt8](data), contentType(of: name))
        }
        return files
    }()

    static func contentType(of name: String) -> String {
        switch name.split(separator: ".").last {
        case "html": "text/html; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "js": "text/javascript; charset=utf-8"
        case "svg": "image/svg+xml"
        case "png": "image/png"
        case "ico": "image/x-icon"
        default: "application/octet-stream"
        }
    }

    func index(_ request: Request, context: AppRequestContext) async throws -> Response {
        try Self.serve("index.html")
    }

    func asset(_ request: Request, context: AppRequestContext) async throws -> Response {
        guard let name = context.parameters.get("name") else { throw APIError.routeNotFound }
        return try Self.serve(name)
    }

    private static func serve(_ name: String) throws -> Response {
        guard let file = files[name] else { throw APIError.routeNotFound }
        var headers = HTTPFields()
        headers[.contentType] = file.contentType
        headers[.cacheControl] = "no-cache"
        headers[.init("Content-Security-Policy")!] = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'"
        headers[.init("X-Content-Type-Options")!] = "nosniff"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: file.bytes)))
    }

    struct DevTokenRequest: Decodable {
        var userId: Int64
        var admin: Bool?
    }

    /// `POST /dev/token {"userId", "admin"?}` → `{"token"}`: only registered with `--dev`.
    func devToken(_ request: Request, context: AppRequestContext) async throws -> Response {
        let body = try await JSONBody.decode(DevTokenRequest.self, from: request)
        guard body.userId > 0 else { throw APIError.validationFailed("userId must be a positive integer") }
        guard let devTokens else { throw APIError.routeNotFound }
        let token = try await devTokens.issue(userId: body.userId, admin: body.admin ?? false, ttlSeconds: 12 * 3600)
        return try JSONBody.response(["token": token])
    }
}
