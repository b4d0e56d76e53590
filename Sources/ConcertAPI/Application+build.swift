import ConcertDomain
import ConcertStore
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UnixSignals
import SharedState
import Webhooks

/// The HTTP application on the storage and shared state that `engines` makes: the router, the
/// background services, migration and demo data at start. `ConcertServer.buildApplication`
/// chooses the engines; tests call that one.
public func buildApplication(
    config: AppConfig,
    clock: WallClock = .system,
    logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in },
    engines makeEngines: (AppConfig, Logger) async throws -> Engines
) async throws -> some ApplicationProtocol {
    guard let secret = config.effectiveJWTSecret else {
        throw ConfigError("CONCERT_JWT_SECRET is not set: set it, or run with --dev for a development secret")
    }
    let authenticator = try await Authenticator(secret: secret, clock: clock, maxLifetimeSeconds: config.maxTokenLifetimeSeconds,
                                                jwksFile: config.jwksFile)
    // SIGHUP is trapped before the server listens, so an early one reloads instead of killing the process.
    var reloader: KeySetReloader?
    if config.jwksFile != nil {
        reloader = KeySetReloader(authenticator: authenticator, signals: await UnixSignalsSequence(trapping: .sighup), logger: logger)
    }
    let engines = try await makeEngines(config, logger)
    let resolver: any WebhookResolver = switch config.webhookResolver {
    case .system: TimeLimitedResolver(SystemWebhookResolver(), timeout: .seconds(2))
    case .loopbackOnly: LoopbackOnlyWebhookResolver()
    }
    let webhookGuard = WebhookAddressGuard(resolver: config.webhookResolverOverride ?? resolver, allowPrivate: config.webhookAllowPrivate)
    let deps = Dependencies(
        store: engines.store, waitingRoom: engines.waitingRoom, cache: engines.cache, rateLimiter: engines.rateLimiter,
        policies: engines.linePolicies, tokenClaims: engines.tokenClaims,
        ticketedWrites: engines.ticketedWrites, authenticator: authenticator, clock: clock, config: config,
        webhookGuard: webhookGuard)
    let router = buildRouter(deps, registry: MetricsBootstrap.registry)
    var services: [any Service] = engines.services + [
        QueueSweeper(waitingRoom: engines.waitingRoom, policies: engines.linePolicies, clock: clock,
                     intervalMilliseconds: config.queueSweepMilliseconds, logger: logger),
        IdempotencyKeyJanitor(store: engines.store, clock: clock, logger: logger),
        WebhookRelay(store: engines.store, guard: webhookGuard, clock: clock,
                     options: {
                         var o = WebhookRelayOptions()
                         o.idleMilliseconds = config.webhookPollMilliseconds
                         o.retentionMilliseconds = config.webhookRetentionMilliseconds
                         o.retentionSweepMilliseconds = config.webhookRetentionSweepMilliseconds
                         return o
                     }(),
                     logger: logger),
    ]
    if let reloader { services.append(reloader) }
    var app = Application(
        router: router,
        server: config.connectionLimits.serverBuilder(),
        configuration: .init(address: .hostname(config.host, port: config.port), serverName: "concertd"),
        services: services,
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? config.port) },
        logger: logger
    )
    let demo = config.demo
    let dev = config.dev
    let warnings = engines.startupWarnings
    app.beforeServerStarts {
        try await engines.store.migrate()
        for warning in warnings { logger.warning("\(warning)") }
        if demo || dev, try await engines.store.isEmpty() {
            try await DemoData.seed(into: engines.store, now: clock.now())
            logger.info("filled the empty database with demo concerts")
        }
    }
    return app
}

