import RESPClient
import Testing

@Suite("Redis URLs")
struct RedisURLTests {
    @Test func hostPortAndDatabase() throws {
        #expect(try RedisURL(parsing: "redis://127.0.0.1:6380/2") == RedisURL(host: "127.0.0.1", port: 6380, database: 2))
        #expect(try RedisURL(parsing: "redis://cache.internal") == RedisURL(host: "cache.internal", port: 6379, database: 0))
        #expect(try RedisURL(parsing: "redis://localhost:7000/") == RedisURL(host: "localhost", port: 7000, database: 0))
        #expect(try RedisURL(parsing: "redis://[::1]:6390/1") == RedisURL(host: "::1", port: 6390, database: 1))
        #expect(try RedisURL(parsing: "REDIS://h:1") == RedisURL(host: "h", port: 1))
    }

    @Test func credentials() throws {
        let url = try RedisURL(parsing: "redis://app:p%40ss@h:6379/3")
        #expect(url.username == "app")
        #expect(url.password == "p@ss")
        #expect(url.database == 3)
        #expect(!url.description.contains("p@ss"))
        let passwordOnly = try RedisURL(parsing: "redis://:secret@h")
        #expect(passwordOnly.username == nil)
        #expect(passwordOnly.password == "secret")
    }

    @Test(arguments: [
        "", "localhost:6379", "http://h:6379", "rediss://h:6379", "redis://", "redis://:6379", "redis://h:0",
        "redis://h:70000", "redis://h:port", "redis://h:6379/x", "redis://h:6379/-1", "redis://h:6379/0?timeout=1",
        "redis://::1:6379", "redis://[::1:6379", "redis://:p%zz@h",
    ])
    func badURLsSayWhy(_ text: String) {
        do {
            _ = try RedisURL(parsing: text)
            Issue.record("\(text) was accepted")
        } catch {
            #expect(error.kind == .invalidURL)
            #expect(error.message.contains("redis://host:port"))
        }
    }

    @Test func thePoolRejectsABadURLAtOnce() {
        #expect(throws: RESPClientError.self) { _ = try RedisConnectionPool(url: "redis://h:notaport") }
    }
}
