"""Seeds a fresh concertd for the fuzz run and writes the schemathesis config that points at it.

Usage: seed.py BASE_URL CONFIG_OUT   (environment: CONCERTD_BIN, CONCERT_JWT_SECRET)

Through the public API only, so the seeding itself is a small end-to-end test: an admin makes an
open concert with a future schedule and a closed concert; user 101 (the fuzzing user) pays for
one seat and holds another, and keeps an ACTIVE queue token; user 102 holds a seat and has points
(the payment operation runs as 102, whose token a successful payment ends); user 103 only holds an
ACTIVE token (the leave operation runs as 103, whose token leaving ends). Every other operation runs
as 101, the admin ones as the admin, so that a token ended by one operation does not turn every
later queue-protected request into a 401.

The config gives schemathesis those headers and, through dictionaries, the seeded ids: a path or
body id is a real object about half the time, so success paths run as well as not-found ones.
"""

import datetime
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

BASE, CONFIG_OUT = sys.argv[1], sys.argv[2]
CONCERTD = os.environ["CONCERTD_BIN"]
USER, PAYER, LEAVER, ADMIN = 101, 102, 103, 900


def token(user, admin=False):
    args = [CONCERTD, "token", "--user", str(user), "--ttl", "3600"] + (["--admin"] if admin else [])
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


JWT = {u: token(u) for u in (USER, PAYER, LEAVER)}
JWT[ADMIN] = token(ADMIN, admin=True)


def call(method, path, user, body=None, queue=None, expect=(200, 201)):
    headers = {"Authorization": "Bearer " + JWT[user], "Content-Type": "application/json"}
    if queue:
        headers["Queue-Token"] = queue
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            status, text = reply.status, reply.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    if status not in expect:
        sys.exit(f"seed: {method} {path} answered {status}: {text[:300]!r}")
    return json.loads(text) if text else None


def at(delta):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return (now + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


day = datetime.timedelta(days=1)
concert = call("POST", "/v1/admin/concerts", ADMIN, {
    "title": "Fuzz Night", "artist": "The Property Testers", "venue": "Loopback Hall",
    "bookingOpensAt": at(-day), "bookingClosesAt": at(30 * day)})["id"]
closed = call("POST", "/v1/admin/concerts", ADMIN, {
    "title": "Last Year", "artist": "The Property Testers", "venue": "Loopback Hall",
    "bookingOpensAt": at(-3 * day), "bookingClosesAt": at(-2 * day)})["id"]
schedule = call("POST", f"/v1/admin/concerts/{concert}/schedules", ADMIN,
                {"startsAt": at(40 * day), "price": 1000, "seatCount": 50})["id"]


def active_token(user):
    ticket = call("POST", f"/v1/concerts/{concert}/queue/tokens", user)
    if ticket["status"] != "ACTIVE":
        sys.exit(f"seed: user {user}'s queue token is {ticket['status']}, not ACTIVE")
    return ticket["token"]


def hold(user, queue, seat):
    return call("POST", "/v1/reservations", user, {"scheduleId": schedule, "seatNumber": seat}, queue)["id"]


queue = active_token(USER)
call("POST", "/v1/points/charges", USER, {"amount": 100000})
paid = hold(USER, queue, 1)
payment = call("POST", "/v1/payments", USER, {"reservationId": paid}, queue)["id"]
queue = active_token(USER)  # paying ended the first one
held = hold(USER, queue, 2)

payer_queue = active_token(PAYER)
call("POST", "/v1/points/charges", PAYER, {"amount": 100000})
payer_held = hold(PAYER, payer_queue, 3)
leaver_queue = active_token(LEAVER)


def toml(value):
    return json.dumps(value)  # a JSON string or list of numbers is valid TOML


def headers(user, queue_token):
    return "{ Authorization = %s, Queue-Token = %s }" % (toml("Bearer " + JWT[user]), toml(queue_token))


config = f"""# Written by tests/fuzz/seed.py for one run; not kept.
headers = {headers(USER, queue)}

[dictionaries]
concerts = {{ values = {toml([concert, closed])} }}
schedules = {{ values = {toml([schedule])} }}
reservations = {{ values = {toml([held, paid])} }}
payments = {{ values = {toml([payment])} }}
payer-reservations = {{ values = {toml([payer_held])} }}

[parameters]
"path.concertId" = {{ dictionary = "concerts", probability = 0.5 }}
"path.scheduleId" = {{ dictionary = "schedules", probability = 0.5 }}
"path.reservationId" = {{ dictionary = "reservations", probability = 0.5 }}
"path.paymentId" = {{ dictionary = "payments", probability = 0.5 }}
"body.scheduleId" = {{ dictionary = "schedules", probability = 0.5 }}
"body.reservationId" = {{ dictionary = "reservations", probability = 0.5 }}

[[operations]]
include-tag = "Administration"
headers = {{ Authorization = {toml("Bearer " + JWT[ADMIN])} }}

[[operations]]
include-operation-id = "payReservation"
headers = {headers(PAYER, payer_queue)}
parameters = {{ "body.reservationId" = {{ dictionary = "payer-reservations", probability = 0.5 }} }}

[[operations]]
include-operation-id = "leaveQueue"
headers = {headers(LEAVER, leaver_queue)}
"""
with open(CONFIG_OUT, "w") as out:
    out.write(config)
print(f"seed: concert {concert} (closed {closed}), schedule {schedule}, reservations {held} {paid} {payer_held}, payment {payment}")
