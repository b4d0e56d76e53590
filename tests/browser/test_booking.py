"""Browser test of the web page served by concertd.

Starts a real `concertd serve --dev` on a free port with a throwaway SQLite file, drives headless
Chromium through the page with Selenium, and checks what the page shows at each step: a fan signs
in, waits in line, picks a date and a seat, holds it, fails to pay without points, charges points,
pays, finds the reservation CONFIRMED and refunds it (from what the API says alone, as for a seat
paid in another browser); an operator creates a concert and a date
(surviving a network drop), watches its live counts and cancels the date; an operator opens a
pre-queue and pauses and resumes admission, and a fan waits in it and checks the draw.
Screenshots of the main pages go to docs/screenshots/.

Settings (environment): CONCERTD_BIN (default .build/debug/concertd), CHROMIUM_BIN
(default /usr/bin/chromium), CHROMEDRIVER_BIN (default /usr/bin/chromedriver),
SCREENSHOT_DIR (default docs/screenshots).
"""

import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONCERTD = os.environ.get("CONCERTD_BIN", os.path.join(ROOT, ".build", "debug", "concertd"))
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
SHOTS = os.environ.get("SCREENSHOT_DIR", os.path.join(ROOT, "docs", "screenshots"))
WAIT = 15  # seconds any one step may take


# ---- the server ---------------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self):
        if not os.access(CONCERTD, os.X_OK):
            pytest.fail(f"concertd binary not found at {CONCERTD} (build it, or set CONCERTD_BIN)")
        self.dir = tempfile.mkdtemp(prefix="concertd-browser-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONCERT_")}
        # One ACTIVE place per concert, so the test can watch the page wait in line.
        env["CONCERT_QUEUE_MAX_ACTIVE"] = "1"
        # Webhook hosts are never looked up and deliveries never leave loopback.
        env["CONCERT_WEBHOOK_RESOLVER"] = "loopback-only"
        self.log = open(os.path.join(self.dir, "concertd.log"), "wb")
        self.process = subprocess.Popen(
            [CONCERTD, "serve", "--dev", "--host", "127.0.0.1", "--port", str(self.port),
             "--database-url", "sqlite:" + os.path.join(self.dir, "concert.sqlite")],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=self.dir)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                pytest.fail("concertd exited at start:\n" + self.tail())
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("concertd did not answer /healthz within 30 s:\n" + self.tail())
            time.sleep(0.1)

    def tail(self):
        self.log.flush()
        with open(os.path.join(self.dir, "concertd.log"), "rb") as f:
            return f.read()[-4000:].decode("utf-8", "replace")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def api(self, method, path, token=None, queue=None, body=None, key=None):
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = "Bearer " + token
        if queue:
            headers["Queue-Token"] = queue
        if key:
            headers["Idempotency-Key"] = key
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                text = r.read()
                return r.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            text = e.read()
            return e.code, (json.loads(text) if text else None)

    def token(self, user, admin=False):
        status, body = self.api("POST", "/dev/token", body={"userId": user, "admin": admin})
        assert status == 200, body
        return body["token"]

    def active_ticket(self, token, concert_id):
        """Joins the line and waits (at most 5 s) until the place is ACTIVE."""
        status, ticket = self.api("POST", f"/v1/concerts/{concert_id}/queue/tokens", token=token)
        assert status in (200, 201), ticket
        deadline = time.monotonic() + 5
        while ticket["status"] != "ACTIVE":
            assert time.monotonic() < deadline, f"never became ACTIVE: {ticket}"
            time.sleep(0.2)
            status, ticket = self.api("GET", "/v1/queue/tokens/current", token=token, queue=ticket["token"])
            assert status == 200, ticket
        return ticket["token"]


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


