import Batching
import ConcertDomain
import SharedState

/// The waiting rooms in Redis, shared by every instance of the service.
///
/// The rules are those of `WaitingLine` (the in-process line), applied by Lua scripts so that
/// each operation is atomic across instances: at no instant can two instances both see a free
/// slot and both admit. Time is always the caller's `now`, never Redis's clock.
///
/// Keys for concert `c`, under `keyPrefix`:
/// - `queue:{c}:waiting`  ZSET token → arrival number: the line, in order; ZRANK is the position.
/// - `queue:{c}:seen`     ZSET token → last poll (ms), for waiters only: idle ones are a range.
/// - `queue:{c}:active`   ZSET token → activeUntil (ms): expired ones are a range.
/// - `queue:{c}:owner`    HASH token → user id, for every live token.
/// - `queue:{c}:user`     HASH user id → the user's live token.
/// - `queue:{c}:sequence` counter for arrival numbers.
/// - `queue:{c}:admitted` ZSET token → admission time (ms), the last 60 seconds' admissions
///   (for `admitPerMinute`); it outlives an empty line and expires a minute after its last entry.
/// - `queue:{c}:drawn`    the pre-queue's draw happened: how many it ordered (kept).
/// - `queue:lines`        SET of concert ids with a line, so `sweep` can find them.
/// Each line's policy comes from `policies` with every call (as script arguments).
/// Every lookup of one token is O(log n).
public final class RedisWaitingRoom: WaitingRoom {
    private let pool: RedisConnectionPool
    private let policies: any QueuePolicySource
    private let keyPrefix: String
    /// Polls that arrive together share one script call per line (`WriteBatcher`): every
    /// queue-protected request polls its token, and one call per poll cost Redis and this process
    /// a script run, a reply and a parse each.
    private let pollBatcher: WriteBatcher<PollItem, QueueTicket?>

    private struct PollItem: Sendable {
        var token: String
        var concertId: Int64
        var now: Timestamp
    }

    public convenience init(pool: RedisConnectionPool, policy: QueuePolicy, keyPrefix: String = "concertd:") {
        self.init(pool: pool, policies: FixedQueuePolicy(policy), keyPrefix: keyPrefix)
    }

    public init(pool: RedisConnectionPool, policies: any QueuePolicySource, keyPrefix: String = "concertd:") {
        self.pool = pool
        self.policies = policies
        self.keyPrefix = keyPrefix
        self.pollBatcher = WriteBatcher(maxBatch: 64, concurrency: 4, isInfrastructureFailure: { $0 is SharedStateUnavailable })
    }

    public func join(userId: Int64, concertId: Int64, now: Timestamp) async throws -> (ticket: QueueTicket, created: Bool) {
        let token = QueueToken.make(concertId: concertId)
        let (reply, policy) = try await run(Self.joinScript, "join", concertId: concertId, now: now,
                                            extra: [RESPArgument(userId), RESPArgument(token)])
        guard let ticket = try ticket(from: reply, concertId: concertId, policy: policy) else { throw unexpectedReply("join", reply) }
        return ticket
    }

    public func poll(token: String, now: Timestamp) async throws -> QueueTicket? {
        guard let concertId = QueueToken.concertId(of: token) else { return nil }
        return try await pollBatcher.submit(PollItem(token: token, concertId: concertId, now: now)) { [self] items in
            try await poll(items)
        }
    }

    /// The polls of one batch: one script call per line (usually one), the lines' calls at once.
    private func poll(_ items: [PollItem]) async throws -> [QueueTicket?] {
        let lines = Dictionary(grouping: items.indices, by: { items[$0].concertId })
        var tickets = [QueueTicket?](repeating: nil, count: items.count)
        try await withThrowingTaskGroup(of: [(Int, QueueTicket?)].self) { group in
            for (concertId, indices) in lines {
                group.addTask {
                    // The policy is the line's now; its first poll's time stands for the batch's.
                    let first = items[indices[0]].now
                    let policy = try await self.policies.policy(concertId: concertId, now: first)
                    let extra = indices.flatMap { [RESPArgument(items[$0].token), RESPArgument(items[$0].now.milliseconds)] }
                    let reply = try await self.run(Self.pollManyScript, "poll", concertId: concertId, now: first, policy: policy,
                                                   extra: extra)
                    guard let replies = reply.array, replies.count == indices.count else { throw unexpectedReply("poll", reply) }
                    return try zip(indices, replies).map { index, reply in
                        (index, try self.ticket(from: reply, concertId: concertId, policy: policy)?.ticket)
                    }
                }
            }
            for try await answered in group {
                for (index, ticket) in answered { tickets[index] = ticket }
            }
        }
        return tickets
    }

