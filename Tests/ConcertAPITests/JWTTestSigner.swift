import Crypto
import Foundation

/// Builds HS256 JWTs by hand from raw JSON.
enum JWTTestSigner {
    static func sign(payload: String, secret: String, header json: String = #"{"alg":"HS256","typ":"JWT"}"#) async throws -> String {
        func encode(_ data: Data) -> String {
            data.base64EncodedString().replacingOccurrences(of: "=", with: "")
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        }
        let header = encode(Data(json.utf8))
        let body = encode(Data(payload.utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(header).\(body)".utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return "\(header).\(body).\(encode(Data(mac)))"
    }
}
