import Foundation
import JWTKit

/// The public keys of `CONCERT_JWT_JWKS_FILE` (a JSON Web Key Set, RFC 7517), each with the one
/// algorithm its tokens may use: RS256 for an `RSA` key, ES256 for an `EC` key on P-256, EdDSA
/// for an `OKP` key on Ed25519. Every key needs a unique `kid`; a key's own `alg`, when given,
/// must be that algorithm. Anything else (an `oct` key, another curve or algorithm, a private
/// key, a key not for signatures) makes the whole file invalid, so that a mistake is seen at
/// start or on reload rather than as refused logins.
struct JWKSKeySet: Sendable {
    static let algorithms: Set<String> = ["RS256", "ES256", "EdDSA"]

    /// The keys, each added under its `kid` and its signer built at load time.
    let keys: JWTKeyCollection
    private let algorithmByKid: [String: String]

    var count: Int { algorithmByKid.count }

    func algorithm(kid: String) -> String? { algorithmByKid[kid] }

    /// The members of each key that are checked before jwt-kit sees it.
    private struct KeyFields: Decodable {
        var kty: String?
        var kid: String?
        var alg: String?
        var crv: String?
        var use: String?
        var d: String?
    }

    private struct File: Decodable {
        var keys: [KeyFields]
    }

    /// Reads and checks the file; every problem is a one-line `ConfigError` naming the file.
    static func load(path: String) async throws -> JWKSKeySet {
        func invalid(_ reason: String) -> ConfigError {
            let line = reason.split(whereSeparator: \.isNewline).joined(separator: " ")
            return ConfigError("CONCERT_JWT_JWKS_FILE \(path): \(line)")
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw invalid("cannot be read (\((error as NSError).localizedDescription))")
        }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: data)
        } catch {
            throw invalid("is not a JSON Web Key Set: an object with a \"keys\" array")
        }
        var algorithmByKid: [String: String] = [:]
        for (index, key) in file.keys.enumerated() {
            guard let kid = key.kid, !kid.isEmpty else { throw invalid("key \(index) has no \"kid\"") }
            guard algorithmByKid[kid] == nil else { throw invalid("two keys have the kid '\(kid)'") }
            let algorithm: String
            switch (key.kty, key.crv) {
            case ("RSA", _): algorithm = "RS256"
            case ("EC", "P-256"): algorithm = "ES256"
            case ("OKP", "Ed25519"): algorithm = "EdDSA"
            default:
                throw invalid("key '\(kid)' (kty \(key.kty ?? "missing"), crv \(key.crv ?? "none")) is not an RSA, "
                    + "P-256 or Ed25519 public key")
            }
            if let alg = key.alg, alg != algorithm {
                throw invalid("key '\(kid)' says alg \(alg); a \(key.kty!) key here is for \(algorithm) only")
            }
            if let use = key.use, use != "sig" { throw invalid("key '\(kid)' has use '\(use)', not 'sig'") }
            if key.d != nil { throw invalid("key '\(kid)' holds a private key; the file is for public keys only") }
            algorithmByKid[kid] = algorithm
        }
        let collection = JWTKeyCollection()
        do {
            let jwks = try JSONDecoder().decode(JWKS.self, from: data)
            for jwk in jwks.keys {
                try await collection.add(jwk: jwk)
                // Builds the key's verifier now, so a malformed key fails the load, not a request.
                let kid = jwk.keyIdentifier!.string
                _ = try await collection.getKey(for: jwk.keyIdentifier, alg: algorithmByKid[kid])
            }
        } catch {
            throw invalid("a key cannot be used: \(error)")
        }
        return JWKSKeySet(keys: collection, algorithmByKid: algorithmByKid)
    }
}
