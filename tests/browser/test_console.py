"""The live console in a real Chromium against a real Daphne: two operators, live updates, one-key
dispatch, socket drop and recovery, refused sockets, and screenshots of every view."""

import os
import re
import signal
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, daphne_server, login_page

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

TOLUCA = ("19.2826", "-99.6557")
# The server closes before accepting, so Daphne answers the handshake with HTTP 403: the browser never
# sees the socket open and reports 1006 (the 4403 close code is what ASGI test clients see).
WS_REFUSED = """async () => await new Promise((resolve) => {
    let opened = false;
    const ws = new WebSocket(`ws://${location.host}/ws/console/`);
    ws.onopen = () => { opened = true; };
    ws.onclose = (event) => resolve({opened, code: event.code});
    setTimeout(() => resolve({opened, code: "timeout"}), 5000);
})"""


def _handshake_status(base_url: str, cookies: list[dict]) -> int | None:
    """HTTP status of the websocket handshake, made with the browser context's cookies."""
    import websockets
    from websockets.sync.client import connect

    cookie = "; ".join(f"{c['name']}={c['value']}" for c in cookies)
    url = base_url.replace("http://", "ws://") + "/ws/console/"
    try:  # the sync client: Playwright's loop already runs in this thread
        with connect(url, additional_headers={"Cookie": cookie, "Origin": base_url}, open_timeout=5):
            return 101
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


