import ConcertAPI
import ConcertDomain
import Hummingbird
import Logging

/// The one wiring point: the HTTP application (`ConcertAPI`) on the storage, waiting room and
/// cache that `config` names (`Engines.make`). `concertd serve` and the tests call it.
public func buildApplication(
    config: AppConfig,
    clock: WallClock = .system,
    logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) async throws -> some ApplicationProtocol {
    try await buildApplication(config: config, clock: clock, logger: logger, onServerRunning: onServerRunning,
                               engines: { config, logger in try await Engines.make(config: config, clock: clock, logger: logger) })
}