# ---- the browser --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def driver():
    if not os.access(CHROMEDRIVER, os.X_OK):
        pytest.fail(f"chromedriver not found at {CHROMEDRIVER} (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1000,800", "--lang=en-US", "--disable-extensions", "--no-first-run",
                "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    d.set_page_load_timeout(20)
    # A viewport of exactly 1000x800 for the screenshots.
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 1000, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    yield d
    d.quit()


def wait(d, timeout=WAIT):
    return WebDriverWait(d, timeout, poll_frequency=0.1)


def shot(d, name):
    """Saves a screenshot of the viewport to docs/screenshots/NAME.png, palette-compressed when Pillow is there."""
    os.makedirs(SHOTS, exist_ok=True)
    path = os.path.join(SHOTS, name + ".png")
    d.execute_script("window.scrollTo(0, 0); if (document.activeElement) document.activeElement.blur();")
    d.save_screenshot(path)
    try:
        from PIL import Image
        with Image.open(path) as image:
            small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        small.save(path, optimize=True)
    except ImportError:
        pass


def visible(d, css, timeout=WAIT):
    try:
        return wait(d, timeout).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))
    except TimeoutException:
        raise AssertionError(f"{css!r} did not show within {timeout} s; the page shows:\n{page_text(d)}") from None


def page_text(d):
    try:
        return d.find_element(By.ID, "view").text
    except Exception:  # noqa: BLE001 - only for a failure message
        return "(no page)"


def text_in(d, css, text, timeout=WAIT):
    """Waits until some element matching css contains text; returns it."""
    def found(d):
        for element in d.find_elements(By.CSS_SELECTOR, css):
            try:
                if text in element.text:
                    return element
            except StaleElementReferenceException:
                pass
        return False
    try:
        return wait(d, timeout).until(found)
    except TimeoutException:
        raise AssertionError(f"no {css!r} showed {text!r} within {timeout} s; the page shows:\n{page_text(d)}") from None


def csp_violations(d):
    return [e["message"] for e in d.get_log("browser")
            if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]


def go(d, server, hash_):
    d.get(server.base + "/" + hash_)


def sign_in(d, server, user, admin=False):
    go(d, server, "#/signin")
    field = visible(d, "#dev-user")
    field.clear()
    field.send_keys(str(user))
    box = d.find_element(By.ID, "dev-admin")
    if box.is_selected() != admin:
        box.click()
    d.find_element(By.CSS_SELECTOR, "[data-action=dev-signin]").click()
    who = "operator (user %d)" % user if admin else "user %d" % user
    text_in(d, "#session-who", "Signed in as " + who)


def set_datetime_local(d, element, value):
    """datetime-local inputs take their value from script (typing into them depends on the locale)."""
    d.execute_script(
        "arguments[0].value = arguments[1];"
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));", element, value)


# ---- the tests ----------------------------------------------------------------------------