def _open_console(page):
    page.goto("/console/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=10_000)
    page.wait_for_function("window.cadRealtime && window.cadRealtime.last.console !== null")


def _take_call(
    page,
    *,
    path="/console/intake/",
    search="accidente de vehiculo",
    narrative="Choque con lesionados",
    link_duplicate=False,
    where=(*TOLUCA, "Av. Independencia y Juárez, Toluca"),
    confirm_outside=False,
):
    """Take a call on the intake page by keyboard; `confirm_outside` confirms a point outside the centre's
    area when the intake asks (Alt+O). Returns the folio and when the call was registered."""
    page.goto(path)
    page.wait_for_function("window.cadIntakeReady === true")
    page.fill("#type-search", search)
    expect(page.locator("#type-list li").first).to_be_visible()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    expect(page.locator("#incident_type_code")).to_have_value(re.compile(r"^\d{5}$"))
    page.fill("#address", where[2])
    page.fill("#lat", where[0])
    page.fill("#lon", where[1])
    page.locator("#lon").dispatch_event("change")
    page.fill("#narrative", narrative)
    if page.locator("#caller_name").count():
        page.fill("#caller_name", "Juana Pérez")
        page.fill("#callback_number", "7221234567")
    if link_duplicate:  # the inline duplicate suggestion, taken with one key
        expect(page.locator("#duplicates")).to_be_visible(timeout=3_000)
        page.keyboard.press("Alt+v")
        expect(page.locator("#disposition")).to_have_value("linked")
    page.keyboard.press("Control+Enter")
    if confirm_outside:
        expect(page.locator("#form-error")).to_be_visible(timeout=5_000)
        page.keyboard.press("Alt+o")
    result = page.locator("#result")
    expect(result).to_be_visible()
    folio = result.get_attribute("data-folio")
    assert re.fullmatch(r"MEX-\d{4}-\d{6}", folio), folio
    return folio, time.monotonic()


def test_call_taker_creates_dispatcher_sees_it_live_assigns_with_one_key_and_drives_status(
    login, screenshot_dir
):
    taker = login("operador")
    assert taker.url.endswith("/console/intake/")  # home sends a call-taker to intake
    taker_console = taker.context.new_page()
    _open_console(taker_console)
    dispatcher = login("despachador")
    assert dispatcher.url.endswith("/console/")
    _open_console(dispatcher)

    folio, created_at = _take_call(taker)

    row = dispatcher.locator(f'#queue-body tr[data-folio="{folio}"]')
    expect(row).to_be_visible(timeout=1_000)  # live, within 1 s of the API answer
    seen_after = time.monotonic() - created_at
    assert seen_after < 1.0, seen_after
    dispatcher.wait_for_function(f"window.cadAlerts.includes('{folio}')")  # ALTA → audible + visual alert
    taker.screenshot(path=str(screenshot_dir / "intake-911.png"))
    expect(row.locator("time.timer")).to_have_text(re.compile(r"\d\d:\d\d"))

    row.focus()
    dispatcher.keyboard.press("Enter")
    expect(dispatcher.locator("#d-folio")).to_have_text(folio)
    expect(dispatcher.locator("#assign-top")).to_be_enabled(timeout=5_000)
    suggested = dispatcher.locator("#d-recs tr.suggested").first.get_attribute("data-unit")
    dispatcher.locator("#detail").focus()
    dispatcher.keyboard.press("a")

    assigned = dispatcher.locator(f'#d-assigned li.unit[data-unit="{suggested}"]')
    expect(assigned).to_have_attribute("data-status", "dispatched", timeout=5_000)
    # The other operator sees incident status and the unit board change live.
    taker_row = taker_console.locator(f'#queue-body tr[data-folio="{folio}"]')
    expect(taker_row.locator(".status-pill")).to_have_class(re.compile("st-dispatched"), timeout=2_000)
    taker_unit = taker_console.locator(f'#board-body li.unit[data-unit="{suggested}"]')
    expect(taker_unit).to_have_attribute("data-status", "dispatched", timeout=2_000)

    # En route by key (E on the focused unit), on scene by click.
    assigned.focus()
    dispatcher.keyboard.press("e")
    expect(taker_unit).to_have_attribute("data-status", "en_route", timeout=3_000)
    expect(taker_row.locator(".status-pill")).to_have_class(re.compile("st-en_route"), timeout=3_000)
    board_unit = dispatcher.locator(f'#board-body li.unit[data-unit="{suggested}"]')
    expect(board_unit).to_have_attribute("data-status", "en_route")
    board_unit.locator("summary").click()  # the status menu (⋯) of the board line
    board_unit.locator('button[data-to="on_scene"]').click()
    expect(taker_unit).to_have_attribute("data-status", "on_scene", timeout=3_000)
    expect(taker_row.locator(".status-pill")).to_have_class(re.compile("st-on_scene"), timeout=3_000)
    expect(dispatcher.locator("#d-status")).to_have_class(re.compile("st-on_scene"), timeout=3_000)
    expect(dispatcher.locator("#d-timeline li").first).to_contain_text("En el lugar")

    # A blank note is refused out loud (it used to be dropped without a word), then a note typed by the
    # dispatcher appears in the timeline.
    dispatcher.locator("#detail").focus()
    dispatcher.keyboard.press("n")
    dispatcher.keyboard.type("   ")
    dispatcher.keyboard.press("Enter")
    expect(dispatcher.locator("#banner")).to_have_text("Escriba el texto antes de enviar.")
    expect(dispatcher.locator("#note-text")).to_be_focused()
    # A pasted note over the limit is not cut by the field without a word: the server's reason is shown,
    # and the text stays in the field to be shortened.
    dispatcher.locator("#note-text").fill("Larga. " * 600)
    dispatcher.keyboard.press("Enter")
    expect(dispatcher.locator("#banner")).to_contain_text("4000 caracteres")
    expect(dispatcher.locator("#banner")).not_to_contain_text("campos marcados")  # no field is marked here
    expect(dispatcher.locator("#note-text")).to_have_value("Larga. " * 600)
    # A server error answered with an HTML page (ours, or a proxy's) is said in words, not as the page's source;
    # the text stays in the field.
    page_500 = "<!DOCTYPE html><html><head><title>Error del servidor</title></head><body>500</body></html>"
    notes = re.compile(r".*/api/v1/incidents/[^/]+/notes$")
    dispatcher.route(notes, lambda route: route.fulfill(status=500, body=page_500, content_type="text/html"))
    dispatcher.locator("#note-text").focus()
    dispatcher.keyboard.press("Control+a")
    dispatcher.keyboard.type("Se requiere grúa")
    dispatcher.keyboard.press("Enter")
    expect(dispatcher.locator("#banner")).to_contain_text(
        "Error del servidor (HTTP 500). Revise si se guardó"
    )
    expect(dispatcher.locator("#banner")).not_to_contain_text("DOCTYPE")
    expect(dispatcher.locator("#note-text")).to_have_value("Se requiere grúa")
    dispatcher.unroute(notes)
    dispatcher.locator("#note-text").focus()
    dispatcher.keyboard.press("Enter")
    expect(dispatcher.locator("#d-timeline")).to_contain_text("Se requiere grúa", timeout=3_000)

    # A reload reopens the incident the dispatcher had open (the URL names it).
    dispatcher.reload()
    expect(dispatcher.locator("#d-timeline")).to_contain_text("Se requiere grúa", timeout=10_000)

    dispatcher.screenshot(path=str(screenshot_dir / "console-queue-detail.png"))
    dispatcher.locator(".board").screenshot(path=str(screenshot_dir / "unit-board.png"))


def test_dropped_socket_reconnects_and_gets_every_missed_event_in_order_once(login, api_session):
    page = login("despachador2")
    _open_console(page)
    api = api_session("supervisor")
    # Something before the drop, so the page has a baseline seq > 0.
    first = api.post(
        "/api/v1/calls/",
        json={
            "line": "911",
            "disposition": "new_incident",
            "incident_type_code": "10104",
            "lat": 19.29,
            "lon": -99.66,
            "address": "Antes del corte",
        },
    )
    assert first.status_code == 201, first.text
    folio = first.json()["call"]["incident"]
    expect(page.locator(f'#queue-body tr[data-folio="{folio}"]')).to_be_visible(timeout=2_000)
    before = page.evaluate("window.cadRealtime.last.console")

    page.evaluate("window.cadRealtime.stop()")  # the socket drops and stays down
    expect(page.locator("#conn")).to_have_attribute("data-state", "closed")
    # The lost connection is said until it is over: a passing banner (a blank note refused) goes after 8 s and
    # gives the place back to it; it used to leave no banner at all.
    banner = page.locator("#banner")
    expect(banner).to_contain_text("Se perdió la conexión")
    page.locator(f'#queue-body tr[data-folio="{folio}"]').click()
    expect(page.locator("#detail")).to_contain_text(folio)  # its detail loaded (a slow host takes a while)
    page.locator("#detail").focus()
    page.keyboard.press("n")
    expect(page.locator("#note-text")).to_be_focused()
    page.keyboard.press("Enter")
    expect(banner).to_have_text("Escriba el texto antes de enviar.")
    expect(banner).to_contain_text("Se perdió la conexión", timeout=12_000)
    page.keyboard.press("Escape")
    missed = api.post(
        "/api/v1/calls/",
        json={
            "line": "089",
            "disposition": "new_incident",
            "incident_type_code": "10104",
            "lat": 19.60,
            "lon": -99.05,
            "address": "Durante el corte",
        },
    )
    assert missed.status_code == 201, missed.text
    missed_folio = missed.json()["call"]["incident"]
    for i in range(5):
        assert api.post(f"/api/v1/incidents/{folio}/notes", json={"text": f"nota {i}"}).status_code == 201

    probe = page.context.new_page()  # a fresh console learns the current seq from "hello"
    _open_console(probe)
    current = probe.evaluate("window.cadRealtime.last.console")
    assert current >= before + 7  # call + incident + 5 notes at least

    page.evaluate("window.cadRealtime.start()")
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=5_000)
    page.wait_for_function(f"window.cadRealtime.last.console >= {current}", timeout=5_000)
    log = page.evaluate("window.cadSeqLog.console")
    assert log == sorted(set(log)), log  # in order, once
    after_drop = [seq for seq in log if seq > before]
    assert after_drop[: current - before] == list(range(before + 1, current + 1))  # every missed one
    expect(page.locator(f'#queue-body tr[data-folio="{missed_folio}"]')).to_be_visible()


