import ConcertDomain
import Testing

@Suite("Refund rules")
struct RefundPolicyTests {
    let startsAt = Timestamp(seconds: 2_000_000)
    let rules = BookingRules(refundCutoffSeconds: 3600)

    func payment(_ status: PaymentStatus) -> Payment {
        Payment(id: 1, userId: 1, reservationId: 1, amount: 100, paidAt: Timestamp(seconds: 0), status: status,
                refundedAt: status == .refunded ? Timestamp(seconds: 10) : nil)
    }

    @Test func allowedUntilTheCutoffBeforeTheStartExclusive() throws {
        #expect(RefundPolicy.deadline(startsAt: startsAt, rules: rules) == startsAt.adding(seconds: -3600))
        try RefundPolicy.checkRefundable(payment(.paid), startsAt: startsAt, now: startsAt.adding(seconds: -3601), rules: rules)
        try RefundPolicy.checkRefundable(payment(.paid), startsAt: startsAt,
                                         now: startsAt.adding(milliseconds: -3_600_001), rules: rules)
        for late in [Int64(-3600), -1, 0, 86_400] {
            #expect(throws: DomainError.refundNotAllowed) {
                try RefundPolicy.checkRefundable(payment(.paid), startsAt: startsAt, now: startsAt.adding(seconds: late), rules: rules)
            }
        }
    }

    @Test func aRefundedPaymentSaysSoBeforeTheCutoffIsLookedAt() {
        #expect(throws: DomainError.paymentAlreadyRefunded) {
            try RefundPolicy.checkRefundable(payment(.refunded), startsAt: startsAt, now: startsAt.adding(seconds: 10), rules: rules)
        }
        #expect(throws: DomainError.paymentAlreadyRefunded) {
            try RefundPolicy.checkRefundable(payment(.refunded), startsAt: startsAt, now: Timestamp(seconds: 0), rules: rules)
        }
    }

    @Test func theDefaultCutoffIsADay() {
        #expect(BookingRules().refundCutoffMilliseconds == 86_400_000)
    }
}
