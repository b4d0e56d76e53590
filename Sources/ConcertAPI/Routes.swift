import HTTPTypes
import Hummingbird

/// One endpoint: a method, a path pattern and its handler.
struct Route<Context: RequestContext>: Sendable {
    typealias Handler = @Sendable (Request, Context) async throws -> Response
    var method: HTTPRequest.Method
    var path: String
    var handler: Handler
}

/// Every endpoint of the service, by the access it needs. Controllers add theirs
/// (`addRoutes(to:)`); `buildRouter` registers each list in its group, and the 405 table is made
/// from the same entries, so the two cannot drift apart.
struct Routes: Sendable {
    /// No authentication.
    private(set) var open: [Route<AppRequestContext>] = []
    /// A verified bearer JWT.
    private(set) var authenticated: [Route<AppRequestContext>] = []
    /// A verified bearer JWT with `role: "admin"`.
    private(set) var admin: [Route<AppRequestContext>] = []
    /// Every pattern and method, in the order they were added.
    private(set) var table = RouteTable()

    enum Access { case open, authenticated, admin }

    mutating func add(_ method: HTTPRequest.Method, _ path: String, _ access: Access, _ handler: @escaping Route<AppRequestContext>.Handler) {
        let route = Route(method: method, path: path, handler: handler)
        switch access {
        case .open: open.append(route)
        case .authenticated: authenticated.append(route)
        case .admin: admin.append(route)
        }
        table.add(path, method)
    }
}

extension RouterMethods {
    /// Registers `routes` in this group.
    func add(_ routes: [Route<Context>]) {
        for route in routes {
            let handler = route.handler
            on(RouterPath(route.path), method: route.method) { request, context in try await handler(request, context) }
        }
    }
}

/// The route patterns the service answers, by method, so that a known path asked with the
/// wrong method gets 405 (the router itself only knows "no match").
struct RouteTable: Sendable {
    private var entries: [(segments: [String], method: String)] = []

    mutating func add(_ path: String, _ method: HTTPRequest.Method) {
        entries.append((path.split(separator: "/").map(String.init), method.rawValue))
    }

    func allowedMethods(path: String) -> [String] {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        var allowed: [String] = []
        for entry in entries where entry.segments.count == parts.count {
            let matches = zip(entry.segments, parts).allSatisfy { pattern, part in
                pattern.hasPrefix("{") || pattern.hasPrefix(":") || pattern == part
            }
            if matches, !allowed.contains(entry.method) { allowed.append(entry.method) }
        }
        return allowed
    }
}