def test_unauthorised_sockets_are_refused(browser, cad_server, login):
    anonymous = browser.new_context(base_url=cad_server)
    try:
        page = anonymous.new_page()
        page.goto("/login/")
        assert page.evaluate(WS_REFUSED) == {"opened": False, "code": 1006}
        assert _handshake_status(cad_server, anonymous.cookies()) == 403
    finally:
        anonymous.close()
    device = login("avl-sesion")  # a device account that somehow has a password and a session
    assert any(c["name"] == "sessionid" for c in device.context.cookies())
    assert device.evaluate(WS_REFUSED) == {"opened": False, "code": 1006}
    assert _handshake_status(cad_server, device.context.cookies()) == 403
    assert device.request.get("/console/").status == 403
    # A dispatcher's session passes the same handshake.
    dispatcher = login("despachador")
    assert _handshake_status(cad_server, dispatcher.context.cookies()) == 101


def test_screenshots_of_login_and_089_intake_without_caller_fields(
    browser, cad_server, login, screenshot_dir
):
    context = browser.new_context(base_url=cad_server, viewport={"width": 1366, "height": 768})
    try:
        page = context.new_page()
        page.goto("/login/")
        expect(page.locator("#id_username")).to_be_focused()
        page.screenshot(path=str(screenshot_dir / "login.png"))
    finally:
        context.close()
    page = login("operador")
    page.goto("/console/intake/089/")
    page.wait_for_function("window.cadIntakeReady === true")
    html = page.content()
    for forbidden in ("caller_name", "callback_number", "Nombre", "Número de devolución"):
        assert forbidden not in html
    folio, _ = _take_call(
        page, path="/console/intake/089/", search="10104", narrative="Testigo anónimo", link_duplicate=True
    )
    expect(page.locator("#result")).to_contain_text("vinculada")
    assert page.locator("#result").get_attribute("data-folio") == folio
    assert page.locator("#incident").input_value() == ""  # the form is cleared for the next call
    assert page.locator("#caller_name").count() == 0
    page.screenshot(path=str(screenshot_dir / "intake-089.png"))


