#!/usr/bin/env python3
"""Webhook delivery throughput and backlog drain time.

Starts `concertd serve` (CONCERTD, default .build-bench/release/concertd, else .build/debug/concertd)
on a throwaway SQLite file, or on PostgreSQL when DATABASE_URL=postgres://... is given (a database
of its own, which this script neither creates nor drops), with CONCERT_WEBHOOK_RESOLVER=loopback-only
and CONCERT_WEBHOOK_ALLOW_PRIVATE=1. It registers one webhook pointing at a threaded HTTP receiver on
127.0.0.1, writes EVENTS outbox events (default 10,000) at once by inserting them straight into
`webhook_events` (as the triggers would, one reservation id per event), and times until the receiver
has acknowledged every one of them. Prints one row: events, seconds, events/s, duplicates.

    bench/webhook-drain.py                         # SQLite, 10,000 events
    EVENTS=2000 DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench bench/webhook-drain.py

Loopback only: the receiver, concertd and the database are on this machine, and the resolver
setting forbids anything else.
"""
import http.server, json, os, re, socket, sqlite3, subprocess, sys, tempfile, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVENTS = int(os.environ.get("EVENTS", "10000"))
SECRET = "bench-secret-0123456789-abcdefghijklmnop"


def concertd_binary():
    if os.environ.get("CONCERTD"):
        return os.environ["CONCERTD"]
    for path in (".build-bench/release/concertd", ".build/release/concertd", ".build/debug/concertd"):
        if os.access(os.path.join(ROOT, path), os.X_OK):
            return os.path.join(ROOT, path)
    sys.exit("no concertd binary: build it, or set CONCERTD")


class Receiver(http.server.BaseHTTPRequestHandler):
    seen = {}
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with Receiver.lock:
            key = self.headers.get("webhook-id")
            Receiver.seen[key] = Receiver.seen.get(key, 0) + 1
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def token(admin):
    import base64, hashlib, hmac
    def b64(data): return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": "1", "exp": int(time.time()) + 3600, "iat": int(time.time())}
    if admin: claims["role"] = "admin"
    payload = b64(json.dumps(claims).encode())
    signature = b64(hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


class ReceiverServer(http.server.ThreadingHTTPServer):
    # The relay opens up to 32 connections at once; socketserver's default backlog of 5 would
    # drop SYNs and measure TCP's 1 s retransmit instead of the relay.
    request_queue_size = 1024
    daemon_threads = True


def main():
    receiver = ReceiverServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix="concertd-webhook-bench.")
    database = os.environ.get("DATABASE_URL") or "sqlite:" + os.path.join(work, "bench.sqlite")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCERT_")}
    env.update({"CONCERT_JWT_SECRET": SECRET, "CONCERT_WEBHOOK_RESOLVER": "loopback-only",
                "CONCERT_WEBHOOK_ALLOW_PRIVATE": "1", "LOG_LEVEL": "warning"})
    server = subprocess.Popen([concertd_binary(), "serve", "--host", "127.0.0.1", "--port", "0", "--database-url", database],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = None
        for line in server.stdout:
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if match:
                base = match.group(1)
                break
        if not base:
            sys.exit("concertd did not start")
        request = urllib.request.Request(base + "/v1/admin/webhooks", method="POST", data=json.dumps({
            "url": f"http://127.0.0.1:{receiver.server_port}/hook", "events": ["reservation.held"]}).encode(),
            headers={"Authorization": "Bearer " + token(True), "Content-Type": "application/json"})
        urllib.request.urlopen(request).read()
        rows = [("reservation.held", i + 1, json.dumps({"id": i + 1, "scheduleId": 1, "concertId": 1, "seatNumber": 1, "price": 0,
                 "status": "HELD", "heldUntil": 0, "createdAt": 0}), int(time.time() * 1000)) for i in range(EVENTS)]
        start = time.monotonic()
        if database.startswith("sqlite:"):
            db = sqlite3.connect(database[len("sqlite:"):], timeout=30)
            db.executemany("INSERT INTO webhook_events (type, reservation_id, data, occurred_at) VALUES (?, ?, ?, ?)", rows)
            db.commit()
        else:
            copy = "".join(f"{t}\t{r}\t{d}\t{o}\n" for t, r, d, o in rows)
            subprocess.run(["psql", "-q", database, "-c", "COPY webhook_events (type, reservation_id, data, occurred_at) FROM STDIN"],
                           input=copy, text=True, check=True)
        while True:
            with Receiver.lock:
                done = len(Receiver.seen)
            if done >= EVENTS or time.monotonic() - start > 600:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - start
        with Receiver.lock:
            duplicates = sum(n - 1 for n in Receiver.seen.values())
        engine = "sqlite" if database.startswith("sqlite:") else "postgres"
        print(f"| webhook backlog drain ({engine}) | {done} events | {elapsed:.2f} s | {done / elapsed:.0f} events/s | {duplicates} repeats |")
    finally:
        server.terminate()
        server.wait()
        receiver.shutdown()


if __name__ == "__main__":
    main()
