import ConcertAPI
import ConcertServer
import Crypto
import CryptoExtras
import Foundation

/// The one place tests get JWTs from.
///
/// `token(user:)` is a token as the service issues it (`ConcertService.token`, what `concertd
/// token` prints). `sign` builds one by hand from raw JSON, with swift-crypto directly (not with
/// jwt-kit, which the service verifies with), so a test can sign anything, including what no
/// issuer should.
enum JWTTestSigner {
    /// A JWT for `user`, signed with `secret` (`testSecret` unless told), valid for `ttl` seconds
    /// (negative: already expired).
    static func token(user: Int64, admin: Bool = false, ttl: Int64 = 600, secret: String = testSecret) async throws -> String {
        try await ConcertService.token(secret: secret, userId: user, admin: admin, ttlSeconds: ttl)
    }

    /// An HS256 token over `payload` (raw JSON claims), signed with `secret`.
    static func sign(payload: String, secret: String, header json: String = #"{"alg":"HS256","typ":"JWT"}"#) async throws -> String {
        sign(header: json, payload: payload) { input in
            Data(HMAC<SHA256>.authenticationCode(for: input, using: SymmetricKey(data: Data(secret.utf8))))
        }
    }

    /// `header.payload.signature(header.payload)`, each part base64url.
    static func sign(header: String, payload: String, signature: (Data) throws -> Data) rethrows -> String {
        let input = "\(base64URL(Data(header.utf8))).\(base64URL(Data(payload.utf8)))"
        return "\(input).\(base64URL(try signature(Data(input.utf8))))"
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "=", with: "")
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
    }
}

/// Key pairs made at test time for the three JWKS algorithms, with their public JWKs.
struct JWKSTestKeys: Sendable {
    let rsa: _RSA.Signing.PrivateKey
    let p256: P256.Signing.PrivateKey
    let ed25519: Curve25519.Signing.PrivateKey

    init() throws {
        rsa = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        p256 = P256.Signing.PrivateKey()
        ed25519 = Curve25519.Signing.PrivateKey()
    }

    enum Algorithm: String, CaseIterable, Sendable { case rs256 = "RS256", es256 = "ES256", eddsa = "EdDSA" }

    /// The public key of `algorithm` as a JWK member of a key set (without `alg`, as many
    /// providers publish them, unless `withAlg`).
    func jwk(_ algorithm: Algorithm, kid: String, withAlg: Bool = false) throws -> String {
        let alg = withAlg ? #","alg":"\#(algorithm.rawValue)""# : ""
        switch algorithm {
        case .rs256:
            let primitives = try rsa.publicKey.getKeyPrimitives()
            return #"{"kty":"RSA","kid":"\#(kid)","use":"sig"\#(alg),"n":"\#(JWTTestSigner.base64URL(primitives.modulus))","e":"\#(JWTTestSigner.base64URL(primitives.publicExponent))"}"#
        case .es256:
            let raw = p256.publicKey.rawRepresentation  // x ‖ y
            return #"{"kty":"EC","kid":"\#(kid)","crv":"P-256"\#(alg),"x":"\#(JWTTestSigner.base64URL(raw.prefix(32)))","y":"\#(JWTTestSigner.base64URL(raw.suffix(32)))"}"#
        case .eddsa:
            return #"{"kty":"OKP","kid":"\#(kid)","crv":"Ed25519"\#(alg),"x":"\#(JWTTestSigner.base64URL(ed25519.publicKey.rawRepresentation))"}"#
        }
    }

    /// The signature `algorithm`'s private key makes over `input`.
    func signature(_ algorithm: Algorithm, _ input: Data) throws -> Data {
        switch algorithm {
        case .rs256: try rsa.signature(for: input, padding: .insecurePKCS1v1_5).rawRepresentation
        case .es256: try p256.signature(for: input).rawRepresentation
        case .eddsa: try ed25519.signature(for: input)
        }
    }

    /// A token signed by `signer`'s key, whose header claims `alg` (the signer's by default) and `kid`.
    func token(_ signer: Algorithm, kid: String?, alg: String? = nil, payload: String) throws -> String {
        let kidMember = kid.map { #","kid":"\#($0)""# } ?? ""
        return try JWTTestSigner.sign(header: #"{"alg":"\#(alg ?? signer.rawValue)","typ":"JWT"\#(kidMember)}"#, payload: payload) {
            try signature(signer, $0)
        }
    }

    /// Writes `{"keys": [members]}` to `path`.
    static func writeKeySet(_ members: [String], to path: String) throws {
        try Data(#"{"keys":[\#(members.joined(separator: ","))]}"#.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
