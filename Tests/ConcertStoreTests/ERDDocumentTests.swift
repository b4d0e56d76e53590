import ConcertPostgres
import ConcertSQLite
import ConcertTestSupport
import Foundation
import GRDB
import Logging
import PostgresNIO
import Testing

/// `docs/erd.md` against the schema the migrations really build, on each engine.
///
/// The document describes a table under a heading that is the table's name in backticks
/// (`` ### `reservations` ``), optionally followed by a parenthesis; "(PostgreSQL only)" or
/// "(SQLite only)" marks a table that one engine does not have. The first Markdown table in that
/// section whose header starts with `column` lists the columns, one `` `name` `` per row. The
/// Mermaid `erDiagram` has one entity per table, with one attribute line (`TYPE name ...`) per
/// column.
///
/// The test fails when the migrated database has a table or column the document does not name
/// (in its section and in the diagram), and when the document names a table or a column that the
/// database does not have.
@Suite("ERD document")
struct ERDDocumentTests {
    @Test("docs/erd.md names every table and column of the migrated schema, and nothing else",
          arguments: Engine.available)
    func erdMatchesMigrations(engine: Engine) async throws {
        let document = try ERDDocument.load()
        let schema: [String: [String]]
        switch engine {
        case .sqlite: schema = try await MigratedSchema.sqlite()
        case .postgres: schema = try await MigratedSchema.postgres()
        }
        #expect(!schema.isEmpty, "the migrated \(engine.rawValue) database has no tables")
        let problems = document.disagreements(with: schema, engine: engine)
        #expect(problems.isEmpty, """
            docs/erd.md and the \(engine.rawValue) migrations disagree:
            \(problems.map { "- " + $0 }.joined(separator: "\n"))
            """)
    }

    @Test("the ERD document's own structure is readable")
    func documentStructure() throws {
        let document = try ERDDocument.load()
        #expect(document.tables.count >= 7, "expected a table heading per table, found \(document.tables.map(\.name))")
        #expect(!document.diagramEntities.isEmpty, "no Mermaid erDiagram entities found")
        for table in document.tables {
            #expect(!table.columns.isEmpty, "the section of `\(table.name)` has no column table")
        }
    }
}

// MARK: - The migrated schema

enum MigratedSchema {
    /// Table name → column names, of a fresh SQLite file migrated by `SQLiteConcertStore`.
    /// SQLite's own tables (`sqlite_sequence`) and GRDB's bookkeeping (`grdb_migrations`) are left out.
    static func sqlite() async throws -> [String: [String]] {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("concert-erd-\(UUID().uuidString).sqlite").path
        defer {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
        let store = try SQLiteConcertStore(path: path)
        try await store.migrate()
        let queue = try DatabaseQueue(path: path)
        return try await queue.read { db in
            let tables = try String.fetchAll(db, sql: """
                SELECT name FROM sqlite_master
                WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != 'grdb_migrations'
                """)
            var schema: [String: [String]] = [:]
            for table in tables {
                let quoted = "\"" + table.replacingOccurrences(of: "\"", with: "\"\"") + "\""
                schema[table] = try Row.fetchAll(db, sql: "PRAGMA table_info(\(quoted))").map { row in row["name"] as String }
            }
            return schema
        }
    }

    /// Table name → column names, of a fresh PostgreSQL database migrated by `PostgresConcertStore`,
    /// read from `information_schema` (schema `public`, base tables).
    static func postgres() async throws -> [String: [String]] {
        guard let adminURL = TestServices.postgresURL else {
            throw MissingService(description: "CONCERT_TEST_REQUIRE_SERVICES=1 but CONCERT_TEST_POSTGRES_URL is not set")
        }
        let database = try await TestDatabase.create(adminURL: adminURL)
        let outcome: Result<[String: [String]], any Error>
        do {
            let store = try PostgresConcertStore(url: database.url, logger: TestServices.logger)
            let run = Task { await store.run() }
            do {
                try await store.migrate()
                outcome = .success(try await read(database))
            } catch {
                outcome = .failure(error)
            }
            run.cancel()
            await run.value
        } catch {
            try? await database.drop()
            throw error
        }
        try await database.drop()
        return try outcome.get()
    }

    private static func read(_ database: TestDatabase) async throws -> [String: [String]] {
        let logger = TestServices.logger
        let configuration = PostgresConnection.Configuration(
            host: database.admin.host, port: database.admin.port, username: database.admin.username,
            password: database.admin.password, database: database.name, tls: .disable)
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 2, logger: logger)
        do {
            var schema: [String: [String]] = [:]
            let tables = try await connection.query("""
                SELECT table_name::text FROM information_schema.tables
                WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
                """, logger: logger)
            for try await table in tables.decode(String.self) { schema[table] = [] }
            let columns = try await connection.query("""
                SELECT table_name::text, column_name::text FROM information_schema.columns
                WHERE table_schema = 'public' ORDER BY table_name, ordinal_position
                """, logger: logger)
            for try await (table, column) in columns.decode((String, String).self) where schema[table] != nil {
                schema[table]!.append(column)
            }
            try await connection.close()
            return schema
        } catch {
            try? await connection.close()
            throw error
        }
    }
}

// MARK: - The document

struct ERDDocument {
    struct Table {
        var name: String
        /// Nil when both engines have it, else the one engine that does.
        var onlyIn: Engine?
        var columns: [String]
    }

    var tables: [Table]
    /// Entity name → attribute names, from the Mermaid erDiagram blocks.
    var diagramEntities: [String: [String]]

    /// `docs/erd.md` of the repository this test file belongs to (symlinks resolved, so a scratch
    /// package that links to the sources still finds the real document).
    static var url: URL {
        URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
            .deletingLastPathComponent() // ConcertStoreTests
            .deletingLastPathComponent() // Tests
            .deletingLastPathComponent() // the repository
            .appendingPathComponent("docs/erd.md")
    }

    static func load() throws -> ERDDocument {
        let text = try String(contentsOf: url, encoding: .utf8)
        return ERDDocument(markdown: text)
    }

    init(markdown: String) {
        let lines = markdown.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var tables: [Table] = []
        var entities: [String: [String]] = [:]
        var current: Int?            // index into `tables` of the section being read
        var columnTable: ColumnTableState = .notYet
        var inFence = false, inDiagram = false
        var entity: String?

        for line in lines {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("```") {
                if inFence {
                    inFence = false
                    inDiagram = false
                    entity = nil
                } else {
                    inFence = true
                    inDiagram = trimmed.dropFirst(3).trimmingCharacters(in: .whitespaces) == "mermaid"
                }
                continue
            }
            if inFence {
                guard inDiagram else { continue }
                if let name = entity {
                    if trimmed.hasPrefix("}") {
                        entity = nil
                    } else {
                        let words = trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" })
                        if words.count >= 2 { entities[name, default: []].append(String(words[1])) }
                    }
                } else if trimmed.hasSuffix("{"), !trimmed.contains("erDiagram") {
                    let name = trimmed.dropLast().trimmingCharacters(in: .whitespaces)
                    if Self.isIdentifier(name) {
                        entity = name
                        entities[name, default: []] = entities[name] ?? []
                    }
                }
                continue
            }
            if trimmed.hasPrefix("#") {
                if let (name, onlyIn) = Self.tableHeading(trimmed) {
                    tables.append(Table(name: name, onlyIn: onlyIn, columns: []))
                    current = tables.count - 1
                } else {
                    current = nil
                }
                columnTable = .notYet
                continue
            }
            guard let index = current else { continue }
            switch columnTable {
            case .notYet:
                if trimmed.hasPrefix("|"), Self.cells(trimmed).first?.lowercased() == "column" { columnTable = .reading }
            case .reading:
                guard trimmed.hasPrefix("|") else {
                    columnTable = .done
                    continue
                }
                guard let first = Self.cells(trimmed).first, !first.allSatisfy({ "-: ".contains($0) }) else { continue }
                let name = first.replacingOccurrences(of: "`", with: "").trimmingCharacters(in: .whitespaces)
                if Self.isIdentifier(name) { tables[index].columns.append(name) }
            case .done:
                break
            }
        }
        self.tables = tables
        self.diagramEntities = entities
    }

    private enum ColumnTableState { case notYet, reading, done }

    /// Everything that does not match between the document and `schema` (table → columns).
    func disagreements(with schema: [String: [String]], engine: Engine) -> [String] {
        var problems: [String] = []
        let documented = Dictionary(tables.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })

        for (table, columns) in schema.sorted(by: { $0.key < $1.key }) {
            guard let section = documented[table] else {
                problems.append("table `\(table)` has no heading (### `\(table)`)")
                continue
            }
            if section.onlyIn != nil && section.onlyIn != engine {
                problems.append("table `\(table)` exists in \(engine.rawValue) but its heading says it is \(section.onlyIn!.rawValue) only")
            }
            for column in columns where !section.columns.contains(column) {
                problems.append("column `\(table).\(column)` is missing from the column table of `\(table)`")
            }
            for column in section.columns where !columns.contains(column) {
                problems.append("column `\(table).\(column)` is documented but does not exist")
            }
            if let attributes = diagramEntities[table] {
                for column in columns where !attributes.contains(column) {
                    problems.append("column `\(table).\(column)` is missing from the erDiagram entity `\(table)`")
                }
                for attribute in attributes where !columns.contains(attribute) {
                    problems.append("the erDiagram entity `\(table)` has `\(attribute)`, which is not a column")
                }
            } else {
                problems.append("table `\(table)` has no entity in the Mermaid erDiagram")
            }
        }

        // The reverse: whatever the document presents as a table of this engine must exist.
        for table in tables where schema[table.name] == nil && (table.onlyIn == nil || table.onlyIn == engine) {
            problems.append("heading `\(table.name)` names a table that \(engine.rawValue) does not have")
        }
        for entity in diagramEntities.keys.sorted() where documented[entity] == nil {
            problems.append("the erDiagram entity `\(entity)` has no table heading")
        }
        return problems
    }

    /// `` ### `name` `` or `` ### `name` (PostgreSQL only) ``: the table name and the engine it is
    /// limited to, if any.
    static func tableHeading(_ line: String) -> (String, Engine?)? {
        let title = line.drop(while: { $0 == "#" }).trimmingCharacters(in: .whitespaces)
        guard title.hasPrefix("`") else { return nil }
        let rest = title.dropFirst()
        guard let close = rest.firstIndex(of: "`") else { return nil }
        let name = String(rest[..<close])
        let after = rest[rest.index(after: close)...].trimmingCharacters(in: .whitespaces)
        guard isIdentifier(name), after.isEmpty || after.hasPrefix("(") else { return nil }
        let note = after.lowercased()
        let onlyIn: Engine? = note.contains("postgresql only") ? .postgres : note.contains("sqlite only") ? .sqlite : nil
        return (name, onlyIn)
    }

    static func cells(_ row: String) -> [String] {
        var parts = row.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        if parts.first == "" { parts.removeFirst() }
        if parts.last == "" { parts.removeLast() }
        return parts
    }

    static func isIdentifier(_ text: String) -> Bool {
        func isLetter(_ c: Unicode.Scalar) -> Bool { (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_" }
        guard let first = text.unicodeScalars.first, isLetter(first) else { return false }
        return text.unicodeScalars.allSatisfy { isLetter($0) || ($0 >= "0" && $0 <= "9") }
    }
}
