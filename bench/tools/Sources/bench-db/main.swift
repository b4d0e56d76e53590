import Foundation

// bench-db update --url U [--connections 20] [--tasks 20] [--rows 1] [--seconds 10]
// bench-db locks  --url U [--clients 20] [--seconds 5] [--seats 20000] [--wallets 10000] [--only holds,charges-one-a]
// bench-db static-server [--port 18080] [--threads 1]
let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    FileHandle.standardError.write("usage: bench-db update|locks|static-server --flags\n".data(using: .utf8)!)
    exit(2)
}
let flags = Flags(arguments.dropFirst(2))
do {
    switch arguments[1] {
    case "update": try await runUpdateCeiling(flags)
    case "locks": try await runLockStudy(flags)
    case "static-server": try runStaticServer(flags)
    default: throw BenchError("unknown command \(arguments[1])")
    }
} catch {
    FileHandle.standardError.write("bench-db: \(error)\n".data(using: .utf8)!)
    exit(1)
}
