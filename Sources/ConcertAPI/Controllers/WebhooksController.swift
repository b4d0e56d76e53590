import ConcertDomain
import ConcertStore
import Hummingbird
import Webhooks

/// Operators register, list and remove webhook receivers. The URL passes the SSRF guard
/// (`WebhookAddressGuard`) here and again at every delivery.
struct WebhooksController {
    let store: any WebhookStore
    let guardrail: WebhookAddressGuard
    let clock: WallClock

    struct NewWebhookBody: Decodable {
        var url: String
        var events: [String]
    }

    struct WebhookBody: Encodable {
        var id: Int64
        var url: String
        var events: [String]
        var createdAt: WireTime
        /// Only in the registration answer.
        var secret: String?

        init(_ webhook: Webhook, showingSecret: Bool) {
            id = webhook.id
            url = webhook.url
            events = webhook.events
            createdAt = WireTime(webhook.createdAt)
            secret = showingSecret ? webhook.secret : nil
        }
    }

    struct WebhookListBody: Encodable {
        var webhooks: [WebhookBody]
    }

    struct DeliveryBody: Encodable {
        var id: Int64
        var webhookId: Int64
        var eventId: String
        var type: String
        var state: String
        var attempts: Int
        var lastStatus: Int?
        var lastError: String?
        var createdAt: WireTime
        var deliveredAt: WireTime?
    }

    struct DeliveryListBody: Encodable {
        var deliveries: [DeliveryBody]
    }

    func addRoutes(to routes: inout Routes) {
        routes.add(.post, "/v1/admin/webhooks", create)
        routes.add(.get, "/v1/admin/webhooks", list)
        routes.add(.get, "/v1/admin/webhooks/deliveries", deliveries)
        routes.add(.delete, "/v1/admin/webhooks/{webhookId}", delete)
    }

    func create(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.decode(NewWebhookBody.self, from: request)
        guard !body.events.isEmpty else { throw DomainError.validation("'events' must name at least one event type") }
        var events: [String] = []
        for name in body.events {
            guard WebhookEventType(rawValue: name) != nil else {
                let known = WebhookEventType.allCases.map(\.rawValue).joined(separator: ", ")
                throw DomainError.validation("unknown event type '\(name.prefix(100))'; known: \(known)")
            }
            if !events.contains(name) { events.append(name) }
        }
        do {
            _ = try await guardrail.checkRegistration(url: body.url)
        } catch {
            throw DomainError.validation(error.description)
        }
        let webhook = try await store.createWebhook(url: body.url, events: events, secret: WebhookSigning.newSecret(), now: clock.now())
        return try JSONBody.response(WebhookBody(webhook, showingSecret: true), status: .created)
    }

    func list(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let webhooks = try await store.webhooks()
        return try JSONBody.response(WebhookListBody(webhooks: webhooks.map { WebhookBody($0, showingSecret: false) }))
    }

    /// The 50 newest deliveries with their state (operators' page).
    func deliveries(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let records = try await store.recentWebhookDeliveries(limit: 50)
        return try JSONBody.response(DeliveryListBody(deliveries: records.map {
            DeliveryBody(id: $0.id, webhookId: $0.webhookId, eventId: WebhookSigning.messageId(eventId: $0.eventId), type: $0.type,
                         state: $0.state, attempts: $0.attempts, lastStatus: $0.lastStatus, lastError: $0.lastError,
                         createdAt: WireTime($0.createdAt), deliveredAt: $0.deliveredAt.map(WireTime.init))
        }))
    }

    func delete(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let id = try request.pathId("webhookId", context: context, orElse: .webhookNotFound)
        guard try await store.deleteWebhook(id: id) else { throw DomainError.webhookNotFound }
        return Response(status: .noContent)
    }
}
