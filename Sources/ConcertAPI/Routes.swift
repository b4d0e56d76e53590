import HTTPTypes
import Hummingbird

/// One endpoint: a method, a path pattern and its handler.
struct Route<Context: RequestContext>: Sendable {
    typealias Handler = @Sendable (Request, Context) async throws -> Response
    var method: HTTPRequest.Method
    var path: String
    var handler: Handler
}

/// Every endpoint of the service, by the context its handler takes, which says what the request
/// must have passed: nothing, authentication, the queue check, or the admin check. Controllers add
/// theirs (`addRoutes(to:)`); `buildRouter` registers each list in its group, and the 405 table is
/// made from the same entries, so the two cannot drift apart.
struct Routes: Sendable {
    private(set) var open: [Route<AppRequestContext>] = []
    private(set) var authenticated: [Route<AuthenticatedRequestContext>] = []
    private(set) var ticketed: [Route<TicketedRequestContext>] = []
    private(set) var admin: [Route<AdminRequestContext>] = []
    /// Every pattern and method, in the order they were added.
    private(set) var table = RouteTable()

    mutating func add(_ method: HTTPRequest.Method, _ path: String, _ handler: @escaping Route<AppRequestContext>.Handler) {
        open.append(Route(method: method, path: path, handler: handler))
        table.add(path, method)
    }

    mutating func add(_ method: HTTPRequest.Method, _ path: String, _ handler: @escaping Route<AuthenticatedRequestContext>.Handler) {
        authenticated.append(Route(method: method, path: path, handler: handler))
        table.add(path, method)
    }

    mutating func add(_ method: HTTPRequest.Method, _ path: String, _ handler: @escaping Route<TicketedRequestContext>.Handler) {
        ticketed.append(Route(method: method, path: path, handler: handler))
        table.add(path, method)
    }

    mutating func add(_ method: HTTPRequest.Method, _ path: String, _ handler: @escaping Route<AdminRequestContext>.Handler) {
        admin.append(Route(method: method, path: path, handler: handler))
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

