import Foundation
import HTTPTypes
import Testing

/// The one reply type both transports give: what the fault tests' retries and failure messages
/// rely on.
@Suite("Test replies")
struct ReplyTests {
    @Test func aReplyReadsItsJSONAndSaysWhenToRetry() {
        let body = Array(#"{"code": "IDEMPOTENCY_KEY_IN_USE", "id": 7, "items": [{"n": 1}]}"#.utf8)
        let inUse = Reply(status: 409, headers: [.retryAfter: "1"], bytes: body)
        #expect(inUse.answered && inUse.code == "IDEMPOTENCY_KEY_IN_USE" && inUse.int("id") == 7)
        #expect(inUse.array("items").count == 1 && inUse.retryAfter == "1")
        #expect(inUse.isRetryable, "the key's first use still runs")
        #expect(Reply(status: 503).isRetryable)
        #expect(!Reply(status: 401, bytes: Array(#"{"code": "QUEUE_TOKEN_INVALID"}"#.utf8)).isRetryable)
        #expect(inUse.description.hasPrefix("409 IDEMPOTENCY_KEY_IN_USE "))

        let lost = Reply.noAnswer("connection reset")
        #expect(!lost.answered && lost.isRetryable && lost.json.isEmpty)
        #expect(lost.description.hasPrefix("no answer  connection reset"), "\(lost)")
    }
}