/// Builds the router: middleware order is request id → metrics → problem mapping → per-address
/// rate limit, then authentication (and per-user rate limit) on everything under /v1 but the
/// public concert reads.
func buildRouter(_ deps: Dependencies, registry: PrometheusCollectorRegistry) -> Router<AppRequestContext> {
    let routes = deps.routes(registry: registry)

    let router = Router(context: AppRequestContext.self)
    router.add(middleware: RequestIdMiddleware())
    // Metrics outside the problem mapping, so that they see the answer's real status (a 409 is
    // counted as 409, with its latency) rather than an error they would count as 500.
    router.add(middleware: MetricsMiddleware())
    router.add(middleware: ProblemMiddleware(routes: routes.table))
    router.add(middleware: RateLimitMiddleware(scope: .address, limit: deps.config.rateLimitPerIP,
                                               limiter: deps.rateLimiter, clock: deps.clock,
                                               trustedProxies: deps.config.trustedProxies))
    router.add(routes.open)
    // The per-user limit counts the verified user, so it comes after authentication and before
    // any other check (a non-admin over the limit gets 429, not 403).
    let authenticated = router.group()
        .add(middleware: AuthMiddleware(authenticator: deps.authenticator))
        .add(middleware: RateLimitMiddleware(scope: .user, limit: deps.config.rateLimitPerUser,
                                             limiter: deps.rateLimiter, clock: deps.clock))
        .group(context: AuthenticatedRequestContext.self)
    authenticated.add(routes.authenticated)
    authenticated.group()
        .add(middleware: QueueTicketMiddleware(gate: deps.queueGate))
        .group(context: TicketedRequestContext.self)
        .add(routes.ticketed)
    authenticated.group(context: AdminRequestContext.self)
        .add(routes.admin)
    return router
}

/// Prometheus is bootstrapped once per process (swift-metrics allows only one bootstrap).
enum MetricsBootstrap {
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.nameAndLabelSanitizer = { name, labels in
            (sanitize(name), labels.map { (sanitize($0.0), $0.1) })
        }
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    /// Prometheus names allow [a-zA-Z0-9_:] only.
    private static func sanitize(_ name: String) -> String {
        String(name.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" ? $0 : "_" })
    }
}

/// Deletes Idempotency-Key records past their 24-hour retention every ten minutes, so the table
/// does not grow without bound (a claim only ever overwrites its own old row).
struct IdempotencyKeyJanitor: Service {
    let store: any ConcertStore
    let clock: WallClock
    let logger: Logger
    static let intervalSeconds = 600

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let cutoff = clock.now().adding(milliseconds: -Idempotency.retentionMilliseconds)
                    let deleted = try await store.purgeIdempotencyKeys(claimedBefore: cutoff)
                    if deleted > 0 { logger.info("purged old idempotency keys", metadata: ["count": "\(deleted)"]) }
                } catch {
                    logger.debug("idempotency key purge failed", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .seconds(Self.intervalSeconds))
            }
        }
    }
}

/// Reads `CONCERT_JWT_JWKS_FILE` again on each SIGHUP (key rotation without a restart). Requests
/// in flight keep the key set they started with; a file that fails to load leaves the old keys.
struct KeySetReloader: Service {
    let authenticator: Authenticator
    let signals: UnixSignalsSequence
    let logger: Logger

    func run() async throws {
        for await _ in signals.cancelOnGracefulShutdown() {
            await authenticator.reloadKeySet(logger: logger)
        }
    }
}

/// Sweeps the waiting rooms on a timer, so a freed or expired slot reaches the head of the line
/// within a fraction of a second even when nobody polls.
/// It also makes the pre-queue draws that are due, and every second records the per-concert
/// gauges of the lines.
struct QueueSweeper: Service {
    let waitingRoom: any WaitingRoom
    let policies: LinePolicies
    let clock: WallClock
    let intervalMilliseconds: Int64
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var lastGauges = ContinuousClock.now
            while !Task.isCancelled {
                do {
                    try await policies.drawDue(waitingRoom: waitingRoom, now: clock.now())
                } catch {
                    logger.debug("queue draw failed", metadata: ["error": "\(error)"])
                }
                do {
                    try await waitingRoom.sweep(now: clock.now())
                } catch {
                    logger.debug("queue sweep failed", metadata: ["error": "\(error)"])
                }
                if ContinuousClock.now - lastGauges >= .seconds(1) {
                    lastGauges = ContinuousClock.now
                    await policies.recordGauges(waitingRoom: waitingRoom, now: clock.now())
                }
                try? await Task.sleep(for: .milliseconds(intervalMilliseconds))
            }
        }
    }
}
