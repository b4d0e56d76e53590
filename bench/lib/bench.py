#!/usr/bin/env python3
"""The benchmark driver behind bench/run: starts concertd per engine, seeds it through the admin
HTTP endpoints, prepares users (JWTs minted with the server's secret, queue tokens joined over
HTTP), runs each scenario with wrk + bench/wrk/*.lua, samples concertd's peak RSS and CPU, and
writes bench/results/latest.{md,csv,json}.

Environment (set by bench/run): BENCH_CONCERTD (release binary), BENCH_DB_TOOL (bench-db binary,
optional), CONCERT_TEST_POSTGRES_URL / CONCERT_TEST_REDIS_URL (optional: engines are skipped
without them).
"""
import argparse
import base64
import csv
import hashlib
import hmac
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench")
WRK_DIR = os.path.join(BENCH, "wrk")
RESULTS = os.path.join(BENCH, "results")
WORK = os.path.join(RESULTS, "work")
SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
PRICE = 50_000


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- JWTs and HTTP

def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(user, admin=False, ttl=4 * 3600):
    """An HS256 JWT exactly as `concertd token` makes it (checked against the server at start)."""
    header = _b64(b'{"alg":"HS256","typ":"JWT"}')
    role = ',"role":"admin"' if admin else ""
    payload = _b64(('{"sub":"%d","exp":%d%s}' % (user, int(time.time()) + ttl, role)).encode())
    signature = _b64(hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


_local = threading.local()


def call(port, method, path, body=None, token=None, queue=None):
    """One request on this thread's keep-alive connection: (status, parsed JSON or None)."""
    headers = {}
    if token:
        headers["Authorization"] = "Bearer " + token
    if queue:
        headers["Queue-Token"] = queue
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conns = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    for attempt in range(3):
        conn = conns.get(port)
        if conn is None:
            conn = conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            return response.status, parsed
        except (OSError, http.client.HTTPException):
            conns.pop(port, None)
            if attempt == 2:
                raise
            time.sleep(0.2)


def pmap(fn, items, workers=8):
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# ---------------------------------------------------------------- concertd

class Server:
    def __init__(self, binary, engine, database_url, redis_url=None, env=None, label=""):
        self.binary, self.engine, self.database_url, self.redis_url = binary, engine, database_url, redis_url
        self.env = env or {}
        self.label = label
        self.proc = None
        self.port = None

    def start(self):
        self.port = free_port()
        env = dict(os.environ)
        env.update({"CONCERT_JWT_SECRET": SECRET, "CONCERT_HOST": "127.0.0.1",
                    "CONCERT_WEBHOOK_RESOLVER": "loopback-only", "CONCERT_WEBHOOK_ALLOW_PRIVATE": "1"})
        env.update(self.env)
        args = [self.binary, "serve", "--port", str(self.port), "--database-url", self.database_url]
        if self.redis_url:
            args += ["--redis-url", self.redis_url]
        self.logfile = open(os.path.join(WORK, f"concertd-{self.engine}-{self.label}.log"), "w")
        self.proc = subprocess.Popen(args, env=env, stdout=self.logfile, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"concertd exited with {self.proc.returncode}; see {self.logfile.name}")
            try:
                if call(self.port, "GET", "/healthz")[0] == 200:
                    log(f"concertd ({self.engine}, {self.label}) pid {self.proc.pid} on port {self.port} {self.env}")
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("concertd did not answer /healthz within 60 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def status(self, key):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])  # kB
        return 0

    def reset_peak_rss(self):
        try:
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- seeding and users

def admin_token(binary):
    env = dict(os.environ, CONCERT_JWT_SECRET=SECRET)
    return subprocess.run([binary, "token", "--user", "1", "--admin", "--ttl", "14400"], env=env,
                          capture_output=True, text=True, check=True).stdout.strip()


def check_tokens(server, admin):
    """The admin token comes from `concertd token`; bulk user tokens are minted here the same way."""
    status, body = call(server.port, "GET", "/v1/points", token=mint(2))
    if status != 200:
        raise RuntimeError(f"a JWT minted by bench.py was refused: {status} {body}")
    status, body = call(server.port, "GET", "/v1/points", token=admin)
    if status != 200:
        raise RuntimeError(f"the `concertd token` JWT was refused: {status} {body}")


def create_concert(port, admin, title):
    now = time.time()
    status, body = call(port, "POST", "/v1/admin/concerts", {
        "title": title, "artist": "Bench Orchestra", "venue": "Loopback Hall",
        "bookingOpensAt": rfc3339(now - 86400), "bookingClosesAt": rfc3339(now + 180 * 86400)}, token=admin)
    assert status == 201, (status, body)
    return body["id"]


def create_schedule(port, admin, concert, seats=50, days=200):
    status, body = call(port, "POST", f"/v1/admin/concerts/{concert}/schedules", {
        "startsAt": rfc3339(time.time() + days * 86400), "price": PRICE, "seatCount": seats}, token=admin)
    assert status == 201, (status, body)
    return body["id"]


def seed_list(port, admin, count):
    def one(i):
        c = create_concert(port, admin, f"List concert {i}")
        create_schedule(port, admin, c)
        return c
    return pmap(one, range(count))


def join_users(port, concert, first_user, count, path):
    """Mints a JWT per user and joins the concert's queue; writes "userId jwt queueToken status"."""
    def one(user):
        token = mint(user)
        status, body = call(port, "POST", f"/v1/concerts/{concert}/queue/tokens", token=token)
        assert status in (200, 201), (status, body)
        return f"{user} {token} {body['token']} {body['status']}"
    lines = pmap(one, range(first_user, first_user + count))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return sum(1 for line in lines if line.endswith("WAITING"))


def write_flow_setup(port, admin, name, threads, schedules_each, first_user, users_each):
    concerts = []
    for t in range(threads):
        c = create_concert(port, admin, f"{name} {t}")
        ids = pmap(lambda _: create_schedule(port, admin, c), range(schedules_each))
        concerts.append(" ".join(str(x) for x in [c] + sorted(ids)))
    concerts_path = os.path.join(WORK, f"{name}-concerts.txt")
    users_path = os.path.join(WORK, f"{name}-users.txt")
    with open(concerts_path, "w") as f:
        f.write("\n".join(concerts) + "\n")
    with open(users_path, "w") as f:
        for u in range(first_user, first_user + threads * users_each):
            f.write(f"{u} {mint(u)}\n")
    return concerts_path, users_path


# ---------------------------------------------------------------- wrk

def run_wrk(port, script, threads, conns, duration, env_extra=None, path="/"):
    env = dict(os.environ, BENCH_WRK_DIR=WRK_DIR, BENCH_THREADS=str(threads), BENCH_CONNS=str(conns))
    env.update(env_extra or {})
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "5s",
           "-s", os.path.join(WRK_DIR, script), f"http://127.0.0.1:{port}{path}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary: {proc.stdout}\n{proc.stderr}")
    result = json.loads(line[len("BENCHJSON "):])
    result["wrk_cpu_pct"] = 100 * cpu / wall
    result["cmd"] = " ".join(cmd[:-2] + [os.path.basename(script), cmd[-1]])
    return result


class Bench:
    def __init__(self, args):
        self.args = args
        self.rows = []
        self.ceilings = {}
        self.notes = []
        self.concertd = os.environ["BENCH_CONCERTD"]
        self.tool = os.environ.get("BENCH_DB_TOOL")

    def scenario(self, name, engine, server, script, threads=2, conns=64, env=None, path="/",
                 expected=(200, 201, 204), ceiling=None, ops=None, duration=None, note=""):
        duration = duration or self.args.duration
        log(f"scenario {name} on {engine}: wrk -t{threads} -c{conns} -d{duration}s {script}")
        sampled = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    sampled[0] = max(sampled[0], server.status("VmRSS"))
                except OSError:
                    pass
                stop.wait(0.1)
        reset = server.reset_peak_rss()
        sampler = threading.Thread(target=sample)
        sampler.start()
        cpu0, t0, sys0 = server.cpu_seconds(), time.time(), machine_cpu()
        r = run_wrk(server.port, script, threads, conns, duration, env, path)
        cpu1, t1, sys1 = server.cpu_seconds(), time.time(), machine_cpu()
        stop.set()
        sampler.join()
        hwm = server.status("VmHWM") if reset else sampled[0]
        statuses = {int(k): v for k, v in r["statuses"].items()}
        unexpected = sum(v for k, v in statuses.items() if k not in expected)
        seconds = r["duration_us"] / 1e6
        counters = r["counters"]
        if ops == "payments" and counters.get("exhausted", 0) >= threads and "active_seconds" in counters:
            seconds = counters["active_seconds"]
        requests = r["requests"] - counters.get("filler", 0)
        row = {
            "scenario": name, "engine": engine,
            "requests_per_s": requests / seconds,
            "ops_per_s": (counters.get(ops, 0) / seconds) if ops else requests / seconds,
            "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000, "p999_ms": r["p999_us"] / 1000,
            "errors": r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"],
            "non2xx": sum(v for k, v in statuses.items() if k >= 300),
            "unexpected": unexpected,
            "fivexx": sum(v for k, v in statuses.items() if k >= 500),
            "ceiling": ceiling or "", "ratio": None,
            "peak_rss_mb": hwm / 1024,
            "server_cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
            "wrk_cpu_pct": r["wrk_cpu_pct"],
            "machine_busy_pct": 100 * (1 - (sys1[1] - sys0[1]) / max(1, sys1[0] - sys0[0])),
            "threads": threads, "conns": conns, "seconds": round(seconds, 2),
            "statuses": statuses, "counters": counters, "note": note, "cmd": r["cmd"],
        }
        self.rows.append(row)
        log(f"  -> {row['requests_per_s']:.0f} req/s, ops {row['ops_per_s']:.0f}/s, p50 {row['p50_ms']:.2f} ms, "
            f"p99 {row['p99_ms']:.2f} ms, statuses {statuses}, counters {counters}, rss {row['peak_rss_mb']:.1f} MB, "
            f"concertd cpu {row['server_cpu_pct']:.0f}%, wrk cpu {row['wrk_cpu_pct']:.0f}%, machine busy {row['machine_busy_pct']:.0f}%")
        return row

    # ------------------------------------------------------------ ceilings

    def static_ceiling(self):
        if not self.tool:
            return
        port = free_port()
        proc = subprocess.Popen([self.tool, "static-server", "--port", str(port), "--threads", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    if call(port, "GET", "/")[0] == 200:
                        break
                except OSError:
                    time.sleep(0.1)
            fake = Server(self.tool, "static", "")
            fake.proc, fake.port = proc, port
            row = self.scenario("static-server", "nio-1-thread", fake, "get.lua", env={"BENCH_PATH": "/"},
                                note="trivial SwiftNIO server (bench-db static-server): how fast wrk can go here")
            self.ceilings["static"] = row["requests_per_s"]
        finally:
            proc.terminate()
            proc.wait()

    def pg_update_ceiling(self, pg_admin_url):
        if not self.tool:
            self.notes.append("bench-db missing: no PostgreSQL single-UPDATE ceiling")
            return
        url = self.create_database(pg_admin_url, "bench_ceiling")
        for rows, key in ((200, "pg-update-200"), (1, "pg-update-1")):
            log(f"ceiling: bench-db update --rows {rows}")
            out = subprocess.run([self.tool, "update", "--url", url, "--connections", "20", "--tasks", "20",
                                  "--rows", str(rows), "--seconds", str(self.args.db_seconds)],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            log(f"  -> {r}")
            self.ceilings[key] = r["opsPerSec"]
            self.rows.append({
                "scenario": "single-row UPDATE" + (" (1 hot row)" if rows == 1 else " (random of 200 rows)"),
                "engine": "postgres", "requests_per_s": r["opsPerSec"], "ops_per_s": r["opsPerSec"],
                "p50_ms": r["p50Ms"], "p99_ms": r["p99Ms"], "p999_ms": r["p999Ms"], "errors": r["errors"],
                "non2xx": 0, "unexpected": 0, "fivexx": 0, "ceiling": "", "ratio": None, "peak_rss_mb": None,
                "server_cpu_pct": None, "wrk_cpu_pct": None, "machine_busy_pct": None, "threads": None, "conns": 20,
                "seconds": round(r["seconds"], 2), "statuses": {}, "counters": {}, "cmd": "bench-db update",
                "note": f"PostgresNIO pool of 20, 20 tasks, autocommit; sum check {r['sumMatches']}"})

    def create_database(self, pg_admin_url, name):
        subprocess.run(["psql", pg_admin_url, "-q", "-v", "ON_ERROR_STOP=1", "-c", f"DROP DATABASE IF EXISTS {name}",
                        "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
        return pg_admin_url.rsplit("/", 1)[0] + "/" + name

    # ------------------------------------------------------------ one engine

    def engine(self, engine, database_url, redis_url=None):
        d = self.args.duration
        base_env = {"CONCERT_QUEUE_IDLE_SECONDS": "3600", "CONCERT_QUEUE_ACTIVE_SECONDS": "3600"}
        users = self.args.users
        uid = {"sqlite": 0, "postgres": 1, "postgres+redis": 2}[engine] * 10_000_000 + 1_000_000

        # Server P: the default 200 ACTIVE per concert, so 10,000 joined users mostly WAIT; cache off.
        p = Server(self.concertd, engine, database_url, redis_url, dict(base_env, CONCERT_CACHE_TTL_MS="0"), "poll-nocache").start()
        try:
            admin = admin_token(self.concertd)
            check_tokens(p, admin)
            t = time.time()
            seed_list(p.port, admin, self.args.concerts)
            log(f"seeded {self.args.concerts} concerts with a schedule each in {time.time() - t:.1f} s")
            status, body = call(p.port, "GET", "/v1/concerts")
            assert status == 200 and len(body["concerts"]) == 100, (status, str(body)[:200])
            poll_concert = create_concert(p.port, admin, "Queue poll concert")
            create_schedule(p.port, admin, poll_concert)
            poll_users = os.path.join(WORK, f"{engine}-poll-users.txt")
            t = time.time()
            waiting = join_users(p.port, poll_concert, uid, users, poll_users)
            log(f"{users} users joined the queue in {time.time() - t:.1f} s; {waiting} WAITING")
            self.scenario("queue token polling", engine, p, "queue_poll.lua", env={"BENCH_USERS": poll_users},
                          ceiling="healthz", note=f"{users} users in line, {waiting} WAITING (RSS at 10,000 waiting users)")
            if engine != "postgres+redis":
                self.scenario("healthz", engine, p, "get.lua", env={"BENCH_PATH": "/healthz"},
                              note="HTTP stack ceiling")
                if engine == "sqlite":
                    self.scenario("healthz (wrk -t1)", engine, p, "get.lua", threads=1, env={"BENCH_PATH": "/healthz"},
                                  note="load-generator check: one wrk thread")
            self.scenario("concert list, cache off", engine, p, "get.lua", env={"BENCH_PATH": "/v1/concerts"},
                          ceiling="healthz", note=f"GET /v1/concerts (first page of 100) over {self.args.concerts} reservable concerts, CONCERT_CACHE_TTL_MS=0")
        finally:
            p.stop()

        # Server M: enough ACTIVE slots for every prepared user; the default 5 s cache.
        m = Server(self.concertd, engine, database_url, redis_url, dict(base_env, CONCERT_QUEUE_MAX_ACTIVE="200000"), "main").start()
        try:
            admin = admin_token(self.concertd)
            note = "GET /v1/concerts, default CONCERT_CACHE_TTL_MS=5000"
            if engine == "postgres":
                note += ("; PostgreSQL alone: bodies in process, checked against a generation row in PostgreSQL "
                         "on every read (so that every instance sees an invalidation at once)")
            self.scenario("concert list, cache on", engine, m, "get.lua", env={"BENCH_PATH": "/v1/concerts"},
                          ceiling="healthz", note=note)
            # Seat holds under contention: 10,000 users with ACTIVE tokens, 4 schedules x 50 seats.
            hold_concert = create_concert(m.port, admin, "Hold contention concert")
            schedules = [create_schedule(m.port, admin, hold_concert) for _ in range(4)]
            hold_users = os.path.join(WORK, f"{engine}-hold-users.txt")
            t = time.time()
            waiting = join_users(m.port, hold_concert, uid + 100_000, users, hold_users)
            log(f"{users} users joined the hold concert's queue in {time.time() - t:.1f} s; {waiting} WAITING")
            assert waiting == 0
            sched_env = {"BENCH_USERS": hold_users, "BENCH_SCHEDULES": " ".join(map(str, schedules)), "BENCH_SEATS": "50"}
            row = self.scenario("seat holds under contention", engine, m, "holds.lua", env=sched_env,
                                expected=(201, 409), ceiling="pg-update-200" if engine.startswith("postgres") else "healthz")
            with open(hold_users) as f:
                first = f.readline().split()
            held = 0
            for s in schedules:
                status, body = call(m.port, "GET", f"/v1/schedules/{s}/seats", token=first[1], queue=first[2])
                held += sum(1 for seat in body["seats"] if seat["status"] == "HELD")
            won = row["statuses"].get(201, 0)
            ok = won == 200 and held == 200 and row["fivexx"] == 0 and row["unexpected"] == 0 and row["errors"] == 0
            row["note"] = (f"{users} users, 4x50 seats: 201={won}, 409={row['statuses'].get(409, 0)}, "
                           f"5xx={row['fivexx']}, seat maps show {held} HELD -> {'OK' if ok else 'FAILED'}")
            log("  " + row["note"])
            self.scenario("seat map read", engine, m, "seat_map.lua", env=sched_env, ceiling="healthz",
                          note="GET /v1/schedules/{id}/seats, 50 seats, after the holds")

            # Full purchase flow: one connection per wrk thread, each on its own concert.
            ft = self.args.flow_threads
            concerts, flow_users = write_flow_setup(m.port, admin, f"{engine}-flow", ft, self.args.flow_schedules,
                                                    uid + 200_000, self.args.flow_users)
            self.scenario("purchase flow", engine, m, "flow.lua", threads=ft, conns=ft, ops="purchases",
                          env={"BENCH_FLOW_USERS": flow_users, "BENCH_FLOW_CONCERTS": concerts, "BENCH_FLOW_MODE": "full",
                               "BENCH_PRICE": str(PRICE)},
                          ceiling="pg-update-200" if engine.startswith("postgres") else "healthz",
                          note="join -> seat map -> hold -> charge -> pay per user; ops/s = purchases/s")
            # The purchase write path alone: hold -> charge -> pay for a fresh user who is already
            # admitted, each thread on a schedule of its own (no contention).
            wt = self.args.write_threads
            write_concert = create_concert(m.port, admin, "Write path concert")
            write_schedules = pmap(lambda _: create_schedule(m.port, admin, write_concert, seats=1000), range(wt))
            write_schedules_path = os.path.join(WORK, f"{engine}-write-schedules.txt")
            with open(write_schedules_path, "w") as f:
                f.write("\n".join(f"{s} 1000" for s in write_schedules) + "\n")
            write_users = os.path.join(WORK, f"{engine}-write-users.txt")
            t = time.time()
            join_users(m.port, write_concert, uid + 800_000, wt * 1000, write_users)
            log(f"{wt * 1000} users joined the write-path concert's queue in {time.time() - t:.1f} s")
            row = self.scenario("purchase write path", engine, m, "writes.lua", threads=wt, conns=wt, ops="purchases",
                                duration=min(d, 6),
                                env={"BENCH_WRITE_USERS": write_users, "BENCH_WRITE_SCHEDULES": write_schedules_path,
                                     "BENCH_PRICE": str(PRICE)},
                                ceiling="pg-update-200" if engine.startswith("postgres") else "healthz")
            row["note"] = (f"hold -> charge -> pay, a fresh admitted user each time, {wt} connections, no contention; "
                           f"ops/s = purchases/s; errors {row['counters'].get('write_errors', 0)}"
                           + ("; a thread ran out of seats" if row["counters"].get("exhausted") else ""))
            # Payments alone: holds and charges made beforehand by the same flow, stopped before paying.
            concerts, flow_users = write_flow_setup(m.port, admin, f"{engine}-payprep", ft, self.args.flow_schedules,
                                                    uid + 500_000, self.args.flow_users)
            out = os.path.join(WORK, f"{engine}-pay")
            for old in os.listdir(WORK):
                if old.startswith(f"{engine}-pay."):
                    os.remove(os.path.join(WORK, old))
            prep = self.scenario("payments: prepare holds + charges", engine, m, "flow.lua", threads=ft, conns=ft,
                                 ops="prepared", duration=self.args.prep_seconds,
                                 env={"BENCH_FLOW_USERS": flow_users, "BENCH_FLOW_CONCERTS": concerts,
                                      "BENCH_FLOW_MODE": "prep", "BENCH_OUT": out, "BENCH_PRICE": str(PRICE)},
                                 note="preparation for the next row (not a target)")
            pay_files = " ".join(os.path.join(WORK, f) for f in sorted(os.listdir(WORK)) if f.startswith(f"{engine}-pay."))
            row = self.scenario("payments alone", engine, m, "pay.lua", ops="payments", env={"BENCH_PAY_FILES": pay_files},
                                ceiling="pg-update-200" if engine.startswith("postgres") else "healthz")
            row["note"] = (f"{prep['counters'].get('prepared', 0)} prepared reservations; "
                           f"{row['counters'].get('payments', 0)} paid in {row['seconds']} s")
            if engine == "postgres" and self.args.explain:
                self.explain(database_url, schedules[0], first[0])
        finally:
            m.stop()

    def explain(self, database_url, schedule_id, user_id):
        log("EXPLAIN of the hot queries")
        path = os.path.join(RESULTS, "explain-postgres.txt")
        with open(path, "w") as f:
            subprocess.run(["psql", database_url, "-X", "-v", f"sid={schedule_id}", "-v", f"uid={user_id}",
                            "-f", os.path.join(BENCH, "lib", "explain.sql")], stdout=f, stderr=subprocess.STDOUT)

    # ------------------------------------------------------------ lock study

    def locks(self, pg_admin_url):
        if not self.tool:
            return
        url = self.create_database(pg_admin_url, "bench_locks")
        log("lock study: bench-db locks")
        path = os.path.join(RESULTS, "locks.jsonl")
        with open(path, "w") as f:
            proc = subprocess.run([self.tool, "locks", "--url", url, "--clients", "20", "--seconds", str(self.args.lock_seconds)],
                                  stdout=f, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            self.notes.append(f"lock study failed: {proc.stderr.strip()[:300]}")
        log(f"  -> {path}")

    # ------------------------------------------------------------ report

    def finish(self, started):
        for row in self.rows:
            key = row["ceiling"]
            if key == "healthz":
                key = "healthz-" + ("postgres" if row["engine"] == "postgres+redis" else row["engine"])
            value = self.ceilings.get(key)
            if value:
                row["ratio"] = row["ops_per_s"] / value
                row["ceiling"] = key
        self.notes.append("load average at the end: %.1f, %.1f, %.1f" % os.getloadavg())
        write_report(self.rows, self.notes, started, time.time())


def machine_cpu():
    """(total, idle) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values), values[3] + values[4]


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0] if shutil.which("wrk") else "?"
    pg = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip() if shutil.which("psql") else "?"
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split(" ")[2] if shutil.which("redis-server") else "?"
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory": mem, "kernel": platform.release(), "wrk": wrk,
            "postgres": pg, "redis": redis}


def fmt(value, digits=0):
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


COLUMNS = ["scenario", "engine", "requests_per_s", "ops_per_s", "p50_ms", "p99_ms", "p999_ms", "errors", "non2xx",
           "unexpected", "ceiling", "ratio", "peak_rss_mb", "server_cpu_pct", "wrk_cpu_pct", "machine_busy_pct", "threads", "conns", "seconds", "note"]


def write_report(rows, notes, started, ended):
    os.makedirs(RESULTS, exist_ok=True)
    info = machine()
    with open(os.path.join(RESULTS, "latest.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r.get(c) if not isinstance(r.get(c), float) else round(r.get(c), 3) for c in COLUMNS])
    with open(os.path.join(RESULTS, "latest.json"), "w") as f:
        json.dump({"machine": info, "rows": rows, "notes": notes, "started": started, "ended": ended}, f, indent=1)
    lines = [
        f"# concertd benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} RAM, Linux {info['kernel']}; "
        f"{info['wrk']}; {info['postgres']}; Redis {info['redis']}. Run took {(ended - started) / 60:.1f} min.",
        "",
        "| scenario | engine | req/s | ops/s | p50 ms | p99 ms | p99.9 ms | socket errors | non-2xx | unexpected | ceiling | ratio | peak RSS MB | concertd CPU % | wrk CPU % | machine busy % | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        ratio = f"{100 * r['ratio']:.0f}%" if r.get("ratio") else "–"
        lines.append("| " + " | ".join([
            r["scenario"], r["engine"], fmt(r["requests_per_s"]), fmt(r["ops_per_s"]), fmt(r["p50_ms"], 2),
            fmt(r["p99_ms"], 2), fmt(r["p999_ms"], 2), fmt(r["errors"]), fmt(r["non2xx"]), fmt(r["unexpected"]),
            r["ceiling"] or "–", ratio, fmt(r["peak_rss_mb"], 1), fmt(r["server_cpu_pct"]), fmt(r["wrk_cpu_pct"]),
            fmt(r.get("machine_busy_pct")), r.get("note", "").replace("|", "/")]) + " |")
    lines += ["", "Columns: req/s counts HTTP requests; ops/s counts the scenario's unit (purchases for the flow, "
              "paid payments, otherwise requests). Latencies are wrk's per-request percentiles. \"unexpected\" counts "
              "responses other than the scenario's expected statuses (holds expect 201 and 409). ratio = ops/s over "
              "the ceiling named (healthz-ENGINE: GET /healthz of the same build; pg-update-200: a single-row UPDATE "
              "through a 20-connection PostgresNIO pool, random of 200 rows). peak RSS = concertd's VmHWM during "
              "the scenario (reset through /proc/PID/clear_refs before each). CPU %: of one core (200% = both); machine busy %: "
              "all processes (concertd, wrk, PostgreSQL, Redis) over both cores."]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    locks = os.path.join(RESULTS, "locks.jsonl")
    if os.path.exists(locks):
        write_locks_table(locks)
    print("\n".join(lines))


def write_locks_table(path):
    rows = [json.loads(l) for l in open(path) if l.startswith("{")]
    names = {"a": "(a) arbitration (code)", "a2": "(a2) conditional UPDATE", "b": "(b) SELECT FOR UPDATE",
             "c": "(c) optimistic version", "d": "(d) naive read-then-write"}
    out = ["| workload | strategy | attempts/s | wins/s | p50 ms | p99 ms | retries | errors | correctness |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        workload = f"{r['kind']}, {'one row' if r['mode'] == 'one' else 'many rows'}"
        if r["kind"] == "holds":
            check = (f"{r['recordedWins']} wins recorded, {r['seatsWithTwoOrMoreWinners']} seats with 2+ winners"
                     + (f", {r['contestedSeatsWithoutWinner']} of {r['contestedSeats']} contested seats unwon" if r["mode"] == "one" else ""))
        else:
            check = (f"{r['acknowledgedPoints']} points acknowledged, {r['lostPoints']} lost, "
                     f"{r['walletsWhoseHistoryMismatches']} wallets != their history")
        out.append(f"| {workload} | {names[r['strategy']]} | {r['attemptsPerSec']:,.0f} | {r['winsPerSec']:,.0f} | "
                   f"{r['p50Ms']:.2f} | {r['p99Ms']:.2f} | {r['retries']} | {r['errors']} | {r['correct']}: {check} |")
    with open(os.path.join(RESULTS, "locks.md"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("\n".join(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--db-seconds", type=int, default=8)
    ap.add_argument("--lock-seconds", type=int, default=4)
    ap.add_argument("--prep-seconds", type=int, default=12)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--concerts", type=int, default=1000)
    ap.add_argument("--flow-threads", type=int, default=32)
    ap.add_argument("--flow-schedules", type=int, default=16)
    ap.add_argument("--flow-users", type=int, default=1000)
    ap.add_argument("--write-threads", type=int, default=16)
    ap.add_argument("--engines", default="sqlite,postgres,postgres+redis")
    ap.add_argument("--no-locks", dest="lock_study", action="store_false")
    ap.add_argument("--no-explain", dest="explain", action="store_false")
    args = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    started = time.time()
    bench = Bench(args)
    load = os.getloadavg()
    if load[0] > 1.0:
        bench.notes.append(f"the machine was not idle when the run started (load average {load[0]:.1f}, {load[1]:.1f}, "
                           f"{load[2]:.1f}): other work shares the 2 cores, so these numbers are low and noisy")
        log(f"warning: load average {load}")
    pg = os.environ.get("CONCERT_TEST_POSTGRES_URL")
    redis = os.environ.get("CONCERT_TEST_REDIS_URL")
    engines = args.engines.split(",")
    if pg:
        # Read off the server, not assumed: the headline is a durable PostgreSQL.
        settings = subprocess.run(["psql", pg, "-Atc", "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings "
                                   "WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes')"],
                                  capture_output=True, text=True).stdout.strip()
        bench.notes.append(f"PostgreSQL settings: {settings or 'unknown'}")
        log(f"PostgreSQL settings: {settings}")
    try:
        bench.static_ceiling()
        if pg:
            bench.pg_update_ceiling(pg)
        for engine in engines:
            if engine == "sqlite":
                db = os.path.join(WORK, "bench.sqlite")
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(db + suffix):
                        os.remove(db + suffix)
                url = "sqlite:" + db
                hz = None
            elif not pg or (engine == "postgres+redis" and not redis):
                bench.notes.append(f"{engine}: skipped (no server)")
                continue
            else:
                url = bench.create_database(pg, "bench_" + ("pg" if engine == "postgres" else "pgredis"))
            bench.engine(engine, url, redis if engine == "postgres+redis" else None)
            for row in bench.rows:
                if row["scenario"] == "healthz" and row["engine"] == engine:
                    bench.ceilings["healthz-" + engine] = row["requests_per_s"]
        if pg and args.lock_study:
            bench.locks(pg)
    finally:
        bench.finish(started)


if __name__ == "__main__":
    main()