def test_fan_books_and_pays_a_seat(server, driver):
    d = driver
    # Another fan (98) holds seat 3 and buys seat 4 of the first date, so the map shows all colours.
    t98 = server.token(98)
    q98 = server.active_ticket(t98, 1)
    status, body = server.api("GET", "/v1/concerts/1/schedules", token=t98, queue=q98)
    assert status == 200, body
    first = body["schedules"][0]
    for seat in (3, 4):
        status, body = server.api("POST", "/v1/reservations", token=t98, queue=q98,
                                  body={"scheduleId": first["id"], "seatNumber": seat})
        assert status == 201, body
        sold = body["id"]
    assert server.api("POST", "/v1/points/charges", token=t98, body={"amount": 50000}, key="t98-c")[0] == 200
    assert server.api("POST", "/v1/payments", token=t98, queue=q98, body={"reservationId": sold}, key="t98-p")[0] == 201
    # Fan 99 takes the only ACTIVE place and fans 97 and 96 wait, so our fan is third in line.
    t99 = server.token(99)
    q99 = server.active_ticket(t99, 1)
    waiting = []
    for user in (97, 96):
        t = server.token(user)
        status, ticket = server.api("POST", "/v1/concerts/1/queue/tokens", token=t)
        assert status == 201 and ticket["status"] == "WAITING", ticket
        waiting.append((t, ticket["token"]))

    # Sign in with the dev form.
    go(d, server, "#/signin")
    visible(d, "#dev-user")
    assert d.find_element(By.CSS_SELECTOR, "label[for=dev-user]").text == "User id"
    shot(d, "sign-in")
    sign_in(d, server, 7)

    # The reservable concerts.
    go(d, server, "#/concerts")
    wait(d).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".concert-card")) == 3)
    cards = d.find_elements(By.CSS_SELECTOR, ".concert-card")
    assert [c.find_element(By.CSS_SELECTOR, "h2").text for c in cards] == \
        ["Winter Lights", "Midnight City Tour", "Symphony No. 9"]
    shot(d, "concerts")

    # Join the line: WAITING, two ahead, an estimated wait.
    cards[0].find_element(By.CSS_SELECTOR, "[data-action=join]").click()
    box = visible(d, ".line-box[data-queue-status=WAITING]")
    text_in(d, ".line-box", "2 people ahead of you.")
    assert re.search(r"Estimated wait: (a few seconds|about \d+ (seconds|minutes?))", box.text), box.text
    text_in(d, "#view h1", "Winter Lights")
    shot(d, "waiting-room")

    # The position follows the line by itself.
    assert server.api("DELETE", "/v1/queue/tokens/current", token=waiting[0][0], queue=waiting[0][1])[0] == 204
    text_in(d, ".line-box", "1 person ahead of you.")
    assert server.api("DELETE", "/v1/queue/tokens/current", token=waiting[1][0], queue=waiting[1][1])[0] == 204
    text_in(d, ".line-box", "You're next.")

    # Fan 99 leaves: the page notices by itself and shows the dates.
    assert server.api("DELETE", "/v1/queue/tokens/current", token=t99, queue=q99)[0] == 204
    visible(d, ".line-box[data-queue-status=ACTIVE]", timeout=20)
    text_in(d, ".line-box", "It's your turn")
    wait(d).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".date-item")) == 2)
    first_date = d.find_element(By.CSS_SELECTOR, f".date-item[data-schedule-id='{first['id']}']")
    assert "48 of 50 seats left" in first_date.text
    assert re.search(r"Your turn ends in \d+:\d\d", d.find_element(By.CSS_SELECTOR, ".line-box").text)
    shot(d, "dates")

    # The seat map: 50 seats, 3 held, 4 sold, the rest available, each its own colour.
    first_date.click()
    wait(d).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".seat[data-status]")) == 50)
    seat = lambda n: d.find_element(By.CSS_SELECTOR, f".seat[data-seat='{n}']")
    assert seat(3).get_attribute("data-status") == "HELD"
    assert seat(4).get_attribute("data-status") == "SOLD"
    assert seat(5).get_attribute("data-status") == "AVAILABLE"
    assert seat(3).get_attribute("aria-label") == "Seat 3, held by someone, 50,000 points"
    colours = {seat(n).value_of_css_property("background-color") for n in (3, 4, 5)}
    assert len(colours) == 3, colours
    # Keyboard: the first free seat is in the tab order; arrows move; Enter chooses.
    assert seat(1).get_attribute("tabindex") == "0"
    seat(1).send_keys(Keys.ARROW_RIGHT)
    wait(d).until(lambda d: d.switch_to.active_element.get_attribute("data-seat") == "2")
    for expected in ("3", "4", "5"):
        d.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)
        wait(d).until(lambda d: d.switch_to.active_element.get_attribute("data-seat") == expected)
    d.switch_to.active_element.send_keys(Keys.ENTER)
    wait(d).until(lambda d: seat(5).get_attribute("aria-pressed") == "true")
    hold = visible(d, "[data-action=hold]")
    assert hold.text == "Hold seat 5"
    assert "50,000 points" in d.find_element(By.CSS_SELECTOR, ".seat-panel").text
    shot(d, "seat-map")

    # Hold: the checkout shows the hold and a countdown to heldUntil.
    hold.click()
    wait(d).until(lambda d: re.search(r"#/checkout/\d+$", d.current_url))
    text_in(d, "[data-field=status]", "HELD")
    assert d.find_element(By.CSS_SELECTOR, "[data-field=seat]").text == "5"
    timer = visible(d, ".hold-timer")
    m = re.search(r"Your hold ends in (\d+):(\d\d)", timer.text)
    assert m and 240 <= int(m.group(1)) * 60 + int(m.group(2)) <= 300, timer.text
    text_in(d, "[data-field=balance]", "0 points")
    assert "You need 50,000 points more to pay." in d.find_element(By.CSS_SELECTOR, ".shortfall").text

    # The error path: paying without enough points shows a readable message; the hold stays.
    d.find_element(By.CSS_SELECTOR, "[data-action=pay]").click()
    error = visible(d, ".notice-error[data-code=INSUFFICIENT_POINTS]")
    assert error.text.startswith("Not enough points")
    assert "{" not in error.text and "problem" not in error.text
    assert d.find_element(By.CSS_SELECTOR, "[data-field=status]").text == "HELD"

    # Amounts the contract would refuse never leave the page.
    amount = d.find_element(By.ID, "checkout-amount")
    for bad, message in (("0", "between 1 and 10,000,000"), ("12.5", "whole number"), ("20000000", "between 1 and 10,000,000")):
        amount.clear()
        amount.send_keys(bad)
        d.find_element(By.CSS_SELECTOR, "[data-action=charge]").click()
        text_in(d, "#checkout-amount-error", message)
    assert d.find_element(By.CSS_SELECTOR, "[data-field=balance]").text == "0 points"

    # Charge points, then pay.
    amount.clear()
    amount.send_keys("60,000")
    d.find_element(By.CSS_SELECTOR, "[data-action=charge]").click()
    text_in(d, ".notice-success", "Charged 60,000 points")
    text_in(d, "[data-field=balance]", "60,000 points")
    shot(d, "checkout")
    d.find_element(By.CSS_SELECTOR, "[data-action=pay]").click()
    text_in(d, ".notice-success", "Paid. Seat 5 is yours.")
    text_in(d, "#view", "Your balance is now 10,000 points.")
    assert d.find_element(By.CSS_SELECTOR, "[data-field=status]").text == "CONFIRMED"

    # My reservations: the seat is CONFIRMED.
    d.find_element(By.CSS_SELECTOR, "[data-nav=reservations]").click()
    row = visible(d, "tr[data-reservation-id]")
    assert "Winter Lights" in row.text or "Concert #1" in row.text
    assert row.find_element(By.CSS_SELECTOR, "[data-field=status]").text == "CONFIRMED"
    assert row.find_elements(By.TAG_NAME, "td")[2].text == "5"
    text_in(d, "tr[data-reservation-id]", "Winter Lights")
    shot(d, "reservations")

    # Points: balance and history (newest first).
    d.find_element(By.CSS_SELECTOR, "[data-nav=points]").click()
    text_in(d, "[data-field=balance]", "10,000 points")
    wait(d).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr[data-entry-type]")) == 2)
    types = [r.get_attribute("data-entry-type") for r in d.find_elements(By.CSS_SELECTOR, "tr[data-entry-type]")]
    assert types == ["PAYMENT", "CHARGE"]
    shot(d, "points")

    # A refund from My reservations, with a confirmation: the points come back, the seat is free.
    # The page keeps nothing of the payment: the reservation names it (paymentId), so a seat paid
    # in another browser or tab has its refund button too. Forget everything this tab kept but
    # the sign-in (`concertd.jwt`) to show it.
    d.execute_script("""
        for (const key of Object.keys(sessionStorage)) {
            if (key !== "concertd.jwt") sessionStorage.removeItem(key);
        }""")
    d.find_element(By.CSS_SELECTOR, "[data-nav=reservations]").click()
    visible(d, "tr[data-reservation-id] [data-action=open-refund]").click()
    visible(d, "[data-action=refund]").click()
    text_in(d, ".notice-warning", "Refund this payment?")
    visible(d, "[data-action=keep-seat]").click()
    wait(d).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-action=confirm-refund]"))
    d.find_element(By.CSS_SELECTOR, "[data-action=refund]").click()
    visible(d, "[data-action=confirm-refund]").click()
    text_in(d, ".notice-success", "Refunded 50,000 points. Your balance is now 60,000 points.")
    text_in(d, "[data-field=status]", "CANCELLED")
    d.find_element(By.CSS_SELECTOR, "[data-nav=points]").click()
    text_in(d, "[data-field=balance]", "60,000 points")
    wait(d).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr[data-entry-type]")) == 3)
    types = [r.get_attribute("data-entry-type") for r in d.find_elements(By.CSS_SELECTOR, "tr[data-entry-type]")]
    assert types == ["REFUND", "PAYMENT", "CHARGE"]

    assert csp_violations(d) == []