def test_the_console_holds_every_open_incident_past_one_page(login):
    """650 open incidents (the API pages at 500): the console follows the pages and shows them all."""
    page = login("despachador-masivo")
    _open_console(page)
    expect(page.locator("#queue-body tr")).to_have_count(650, timeout=15_000)


def test_the_console_says_when_it_is_no_longer_live_and_when_it_is_again(login):
    """The server's live_degraded / live_restored notices (Redis down and back, tests/console/test_faults.py):
    the connection badge and a banner that stays until live updates resume."""
    page = login("despachador2")
    _open_console(page)
    page.evaluate(
        """window.cadRealtime.onNotice({type: "notice", level: "warning", code: "live_degraded",
            message: "Tiempo real interrumpido: la consola se actualiza desde la base de datos cada 10 s."})"""
    )
    expect(page.locator("#conn")).to_have_attribute("data-state", "degraded")
    expect(page.locator("#conn")).to_have_text("En línea, sin tiempo real")
    banner = page.locator(".banner")
    expect(banner).to_contain_text("cada 10 s")
    page.wait_for_timeout(8_500)  # past a passing banner's 8 s: this one stays
    expect(banner).to_be_visible()
    page.evaluate(
        """window.cadRealtime.onNotice({type: "notice", level: "info", code: "live_restored",
            message: "Tiempo real restablecido."})"""
    )
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    expect(banner).to_be_hidden()


def test_an_intake_keeps_the_call_being_typed_when_the_session_ends_and_is_live_again_after_a_login(login):
    """The intake has a live socket now (its escalations follow their delivery). A session that ends elsewhere
    must not throw the half-typed call away by sending the page to the login form, as the console does."""
    taker = login("operador")
    expect(taker.locator("#conn")).to_have_attribute("data-state", "open", timeout=10_000)
    taker.fill("#narrative", "Choque en la esquina, dos lesionados")
    other = taker.context.new_page()  # the same session, in another tab
    other.goto("/console/intake/")
    other.locator("form[action='/logout/'] button[type=submit]").click()
    expect(taker.locator("#conn")).to_have_attribute("data-state", "ended", timeout=15_000)
    expect(taker.locator("#banner")).to_contain_text("Su sesión terminó")
    assert taker.url.endswith("/console/intake/")
    expect(taker.locator("#narrative")).to_have_value("Choque en la esquina, dos lesionados")
    taker.locator("#narrative").focus()
    taker.keyboard.press("Control+Enter")  # registering now is refused, and says what to do
    expect(taker.locator("#form-error")).to_contain_text("Inicie sesión en otra pestaña")
    expect(taker.locator("#narrative")).to_have_value("Choque en la esquina, dos lesionados")
    other.goto("/login/")
    other.fill("#id_username", "operador")
    other.fill("#id_password", PASSWORD)
    other.click("form[action='/login/'] button[type=submit]")
    expect(taker.locator("#conn")).to_have_attribute("data-state", "open", timeout=20_000)
    expect(taker.locator("#banner")).to_be_hidden()


def _daphne_pid(base_url: str) -> int:
    port = base_url.rsplit(":", 1)[1].encode()
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"daphne" in argv and port in argv:
            return int(entry.name)
    raise LookupError(f"no Daphne process on port {port.decode()}")


def test_a_frozen_server_is_said_within_seconds_and_the_console_comes_back(browser, cad_server_env):
    """SIGSTOP the web server (a wedged process, a dropped link): the socket stays half-open and its close
    event waits for TCP, so the console used to say «En línea» as long as the server stayed frozen. Now the
    silence (4 heartbeats) is said and a reconnect tried; SIGCONT, and it is live again."""
    with daphne_server({**cad_server_env, "CAD_HEARTBEAT_S": "1"}) as base:
        pid = _daphne_pid(base)
        context, page = login_page(browser, base, "despachador")
        try:
            _open_console(page)
            os.kill(pid, signal.SIGSTOP)
            try:
                expect(page.locator("#conn")).not_to_have_attribute("data-state", "open", timeout=12_000)
            finally:
                os.kill(pid, signal.SIGCONT)
            expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=30_000)
        finally:
            context.close()