    @discardableResult
    public func end(token: String, now: Timestamp) async throws -> Bool {
        guard let concertId = QueueToken.concertId(of: token) else { return false }
        let (reply, _) = try await run(Self.endScript, "end", concertId: concertId, now: now, extra: [RESPArgument(token)])
        guard let ended = reply.integer else { throw unexpectedReply("end", reply) }
        return ended == 1
    }

    public func sweep(now: Timestamp) async throws {
        let members = try await pool.unavailableOnFailure("sweep") {
            try await pool.send("SMEMBERS", RESPArgument(linesKey))
        }
        guard let concertIds = members.array?.compactMap({ $0.string.flatMap { Int64($0) } }) else {
            throw unexpectedReply("sweep", members)
        }
        // One script per line keeps each one atomic and short; the lines go in parallel over the
        // pool's pipelined connections.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for concertId in concertIds {
                group.addTask { _ = try await self.run(Self.sweepScript, "sweep", concertId: concertId, now: now, extra: []) }
            }
            try await group.waitForAll()
        }
    }

    public func counts(concertId: Int64, now: Timestamp) async throws -> (waiting: Int, active: Int) {
        let (reply, _) = try await run(Self.countsScript, "counts", concertId: concertId, now: now, extra: [])
        guard let values = reply.array, values.count == 2, let waiting = values[0].integer, let active = values[1].integer else {
            throw unexpectedReply("counts", reply)
        }
        return (Int(waiting), Int(active))
    }

    public func admittedLastMinute(concertId: Int64, now: Timestamp) async throws -> Int {
        try await admissions(concertId: concertId, after: now.adding(milliseconds: -QueuePolicy.rateWindowMilliseconds), now: now)
    }

    public func admissions(concertId: Int64, after: Timestamp, now: Timestamp) async throws -> Int {
        let key = keys(concertId: concertId)[7]
        let reply = try await pool.unavailableOnFailure("admitted") {
            try await pool.send("ZCOUNT", RESPArgument(key), RESPArgument("(\(after.milliseconds)"), RESPArgument(now.milliseconds))
        }
        guard let count = reply.integer else { throw unexpectedReply("admitted", reply) }
        return Int(count)
    }

    public func draw(concertId: Int64, now: Timestamp, order: @Sendable ([String]) -> [String]) async throws -> Int {
        let keys = keys(concertId: concertId)
        let drawn = try await pool.unavailableOnFailure("draw") { try await pool.send("GET", RESPArgument(keys[8])) }
        if let done = drawn.string.flatMap({ Int($0) }) { return done }
        let members = try await pool.unavailableOnFailure("draw") {
            try await pool.send("ZRANGE", RESPArgument(keys[0]), 0, -1)
        }
        guard let tokens = members.array?.compactMap(\.string) else { throw unexpectedReply("draw", members) }
        let ordered = order(tokens)
        // Applied only if no other instance drew first; anyone who joined in between keeps an
        // arrival number above every drawn place (there are at most as many places as numbers given).
        let (reply, _) = try await run(Self.drawScript, "draw", concertId: concertId, now: now,
                                       extra: ordered.map { RESPArgument($0) })
        guard let entrants = reply.integer else { throw unexpectedReply("draw", reply) }
        return Int(entrants)
    }

    public func ping() async throws {
        let reply = try await pool.unavailableOnFailure("ping") { try await pool.send("PING") }
        guard reply.string == "PONG" else { throw unexpectedReply("ping", reply) }
    }

    // MARK: - Script calls

    private var linesKey: String { keyPrefix + "queue:lines" }

    private func keys(concertId: Int64) -> [String] {
        let base = keyPrefix + "queue:{\(concertId)}:"
        return [base + "waiting", base + "seen", base + "active", base + "owner", base + "user", base + "sequence", linesKey,
                base + "admitted", base + "drawn"]
    }

    private func run(_ script: RedisScript, _ what: String, concertId: Int64, now: Timestamp,
                     extra: [RESPArgument]) async throws -> (RESPValue, QueuePolicy) {
        let policy = try await policies.policy(concertId: concertId, now: now)
        return (try await run(script, what, concertId: concertId, now: now, policy: policy, extra: extra), policy)
    }

    private func run(_ script: RedisScript, _ what: String, concertId: Int64, now: Timestamp, policy: QueuePolicy,
                     extra: [RESPArgument]) async throws(SharedStateUnavailable) -> RESPValue {
        let arguments = [
            RESPArgument(now.milliseconds), RESPArgument(policy.admissionCap), RESPArgument(policy.activeMilliseconds),
            RESPArgument(policy.idleMilliseconds), RESPArgument(concertId), RESPArgument(policy.admitPerMinute ?? 0),
        ] + extra
        let keys = keys(concertId: concertId)
        return try await pool.unavailableOnFailure(what) {
            try await pool.evalSHA(script, keys: keys, arguments: arguments)
        }
    }

    /// Reads `{status, userId, position, activeUntil, token, created}`; nil for a nil reply.
    private func ticket(from reply: RESPValue, concertId: Int64, policy: QueuePolicy) throws(SharedStateUnavailable) -> (ticket: QueueTicket, created: Bool)? {
        if reply.isNull { return nil }
        guard let fields = reply.array, fields.count == 6,
              let status = fields[0].integer, let userId = fields[1].integer, let position = fields[2].integer,
              let activeUntil = fields[3].integer, let token = fields[4].string, let created = fields[5].integer
        else { throw unexpectedReply("ticket", reply) }
        let ticket: QueueTicket
        switch status {
        case 2:
            ticket = QueueTicket(token: token, userId: userId, concertId: concertId, status: .active, position: 0,
                                 estimatedWaitSeconds: 0, activeUntil: Timestamp(milliseconds: activeUntil))
        case 1:
            ticket = QueueTicket(token: token, userId: userId, concertId: concertId, status: .waiting, position: Int(position),
                                 estimatedWaitSeconds: policy.estimatedWaitSeconds(position: Int(position)), activeUntil: nil)
        default:
            throw unexpectedReply("ticket", reply)
        }
        return (ticket, created == 1)
    }

    // MARK: - Scripts

    /// Shared by every script: names, and `advance`, which is `WaitingLine.advance`.
    /// Numbers that become scores or replies are formatted with %.0f: Lua's default
    /// number-to-string keeps only 14 digits. User ids stay strings (Lua numbers are doubles).
    private static let prelude = """
    local waitingKey, seenKey, activeKey, ownerKey, userKey, sequenceKey, linesKey, admittedKey, drawnKey =
      KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
    local nowText = ARGV[1]
    local now = tonumber(nowText)
    local maxActive = tonumber(ARGV[2])
    local activeMs = tonumber(ARGV[3])
    local idleMs = tonumber(ARGV[4])
    local concertId = ARGV[5]
    local rate = tonumber(ARGV[6])

    local function number(value) return string.format('%.0f', value) end

    -- The token is no longer live: drop its owner, and the user's pointer if it still points here.
    local function forget(token)
      local owner = redis.call('HGET', ownerKey, token)
      redis.call('HDEL', ownerKey, token)
      if owner and redis.call('HGET', userKey, owner) == token then
        redis.call('HDEL', userKey, owner)
      end
    end

    local function dropWaiter(token)
      redis.call('ZREM', waitingKey, token)
      redis.call('ZREM', seenKey, token)
      forget(token)
    end

    local function isIdle(token)
      local lastSeen = redis.call('ZSCORE', seenKey, token)
      return (not lastSeen) or tonumber(lastSeen) + idleMs <= now
    end

    -- Expire ACTIVE tokens whose time is up, then admit from the head while there is room
    -- (the cap, and with a rate the admissions of the last 60 seconds), skipping waiters that
    -- went idle.
    local function advance()
      local expired = redis.call('ZRANGEBYSCORE', activeKey, '-inf', nowText)
      for _, token in ipairs(expired) do
        redis.call('ZREM', activeKey, token)
        forget(token)
      end
      redis.call('ZREMRANGEBYSCORE', admittedKey, '-inf', number(now - 60000))
      local activeCount = redis.call('ZCARD', activeKey)
      local recent = redis.call('ZCARD', admittedKey)
      while activeCount < maxActive and (rate <= 0 or recent < rate) do
        local head = redis.call('ZRANGE', waitingKey, 0, 0)
        if #head == 0 then break end
        local token = head[1]
        if isIdle(token) then
          dropWaiter(token)
        else
          redis.call('ZREM', waitingKey, token)
          redis.call('ZREM', seenKey, token)
          redis.call('ZADD', activeKey, number(now + activeMs), token)
          redis.call('ZADD', admittedKey, nowText, token)
          redis.call('PEXPIRE', admittedKey, 61000)
          activeCount = activeCount + 1
          recent = recent + 1
        end
      end
    end

    -- {status (1 waiting, 2 active), userId, position, activeUntil, token, created}, or nil.
    local function ticket(token, created)
      local activeUntil = redis.call('ZSCORE', activeKey, token)
      if activeUntil then
        return {2, redis.call('HGET', ownerKey, token) or '0', 0, number(tonumber(activeUntil)), token, created}
      end
      local rank = redis.call('ZRANK', waitingKey, token)
      if rank then
        return {1, redis.call('HGET', ownerKey, token) or '0', rank, '0', token, created}
      end
      return false
    end

    -- WaitingLine.poll after advance: a waiter that went idle loses its place; one not seen since
    -- before now is seen until now + the refresh (QueuePolicy.pollRefreshMilliseconds).
    local function touch(token)
      if redis.call('ZSCORE', waitingKey, token) then
        if isIdle(token) then
          dropWaiter(token)
          return false
        end
        local lastSeen = tonumber(redis.call('ZSCORE', seenKey, token))
        if lastSeen < now then
          redis.call('ZADD', seenKey, number(now + math.min(math.floor(idleMs / 12), 5000)), token)
        end
      end
      return true
    end

    """

    // ARGV[7] = user id, ARGV[8] = a fresh token.
    static let joinScript = RedisScript(prelude + """
    local userId, newToken = ARGV[7], ARGV[8]
    redis.call('SADD', linesKey, concertId)
    advance()
    local existing = redis.call('HGET', userKey, userId)
    if existing and touch(existing) then
      local current = ticket(existing, 0)
      if current then return current end
    end
    local sequence = redis.call('INCR', sequenceKey)
    redis.call('ZADD', waitingKey, sequence, newToken)
    redis.call('ZADD', seenKey, nowText, newToken)
    redis.call('HSET', ownerKey, newToken, userId)
    redis.call('HSET', userKey, userId, newToken)
    advance()
    return ticket(newToken, 1)
    """)

    // ARGV[7], ARGV[8], ... = token, its poll's now (ms), token, now, ...: the polls of one line
    // that arrived together (one or many), one after the other, each at its own time:
    // `WaitingLine.poll`, advance and then touch. One reply per poll, in order: its ticket, or false.
    static let pollManyScript = RedisScript(prelude + """
    local replies = {}
    for i = 7, #ARGV, 2 do
      nowText = ARGV[i + 1]
      now = tonumber(nowText)
      local token = ARGV[i]
      advance()
      if touch(token) then
        replies[#replies + 1] = ticket(token, 0)
      else
        replies[#replies + 1] = false
      end
    end
    return replies
    """)

    // ARGV[7] = token. Like WaitingLine.end: remove first, then advance so the head moves up.
    static let endScript = RedisScript(prelude + """
    local token = ARGV[7]
    local ended = 0
    if redis.call('ZREM', activeKey, token) == 1 then
      forget(token)
      ended = 1
    elseif redis.call('ZSCORE', waitingKey, token) then
      dropWaiter(token)
      ended = 1
    end
    advance()
    return ended
    """)

    // WaitingLine.sweep: advance, drop idle waiters anywhere in the line, advance again; forget
    // the line once it is empty.
    static let sweepScript = RedisScript(prelude + """
    advance()
    local idle = redis.call('ZRANGEBYSCORE', seenKey, '-inf', number(now - idleMs))
    for _, token in ipairs(idle) do dropWaiter(token) end
    if #idle > 0 then advance() end
    if redis.call('ZCARD', waitingKey) == 0 and redis.call('ZCARD', activeKey) == 0 then
      redis.call('DEL', waitingKey, seenKey, activeKey, ownerKey, userKey, sequenceKey)
      redis.call('SREM', linesKey, concertId)
    end
    return 1
    """)

    // ARGV[7...] = every WAITING token in the drawn order. Once per line: the first call puts
    // them at the head in that order and records how many; later calls return that number.
    static let drawScript = RedisScript(prelude + """
    local done = redis.call('GET', drawnKey)
    if done then return tonumber(done) end
    local entrants = 0
    for i = 7, #ARGV do
      if redis.call('ZSCORE', waitingKey, ARGV[i]) then
        entrants = entrants + 1
        redis.call('ZADD', waitingKey, entrants, ARGV[i])
      end
    end
    redis.call('SET', drawnKey, entrants)
    return entrants
    """)

    static let countsScript = RedisScript(prelude + """
    advance()
    return {redis.call('ZCARD', waitingKey), redis.call('ZCARD', activeKey)}
    """)
}