def test_operator_creates_a_concert_and_watches_its_counts(server, driver):
    d = driver
    sign_in(d, server, 1, admin=True)
    wait(d).until(lambda d: d.current_url.endswith("#/admin"))
    visible(d, "#nc-title")

    # Fill the new-concert form; a network drop keeps everything typed and offers a retry.
    d.find_element(By.ID, "nc-title").send_keys("Autumn Gala")
    d.find_element(By.ID, "nc-artist").send_keys("City Orchestra")
    d.find_element(By.ID, "nc-venue").send_keys("Riverside Hall")
    d.execute_cdp_cmd("Network.enable", {})
    d.execute_cdp_cmd("Network.emulateNetworkConditions",
                      {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    try:
        d.find_element(By.CSS_SELECTOR, "[data-action=create-concert]").click()
        error = visible(d, "form .notice-error[data-code=NETWORK]")
        assert "couldn't reach the server" in error.text
        assert d.find_element(By.ID, "nc-title").get_attribute("value") == "Autumn Gala"
        assert d.find_element(By.ID, "nc-venue").get_attribute("value") == "Riverside Hall"
    finally:
        d.execute_cdp_cmd("Network.emulateNetworkConditions",
                          {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    error.find_element(By.XPATH, ".//button[normalize-space()='Try again']").click()
    created = text_in(d, "[aria-labelledby=nc-heading] .notice-success", "Created concert #")
    concert_id = re.search(r"#(\d+)", created.text).group(1)
    assert Select(d.find_element(By.ID, "ns-concert")).first_selected_option.get_attribute("value") == concert_id

    # Its date: in 20 days at 19:00 local time, 20 seats at 1,000 points.
    starts = (datetime.datetime.now() + datetime.timedelta(days=20)).replace(hour=19, minute=0, second=0, microsecond=0)
    set_datetime_local(d, d.find_element(By.ID, "ns-starts"), starts.strftime("%Y-%m-%dT%H:%M"))
    price = d.find_element(By.ID, "ns-price")
    price.clear()
    price.send_keys("-5")
    seats = d.find_element(By.ID, "ns-seats")
    seats.clear()
    seats.send_keys("20")
    d.find_element(By.CSS_SELECTOR, "[data-action=create-schedule]").click()
    text_in(d, "#ns-price-error", "whole number")
    price.clear()
    price.send_keys("1000")
    d.find_element(By.CSS_SELECTOR, "[data-action=create-schedule]").click()
    text_in(d, "[aria-labelledby=ns-heading] .notice-success", "20 seats at 1,000 points")
    # The server got the UTC instant of that local time.
    status, concert = server.api("GET", f"/v1/concerts/{concert_id}")
    assert status == 200 and concert["reservable"] is True, concert

    # Live counts: the new concert's row, then a fan joins its line and the row follows.
    row = f"#stats-table tr[data-concert-id='{concert_id}']"
    text_in(d, row + " [data-stat=totalSeats]", "20")
    assert d.find_element(By.CSS_SELECTOR, row + " [data-stat=active]").text == "0"
    assert d.find_element(By.CSS_SELECTOR, row + " [data-stat=seatsSold]").text == "0"
    fan = server.token(55)
    status, ticket = server.api("POST", f"/v1/concerts/{concert_id}/queue/tokens", token=fan)
    assert status == 201, ticket
    text_in(d, row + " [data-stat=active]", "1", timeout=10)
    text_in(d, row + " [data-stat=free]", "20")
    # A demo concert's row too (two dates of 50 seats).
    text_in(d, "#stats-table tr[data-concert-id='1'] [data-stat=totalSeats]", "100")
    shot(d, "operator")

    # Cancel the new date: a confirmation first, then the date leaves the counts.
    status, listed = server.api("GET", f"/v1/concerts/{concert_id}/schedules", token=fan, queue=ticket["token"])
    assert status == 200 and len(listed["schedules"]) == 1, listed
    schedule_id = listed["schedules"][0]["id"]
    field = d.find_element(By.ID, "cs-schedule")
    field.send_keys("abc")
    d.find_element(By.CSS_SELECTOR, "[data-action=cancel-schedule]").click()
    text_in(d, "#cs-schedule-error", "whole number")
    field.clear()
    field.send_keys(str(schedule_id))
    d.find_element(By.CSS_SELECTOR, "[data-action=cancel-schedule]").click()
    text_in(d, "[aria-labelledby=cs-heading] .notice-warning", f"Cancel date #{schedule_id} for good?")
    d.find_element(By.CSS_SELECTOR, "[data-action=confirm-cancel-schedule]").click()
    text_in(d, "[aria-labelledby=cs-heading] .notice-success", f"Date #{schedule_id} is cancelled")
    text_in(d, row + " [data-stat=totalSeats]", "0", timeout=10)
    status, listed = server.api("GET", f"/v1/concerts/{concert_id}/schedules", token=fan, queue=ticket["token"])
    assert status == 200 and listed["schedules"] == [], listed
    assert csp_violations(d) == []


def test_operator_registers_and_removes_a_webhook(server, driver):
    d = driver
    sign_in(d, server, 1, admin=True)
    wait(d).until(lambda d: d.current_url.endswith("#/admin"))
    url = visible(d, "#wh-url")
    # A private address is refused on the page with the server's reason.
    url.send_keys("http://10.0.0.1/hook")
    d.find_element(By.CSS_SELECTOR, "[data-action=create-webhook]").click()
    text_in(d, "#wh-url-error", "private")
    # A name that resolves to nothing (loopback-only resolver) is accepted; the secret shows once.
    url.clear()
    url.send_keys("https://hooks.example/concertd")
    d.find_element(By.CSS_SELECTOR, "[data-action=create-webhook]").click()
    secret = visible(d, "[aria-labelledby=wh-heading] .notice-success code[data-secret]")
    assert secret.text.startswith("whsec_"), secret.text
    text_in(d, "#webhooks-table", "https://hooks.example/concertd")
    status, listed = server.api("GET", "/v1/admin/webhooks", token=server.token(1, admin=True))
    assert status == 200 and len(listed["webhooks"]) == 1, listed
    d.find_element(By.CSS_SELECTOR, "#webhooks-table [data-action=remove-webhook]").click()
    wait(d).until(lambda d: "hooks.example" not in d.find_element(By.ID, "webhooks-table").text)
    status, listed = server.api("GET", "/v1/admin/webhooks", token=server.token(1, admin=True))
    assert status == 200 and listed["webhooks"] == [], listed
    assert csp_violations(d) == []


def test_phone_width(server, driver):
    d = driver
    # Signing in by pasting a JWT (the way without --dev); a malformed one is refused on the page.
    go(d, server, "#/signin")
    field = visible(d, "#jwt")
    field.send_keys("not-a-token")
    d.find_element(By.CSS_SELECTOR, "[data-action=use-jwt]").click()
    text_in(d, "#jwt-error", "doesn't look like a JWT")
    field.clear()
    field.send_keys(server.token(2, admin=True))
    d.find_element(By.CSS_SELECTOR, "[data-action=use-jwt]").click()
    text_in(d, "#session-who", "Signed in as operator (user 2)")
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    try:
        go(d, server, "#/concerts")
        wait(d).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".concert-card")) >= 3)
        overflow = d.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a phone"
        # Labels on every input of the sign-in and operator pages.
        for page in ("#/signin", "#/admin"):
            go(d, server, page)
            visible(d, "#view form")
            unlabelled = d.execute_script(
                "return Array.from(document.querySelectorAll('#view input, #view select, #view textarea'))"
                ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id)")
            assert unlabelled == [], unlabelled
        go(d, server, "#/concerts")
        wait(d).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".concert-card")) >= 3)
        shot(d, "phone-concerts")
    finally:
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                          {"width": 1000, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    assert csp_violations(d) == []


def test_operator_opens_a_pre_queue_and_a_fan_checks_the_draw(server, driver):
    d = driver
    admin = server.token(1, admin=True)
    # A concert whose booking opens 25 s from now, with one date.
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    opens = now + datetime.timedelta(seconds=25)
    status, concert = server.api("POST", "/v1/admin/concerts", token=admin, body={
        "title": "Midnight Draw", "artist": "The Lotteries", "venue": "Hall 9",
        "bookingOpensAt": opens.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "bookingClosesAt": (now + datetime.timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert status == 201, concert
    concert_id = str(concert["id"])
    status, schedule = server.api("POST", f"/v1/admin/concerts/{concert_id}/schedules", token=admin, body={
        "startsAt": (now + datetime.timedelta(days=5)).strftime("%Y-%m-%dT%H:%M:%SZ"), "price": 100, "seatCount": 10})
    assert status == 201, schedule

    # The operator follows it and opens its pre-queue now (the minute's start, before the opening).
    sign_in(d, server, 1, admin=True)
    wait(d).until(lambda d: d.current_url.endswith("#/admin"))
    field = visible(d, "#watch-id")
    field.send_keys(concert_id)
    field.send_keys(Keys.ENTER)
    wait(d).until(lambda d: concert_id in d.execute_script(
        "return Array.from(document.querySelectorAll('#lc-concert option')).map(o => o.value)"))
    Select(d.find_element(By.ID, "lc-concert")).select_by_value(concert_id)
    max_field = d.find_element(By.ID, "lc-max")
    wait(d).until(lambda d: max_field.get_attribute("value") == "1")
    local_minute = datetime.datetime.now().replace(second=0, microsecond=0)
    set_datetime_local(d, d.find_element(By.ID, "lc-opens"), local_minute.strftime("%Y-%m-%dT%H:%M"))
    d.find_element(By.CSS_SELECTOR, "[data-action=save-policy]").click()
    text_in(d, "[aria-labelledby=lc-heading] .notice-success", "Saved")
    commitment = text_in(d, "[data-fact=commitment]", "").text
    status, draw = server.api("GET", f"/v1/concerts/{concert_id}/queue/draw")
    assert status == 200 and draw["commitment"] == commitment and draw["seed"] is None, draw
    text_in(d, "[data-fact=seed]", "secret until the draw")
    # Pause and resume from the page.
    d.find_element(By.CSS_SELECTOR, "[data-action=pause]").click()
    text_in(d, "[data-fact=state]", "Paused")
    d.find_element(By.CSS_SELECTOR, "[data-action=resume]").click()
    text_in(d, "[data-fact=state]", "Running")

    # A fan joins before the opening: the pre-queue, with the draw's time and its commitment.
    sign_in(d, server, 61)
    go(d, server, f"#/concert/{concert_id}")
    text_in(d, ".line-box h2", "pre-queue")
    text_in(d, ".line-box", "The draw happens at")
    details = visible(d, "[data-draw] summary")
    details.click()
    text_in(d, "[data-draw] .draw-commitment", commitment)
    shot(d, "pre-queue")

    # After the opening the pre-queue is drawn; the only entrant is admitted, and the page checks
    # the revealed seed against the commitment and shows the fan's own key.
    remaining = (opens - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    if remaining > 0:
        time.sleep(remaining)
    text_in(d, ".line-box h2", "your turn", timeout=30)
    visible(d, "[data-draw] summary").click()
    text_in(d, "[data-draw] .draw-ok", "matches the commitment")
    key = text_in(d, "[data-draw] .draw-key", "").text
    assert re.fullmatch(r"[0-9a-f]{64}", key), key
    status, draw = server.api("GET", f"/v1/concerts/{concert_id}/queue/draw")
    assert draw["entrants"] == 1 and draw["seed"], draw
    shot(d, "draw-check")
    assert csp_violations(d) == []
