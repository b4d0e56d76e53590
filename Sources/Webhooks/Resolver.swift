import NIOCore
import Synchronization
import NIOPosix
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns a webhook URL's host name into the addresses to connect to. Injected: the relay and
/// the registration check ask it, never the system directly, so tests (and
/// A resolver whose lookups answer within `timeout`: one that has not answered by then counts as
/// no address (a registration is accepted and checked again at delivery; a delivery is retried
/// later), so an operator's request never hangs on a slow name server. The lookup itself may not
/// be cancellable (getaddrinfo is not); it finishes on its own and its answer is dropped.
public struct TimeLimitedResolver: WebhookResolver {
    public var base: any WebhookResolver
    public var timeout: Duration

    public init(_ base: any WebhookResolver, timeout: Duration = .seconds(2)) {
        self.base = base
        self.timeout = timeout
    }

    public func resolve(host: String) async throws -> [IPAddress] {
        // Not a task group: a group waits for all its children, and the lookup's child would
        // keep it waiting until the lookup returns. Whichever of the lookup and the timer ends
        // first answers; the other finds the continuation gone.
        let base = self.base, timeout = self.timeout
        return await withCheckedContinuation { (continuation: CheckedContinuation<[IPAddress], Never>) in
            let pending = Mutex<CheckedContinuation<[IPAddress], Never>?>(continuation)
            let answer: @Sendable ([IPAddress]) -> Void = { addresses in
                pending.withLock { waiting in
                    waiting?.resume(returning: addresses)
                    waiting = nil
                }
            }
            Task { answer((try? await base.resolve(host: host)) ?? []) }
            Task {
                try? await Task.sleep(for: timeout)
                answer([])
            }
        }
    }

    public func permits(_ address: IPAddress) -> Bool { base.permits(address) }
}

/// `CONCERT_WEBHOOK_RESOLVER=loopback-only`) can guarantee that no lookup or connection ever
/// leaves this machine.
public protocol WebhookResolver: Sendable {
    /// The addresses of `host` (a name, never an address literal), empty when it has none.
    func resolve(host: String) async throws -> [IPAddress]
    /// Whether a connection to `address` is allowed at all (beyond the private-address rule).
    func permits(_ address: IPAddress) -> Bool
}

extension WebhookResolver {
    public func permits(_ address: IPAddress) -> Bool { true }
}

/// The system resolver (`getaddrinfo`, on NIO's blocking-IO pool). Served wrapped in a
/// `TimeLimitedResolver`: with an unreachable name server `getaddrinfo` can block for many seconds.
public struct SystemWebhookResolver: WebhookResolver {
    public init() {}

    public func resolve(host: String) async throws -> [IPAddress] {
        try await Self.lookUp(host)
    }

    private static func lookUp(_ host: String) async throws -> [IPAddress] {
        try await NIOThreadPool.singleton.runIfActive {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var result: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
            defer { freeaddrinfo(first) }
            var addresses: [IPAddress] = []
            var next: UnsafeMutablePointer<addrinfo>? = first
            while let info = next {
                if let sa = info.pointee.ai_addr {
                    switch Int32(sa.pointee.sa_family) {
                    case AF_INET:
                        let v4 = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                        if let a = withUnsafeBytes(of: v4, { IPAddress(bytes: Array($0)) }) { addresses.append(a) }
                    case AF_INET6:
                        let v6 = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                        if let a = withUnsafeBytes(of: v6, { IPAddress(bytes: Array($0)) }) { addresses.append(a) }
                    default: break
                    }
                }
                next = info.pointee.ai_next
            }
            return addresses
        }
    }
}

/// `CONCERT_WEBHOOK_RESOLVER=loopback-only`, for every test run: resolves `localhost` (and
/// `*.localhost`) to 127.0.0.1 without asking anyone, every other name to nothing, and permits
/// connections to loopback addresses only. No URL whatever can then cause a DNS lookup or a
/// connection beyond this machine.
public struct LoopbackOnlyWebhookResolver: WebhookResolver {
    public init() {}

    public func resolve(host: String) async throws -> [IPAddress] {
        let name = host.lowercased()
        if name == "localhost" || name.hasSuffix(".localhost") { return [IPAddress(bytes: [127, 0, 0, 1])!] }
        return []
    }

    public func permits(_ address: IPAddress) -> Bool { address.isLoopback }
}

/// A fixed table of names (tests): never asks anyone; connections only where `permitted` says.
public struct StaticWebhookResolver: WebhookResolver {
    public var table: [String: [IPAddress]]
    public var permitted: @Sendable (IPAddress) -> Bool

    public init(_ table: [String: [IPAddress]], permitted: @escaping @Sendable (IPAddress) -> Bool = { $0.isLoopback }) {
        self.table = table
        self.permitted = permitted
    }

    public func resolve(host: String) async throws -> [IPAddress] { table[host.lowercased()] ?? [] }
    public func permits(_ address: IPAddress) -> Bool { permitted(address) }
}

extension IPAddress {
    func socketAddress(port: Int) throws -> SocketAddress {
        try SocketAddress(ipAddress: description, port: port)
    }
}
