// nginx as a throwaway process in front of test instances, run from a configuration the test
// derives from the documented one (docs/nginx.conf): only the listening port, the upstream
// servers, the log paths and the per-address rate are replaced, so what the documentation shows
// is what the tests exercise. Never the system service: its own prefix, pid and logs in a
// temporary directory, `daemon off`, a free port.
import Foundation
import Synchronization

public final class Nginx: Sendable {
    public let port: Int
    public let directory: URL
    private let process: Process

    public static let executable = Subprocess.find(["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"])
    public var baseURL: URL { URL(string: "http://127.0.0.1:\(port)")! }
    public var accessLog: URL { directory.appendingPathComponent("access.log") }
    public var errorLog: URL { directory.appendingPathComponent("error.log") }

    private init(port: Int, directory: URL, process: Process) {
        self.port = port
        self.directory = directory
        self.process = process
    }

    public struct ConfigurationMismatch: Error, CustomStringConvertible {
        public var description: String
    }

    /// `documented` with what differs between a test and a host replaced. Each replacement must
    /// find what it replaces, so a changed documented file fails loudly instead of silently
    /// testing something else.
    /// - `listen 80;` → `listen 127.0.0.1:<port>;`
    /// - the `server 127.0.0.1:808N …;` lines of the upstream → one per `upstreamPorts`, with the
    ///   parameters of the first documented one (`max_fails`, `fail_timeout`);
    /// - `access_log <path>` and any `error_log <path>` → files in `directory`;
    /// - `rate=NNr/s` → `rate=<rate>r/s`: every test client comes from 127.0.0.1, the worst case
    ///   of many fans behind one address, so the documented per-address rate would throttle the
    ///   test's own load.
    public static func configuration(documented: String, listenPort: Int, upstreamPorts: [Int], directory: URL,
                                     rate: Int = 100_000) throws -> String {
        var text = documented
        func replace(_ pattern: String, _ what: String, _ transform: (NSTextCheckingResult, NSString) -> String) throws {
            let regex = try NSRegularExpression(pattern: pattern, options: [.anchorsMatchLines])
            let source = text as NSString
            let matches = regex.matches(in: text, range: NSRange(location: 0, length: source.length))
            guard !matches.isEmpty else { throw ConfigurationMismatch(description: "docs/nginx.conf has no \(what) (/\(pattern)/) to replace") }
            var result = text
            for (index, match) in matches.enumerated().reversed() {
                let replacement = index == 0 ? transform(match, source) : ""
                let range = Range(match.range, in: result)!
                result.replaceSubrange(range, with: replacement)
            }
            text = result
        }
        try replace(#"^([ \t]*)listen[ \t]+80;"#, "`listen 80;`") { match, source in
            source.substring(with: match.range(at: 1)) + "listen 127.0.0.1:\(listenPort);"
        }
        // All documented servers become ours: the first match is replaced by the full list, the
        // others (with their line breaks) are dropped.
        try replace(#"^([ \t]*)server[ \t]+127\.0\.0\.1:[0-9]+([^;\n]*);\n"#, "upstream `server 127.0.0.1:PORT …;` line") { match, source in
            let indent = source.substring(with: match.range(at: 1))
            let parameters = source.substring(with: match.range(at: 2))
            return upstreamPorts.map { "\(indent)server 127.0.0.1:\($0)\(parameters);\n" }.joined()
        }
        try replace(#"^([ \t]*)access_log[ \t]+[^ \t;]+"#, "`access_log PATH`") { match, source in
            source.substring(with: match.range(at: 1)) + "access_log " + directory.appendingPathComponent("access.log").path
        }
        if text.range(of: #"(?m)^[ \t]*error_log"#, options: .regularExpression) != nil {
            try replace(#"^([ \t]*)error_log[ \t]+[^ \t;]+"#, "`error_log PATH`") { match, source in
                source.substring(with: match.range(at: 1)) + "error_log " + directory.appendingPathComponent("error.log").path
            }
        }
        try replace(#"rate=[0-9]+r/s"#, "`rate=NNr/s`") { _, _ in "rate=\(rate)r/s" }
        return text
    }

    /// Writes `configuration` to a fresh directory, checks it with `nginx -t`, starts nginx in
    /// the foreground (`daemon off`) and waits until it accepts connections on `port`.
    public static func start(configuration: String, port: Int, directory: URL) async throws -> Nginx {
        guard let executable else { throw SubprocessFailure("nginx is not installed (scripts/services.sh installs nginx-light)") }
        let conf = directory.appendingPathComponent("nginx.conf")
        try configuration.write(to: conf, atomically: true, encoding: .utf8)
        let global = "daemon off; pid \(directory.appendingPathComponent("nginx.pid").path);"
        let arguments = [executable, "-p", directory.path + "/", "-c", conf.path,
                         "-e", directory.appendingPathComponent("error.log").path, "-g", global]
        try await Subprocess.run(arguments + ["-t", "-q"], log: directory.appendingPathComponent("nginx-t.log"), seconds: 30)
        let process = try Subprocess.start(arguments, log: directory.appendingPathComponent("stderr.log"))
        let nginx = Nginx(port: port, directory: directory, process: process)
        let up = await Subprocess.eventually(seconds: 30) { !process.isRunning || Subprocess.accepts(port: port) }
        guard up, process.isRunning else {
            await nginx.stop()
            throw SubprocessFailure("nginx did not start on port \(port)\(Subprocess.tail(of: directory.appendingPathComponent("error.log")))")
        }
        return nginx
    }

    /// SIGTERM (nginx's fast shutdown), SIGKILL if it lingers. The directory stays for a look at
    /// the logs; the caller removes it.
    public func stop() async {
        await Subprocess.stop(process, signal: SIGTERM, seconds: 10)
    }

    /// The lines of the access log (format `concertd` of docs/nginx.conf).
    public var accessLogLines: [String] {
        ((try? String(contentsOf: accessLog, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }
}
