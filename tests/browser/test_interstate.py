"""Interstate on two real centres' consoles in Chromium (tests/interstate_harness.py): MEX flags an incident
located in CDMX, a MEX dispatcher escalates it with one key, it arrives in CDMX's queue showing its origin,
a CDMX dispatcher accepts it with one key and MEX's console shows the acceptance live. Screenshots of both."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login_page
from tests.browser.test_console import _take_call
from tests.interstate_harness import (
    PASSWORD,
    ZOCALO,
    escalation_of,
    interstate_of,
    open_call,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(240)]


def _requested_of_cdmx(mex, cdmx) -> tuple[str, dict]:
    """A MEX incident escalated to CDMX (request for service) by API: its folio and CDMX's inbound share."""
    folio = open_call(mex)
    created = mex.session("despachador").post(
        f"/api/v1/incidents/{folio}/escalations", json={"peer": "CDMX", "kind": "request_for_service"}
    )
    assert created.status_code == 201, created.text
    remote = wait_until(lambda: escalation_of(mex, folio)["remote_folio"], timeout=20, what="CDMX's folio")
    (inbound,) = interstate_of(cdmx, remote)["escalations"]
    return folio, inbound


@pytest.fixture
def console_of(browser, two_centres):
    """console_of(centre, username) → that centre's dispatch console, logged in and live (console=False: just
    logged in)."""
    contexts = []

    def open_console(centre, username="despachador", *, console=True):
        context, page = login_page(browser, centre.base, username)
        contexts.append(context)
        if console:
            page.goto("/console/")
            expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15_000)
            page.wait_for_function("window.cadRealtime && window.cadRealtime.last.console !== null")
        return page

    yield open_console
    for context in contexts:
        context.close()


def test_call_taker_escalates_with_one_key_it_arrives_in_the_other_centres_queue_and_is_accepted(
    two_centres, console_of, screenshot_dir
):
    mex, cdmx = two_centres.mex, two_centres.cdmx
    cdmx_page = console_of(cdmx)
    mex_page = console_of(mex)

    # A MEX call-taker takes a call located inside CDMX: the intake flags it for CDMX, one key escalates.
    intake = console_of(mex, "operador", console=False)
    where = (str(ZOCALO["lat"]), str(ZOCALO["lon"]), ZOCALO["address"])
    folio, _registered = _take_call(intake, where=where, confirm_outside=True)
    offer = intake.locator('#interstate-offer .esc-flag[data-peer="CDMX"]')
    expect(offer).to_contain_text("Ciudad de México")
    expect(offer.locator("button[data-action=escalate]")).to_be_focused()
    intake.keyboard.press("x")
    expect(intake.locator('#interstate-offer .esc-outbound[data-peer="CDMX"]')).to_be_visible(timeout=10_000)
    intake.screenshot(path=str(screenshot_dir / "interstate-mex-intake-escalated.png"))

    # MEX's console shows the share on the incident's row, live.
    row = mex_page.locator(f'#queue-body tr[data-folio="{folio}"]')
    expect(row.locator(".tag-esc")).to_contain_text("CDMX", timeout=15_000)

    # It arrives in CDMX's queue showing where it came from.
    arrived = cdmx_page.locator("#queue-body tr", has=cdmx_page.locator(".tag-origin", has_text=folio))
    expect(arrived).to_have_count(1, timeout=15_000)
    expect(arrived.locator(".tag-origin")).to_have_text(f"← MEX {folio}")
    cdmx_folio = arrived.get_attribute("data-folio")
    assert re.fullmatch(r"CDMX-\d{4}-\d{6}", cdmx_folio)
    cdmx_page.screenshot(path=str(screenshot_dir / "interstate-cdmx-queue.png"))

    # A dispatcher who reloads (or logs in) while the request waits is told about it, not only live.
    cdmx_page.reload()
    expect(cdmx_page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15_000)
    expect(cdmx_page.locator("#banner")).to_contain_text(folio, timeout=10_000)

    # A CDMX dispatcher opens it: origin and the answer keys; Y accepts.
    arrived.click()
    expect(cdmx_page.locator("#esc-origin")).to_contain_text(folio)
    # How old the emergency is: when the 9-1-1 call reached MEX, beside our own arrival time.
    expect(cdmx_page.locator("#esc-origin .esc-origin-call")).to_contain_text(
        re.compile(r"llamada en MEX a las \d\d:")
    )
    answer = cdmx_page.locator("#d-interstate .esc-answer")
    expect(answer).to_contain_text(folio)
    # R, then Enter without a reason, is refused out loud (it used to do nothing).
    cdmx_page.locator("#detail").focus()
    cdmx_page.keyboard.press("r")
    cdmx_page.keyboard.press("Enter")
    expect(cdmx_page.locator("#banner")).to_have_text("Escriba el texto antes de enviar.")
    expect(answer).to_have_count(1)
    cdmx_page.locator("#detail").focus()
    cdmx_page.keyboard.press("y")
    expect(answer).to_have_count(0, timeout=10_000)
    expect(cdmx_page.locator('#d-interstate .esc-inbound [data-state="accepted"]')).to_be_visible()
    cdmx_page.screenshot(path=str(screenshot_dir / "interstate-cdmx-accepted.png"))

    # MEX's dispatcher sees the acceptance and CDMX's folio, live.
    row.click()
    escalation = mex_page.locator('#d-interstate .esc-outbound[data-peer="CDMX"]')
    expect(escalation.locator('[data-state="accepted"]')).to_be_visible(timeout=15_000)
    expect(escalation.locator(f'[data-remote-folio="{cdmx_folio}"]')).to_be_visible()
    expect(row.locator(".tag-esc")).to_contain_text("CDMX")
    # CDMX took it over: MEX's row says so and its dispatch clock no longer runs to an alarm.
    expect(row.locator(".handled-by")).to_have_text("Lo atiende CDMX", timeout=10_000)
    expect(row.locator("time.timer")).to_have_class("timer neutral")
    expect(mex_page.locator("#d-status")).to_contain_text("Lo atiende CDMX")
    # Nor does MEX's panel suggest MEX units for it any more: CDMX's cover the plan.
    expect(mex_page.locator("#d-recs .recs-handled-by")).to_contain_text(
        "Lo atiende CDMX con sus unidades", timeout=10_000
    )
    expect(mex_page.locator("#d-recs .suggested")).to_have_count(0)
    # The call-taker's intake page, still showing the saved call, follows the share live too (it had no
    # socket: the escalation stayed as it was when X was pressed).
    expect(intake.locator("#conn")).to_have_attribute("data-state", "open")
    expect(
        intake.locator('#interstate-offer .esc-outbound[data-peer="CDMX"] [data-state="accepted"]')
    ).to_be_visible(timeout=10_000)
    mex_page.screenshot(path=str(screenshot_dir / "interstate-mex-accepted.png"))

    # CDMX sends a unit, then releases it: MEX names the unit's status in Spanish, to the end ("Liberada", it
    # used to show the EIDO's "Available").
    cdmx_api = cdmx.session("despachador")
    units = cdmx_api.get("/api/v1/units/").json()
    unit = next(
        u for u in (units["results"] if isinstance(units, dict) else units) if u["status"] == "available"
    )
    assigned = cdmx_api.post(f"/api/v1/incidents/{cdmx_folio}/assignments", json={"unit_id": unit["id"]})
    assert assigned.status_code == 201, assigned.text
    remote = escalation.locator(".esc-units tr", has_text=unit["callsign"]).locator(".status-pill")
    expect(remote).to_have_text("Despachada", timeout=15_000)
    released = cdmx_api.post(f"/api/v1/units/{unit['id']}/status", json={"status": "available"})
    assert released.status_code == 200, released.text
    expect(remote).to_have_text("Liberada", timeout=15_000)

    # CDMX closes its incident: MEX shows the share closed and does not offer to escalate it again (MEX's
    # incident closes with it; it used to offer X and answer 409).
    etag = cdmx_api.get(f"/api/v1/incidents/{cdmx_folio}/").headers["ETag"]
    closed = cdmx_api.post(
        f"/api/v1/incidents/{cdmx_folio}/close", json={"disposition": "Atendido"}, headers={"If-Match": etag}
    )
    assert closed.status_code == 200, closed.text
    expect(escalation).to_have_attribute("data-state", "closed", timeout=15_000)
    expect(mex_page.locator('#d-interstate .esc-flag[data-peer="CDMX"]')).to_have_count(0)


def test_a_flagged_incident_escalates_from_the_console_and_the_menu_reaches_any_peer(
    two_centres, console_of, screenshot_dir
):
    """The dispatcher's path: the queue flags the incident live, X escalates from the detail; I opens the
    menu for any enabled peer (here a notice to CDMX about a MEX incident no flag names)."""
    mex = two_centres.mex
    page = console_of(mex)
    folio = open_call(mex)
    row = page.locator(f'#queue-body tr[data-folio="{folio}"]')
    expect(row.locator(".tag-flag")).to_have_text("⚑ CDMX", timeout=15_000)
    row.click()
    flag = page.locator('#d-interstate .esc-flag[data-peer="CDMX"]')
    expect(flag.locator("kbd")).to_have_text(["X", "V"])
    page.locator("#detail").focus()
    page.keyboard.press("x")
    expect(page.locator('#d-interstate .esc-outbound[data-peer="CDMX"]')).to_be_visible(timeout=10_000)
    expect(flag).to_have_count(0)

    toluca = open_call(mex, lat=19.2826, lon=-99.6557, address="Centro, Toluca")
    page.locator(f'#queue-body tr[data-folio="{toluca}"]').click()
    expect(page.locator("#d-interstate button[data-action=menu]")).to_be_visible()
    expect(page.locator("#d-interstate .esc-flag")).to_have_count(0)
    page.locator("#detail").focus()
    page.keyboard.press("i")
    menu = page.locator("#esc-menu")
    expect(menu).to_be_visible()
    menu.locator("select[name=peer]").select_option("CDMX")
    menu.locator("select[name=kind]").select_option("request_awareness")
    menu.locator("input[name=reason]").fill("Persecución con rumbo a la CDMX")
    page.screenshot(path=str(screenshot_dir / "interstate-mex-menu.png"))
    menu.locator("button[type=submit]").click()
    shared = page.locator('#d-interstate .esc-outbound[data-peer="CDMX"]')
    expect(shared).to_contain_text("Aviso", timeout=10_000)
    expect(shared.locator('[data-state="sent"], [data-state="accepted"]').first).to_be_visible(timeout=15_000)

    # Then MEX asks CDMX to take it (X on the notice): the same share becomes a request for service, and CDMX's
    # copy a request its dispatcher answers with Y (it was a 409 "ya se compartió").
    expect(shared.locator("button[data-action=upgrade]")).to_contain_text("Pedir a CDMX que lo atienda")
    page.locator("#detail").focus()
    page.keyboard.press("x")
    expect(shared).to_contain_text("Solicitud de servicio", timeout=10_000)
    expect(page.locator('#d-interstate .esc-outbound[data-peer="CDMX"]')).to_have_count(1)
    cdmx_page = console_of(two_centres.cdmx)
    copy = cdmx_page.locator("#queue-body tr", has=cdmx_page.locator(".tag-origin", has_text=toluca))
    expect(copy).to_have_count(1, timeout=15_000)
    copy.click()
    expect(cdmx_page.locator("#d-interstate .esc-answer")).to_contain_text(toluca, timeout=10_000)
    cdmx_page.locator("#detail").focus()
    cdmx_page.keyboard.press("y")
    expect(shared.locator('[data-state="accepted"]')).to_contain_text("Aceptado", timeout=15_000)

    # A reload keeps the queue's tags: flags and shares are read with the queue, not only received live.
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15_000)
    expect(row.locator(".tag-esc")).to_contain_text("CDMX", timeout=10_000)
    expect(page.locator(f'#queue-body tr[data-folio="{toluca}"] .tag-esc')).to_contain_text("CDMX")


def test_a_supervisor_sees_a_note_stuck_after_the_peer_accepted_and_cancels_with_a_reason(
    two_centres, console_of, screenshot_dir
):
    """A note that CDMX refuses after it accepted the incident: the share used to show "Aceptado" and nothing
    else, as if the note had arrived. Then the supervisor ends the share, asked first, with a reason."""
    mex, cdmx = two_centres.mex, two_centres.cdmx
    folio, inbound = _requested_of_cdmx(mex, cdmx)
    assert cdmx.session("despachador").post(f"/api/v1/escalations/{inbound['id']}/accept").status_code == 200
    wait_until(lambda: escalation_of(mex, folio)["state"] == "accepted", timeout=20, what="accepted at MEX")

    page = console_of(mex, "supervisor")
    page.locator(f'#queue-body tr[data-folio="{folio}"]').click()
    share = page.locator('#d-interstate .esc-outbound[data-peer="CDMX"]')
    expect(share.locator('[data-state="accepted"]')).to_be_visible(timeout=10_000)
    cdmx.sql("UPDATE interstate_peer SET enabled = false WHERE code = 'MEX'")
    try:
        note = mex.session("despachador").post(
            f"/api/v1/incidents/{folio}/notes", json={"text": "Hay un menor herido"}
        )
        assert note.status_code == 201, note.text
        error = share.locator(".esc-error")
        expect(error).to_contain_text(
            "HTTP 403: Este centro deshabilitó el enlace con el suyo: por ahora no acepta sus mensajes. (peer_disabled)",
            timeout=20_000,
        )
        expect(share.locator("button[data-action=retry]")).to_be_visible()
        expect(share.locator('[data-state="accepted"]')).to_be_visible()
        # The supervisor's page of other centres lists it, with the refusals in the audit.
        board = page.context.new_page()
        board.goto("/dashboard/interstate/")
        expect(board.locator("#trouble tbody tr").first).to_contain_text("peer_disabled")
        expect(board.locator("#audit tbody")).to_contain_text("peer_disabled")
        board.screenshot(path=str(screenshot_dir / "interstate-supervision.png"), full_page=True)
        board.close()
    finally:
        cdmx.sql("UPDATE interstate_peer SET enabled = true WHERE code = 'MEX'")
    expect(share.locator(".esc-error")).to_have_count(0, timeout=20_000)  # delivered after all: said too
    expect(share.locator("button[data-action=retry]")).to_have_count(0)

    # Cancel asks first; dismissing the question changes nothing.
    page.once("dialog", lambda dialog: dialog.dismiss())
    share.locator("button[data-action=cancel]").click()
    expect(share.locator('[data-state="accepted"]')).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept("Ya no hace falta"))
    share.locator("button[data-action=cancel]").click()
    expect(share.locator('[data-state="cancelled"]')).to_be_visible(timeout=10_000)
    expect(page.locator(f'#queue-body tr[data-folio="{folio}"] .handled-by')).to_have_count(0)
    timeline = mex.session("supervisor").get(f"/api/v1/incidents/{folio}/").json()["timeline"]
    cancelled = [
        e for e in timeline if e["text"] == "Escalamiento a Ciudad de México C5 cancelado: Ya no hace falta"
    ]
    assert [e["by"] for e in cancelled] == ["supervisor"]


def test_the_request_banner_goes_once_answered_and_a_request_the_origin_cancels_is_said_on_its_row(
    two_centres, console_of, screenshot_dir
):
    """CDMX's banner announcing MEX's request for service goes once the request is accepted, by a colleague
    (the live event) or by this dispatcher's Y; it used to stay (only a reject seemed to clear it). When MEX
    then cancels its request, CDMX's row and detail say so, live and after a reload; the incident stays open
    for CDMX's dispatcher to decide (it used to read "← MEX MEX-…" as if the request still stood)."""
    mex, cdmx = two_centres.mex, two_centres.cdmx
    page = console_of(cdmx)
    banner = page.locator("#banner")

    def request_for_service() -> tuple[str, str]:
        folio = open_call(mex)
        created = mex.session("despachador").post(
            f"/api/v1/incidents/{folio}/escalations",
            json={"peer": "CDMX", "kind": "request_for_service", "reason": "Persecución hacia CDMX"},
        )
        assert created.status_code == 201, created.text
        expect(banner).to_contain_text(f"pide atender su incidente {folio}", timeout=15_000)
        expect(banner).to_contain_text("Motivo: Persecución hacia CDMX")  # why MEX asks
        remote = wait_until(
            lambda: escalation_of(mex, folio)["remote_folio"], timeout=20, what="CDMX's folio"
        )
        return folio, remote

    # A colleague accepts the first: the banner goes, live (the banner times out on its own after 8 s).
    first, first_remote = request_for_service()
    (inbound,) = interstate_of(cdmx, first_remote)["escalations"]
    assert cdmx.session("despachador").post(f"/api/v1/escalations/{inbound['id']}/accept").status_code == 200
    expect(banner).to_be_hidden(timeout=3_000)

    # This dispatcher accepts the second with Y: its banner goes too.
    folio, remote = request_for_service()
    row = page.locator(f'#queue-body tr[data-folio="{remote}"]')
    row.click()
    expect(page.locator("#d-interstate .esc-answer")).to_contain_text(folio)
    expect(page.locator("#d-interstate .esc-answer .esc-reason")).to_have_text(
        "Motivo: Persecución hacia CDMX"
    )
    page.locator("#detail").focus()
    page.keyboard.press("y")
    expect(page.locator('#d-interstate .esc-inbound [data-state="accepted"]')).to_be_visible(timeout=5_000)
    expect(banner).to_be_hidden(timeout=3_000)
    origin = row.locator(".tag-origin")
    expect(origin).to_have_text(f"← MEX {folio}")
    expect(page.locator("#esc-origin-cancelled")).to_have_count(0)

    # MEX's supervisor cancels the request: CDMX's row and detail say so, live; the incident stays open.
    share = escalation_of(mex, folio)
    cancelled = mex.session("supervisor").post(
        f"/api/v1/escalations/{share['id']}/cancel", json={"reason": "Ya no hace falta"}
    )
    assert cancelled.status_code == 200, cancelled.text
    expect(origin).to_have_text(f"← MEX {folio} · cancelada", timeout=15_000)
    expect(origin).to_have_attribute("data-state", "cancelled")
    expect(page.locator("#esc-origin-cancelled")).to_contain_text("canceló la solicitud")
    expect(page.locator('#d-interstate .esc-inbound [data-state="cancelled"]')).to_be_visible()
    expect(row).not_to_have_attribute("data-status", "closed")
    page.screenshot(path=str(screenshot_dir / "interstate-cdmx-request-cancelled.png"))

    # A reload (or a new login) reads it with the queue, not only live.
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15_000)
    expect(origin).to_have_text(f"← MEX {folio} · cancelada", timeout=10_000)
    expect(page.locator(f'#queue-body tr[data-folio="{first_remote}"] .tag-origin')).to_have_text(
        f"← MEX {first}"
    )


def test_one_browser_logged_in_to_both_centres_keeps_each_ones_forms_and_api_working(browser, two_centres):
    """Both centres on one host share the browser's cookies (ports aside): each has its own CSRF cookie, so
    logging in to CDMX does not fail MEX's forms and API calls with 403 (it did with one shared cookie)."""
    mex, cdmx = two_centres.mex, two_centres.cdmx
    context, mex_page = login_page(browser, mex.base, "despachador")
    try:
        cdmx_page = context.new_page()
        cdmx_page.goto(f"{cdmx.base}/login/")
        cdmx_page.fill("#id_username", "despachador")
        cdmx_page.fill("#id_password", PASSWORD)
        with cdmx_page.expect_navigation():
            cdmx_page.click("form[action='/login/'] button[type=submit]")
        names = {cookie["name"] for cookie in context.cookies()}
        assert {mex.csrf_cookie, cdmx.csrf_cookie, mex.cookie, cdmx.cookie} <= names, names

        for page in (mex_page, cdmx_page):
            page.goto("/console/" if page is mex_page else f"{cdmx.base}/console/")
            expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15_000)
            # An API write from the console's own code: refused for the folio (404), not for CSRF (403).
            status = page.evaluate(
                """async () => {
                    const { api } = await import('/static/console/common.js');
                    try { await api('incidents/NO-EXISTE/notes', { method: 'POST', body: { text: 'x' } }); }
                    catch (error) { return error.status; }
                    return 200;
                }"""
            )
            assert status == 404, status
            # The language form (a plain POST with the page's CSRF token).
            page.select_option("#lang-select", "en")
            with page.expect_navigation():
                page.click(".lang-form button[type=submit]")
            expect(page.locator("html")).to_have_attribute("lang", "en", timeout=10_000)
            expect(page.locator("body")).not_to_contain_text("CSRF")
            # Back to Spanish: the choice is saved on the user, whom the other tests here share.
            page.select_option("#lang-select", "es-mx")
            with page.expect_navigation():
                page.click(".lang-form button[type=submit]")
            expect(page.locator("html")).to_have_attribute("lang", "es-mx", timeout=10_000)
    finally:
        context.close()


def test_a_rejection_is_told_to_every_dispatcher_of_the_requester(two_centres, console_of):
    """CDMX rejects MEX's request: MEX's dispatchers get a banner with the reason, even one not looking at
    that incident (only the row's tag changed; a rejection was easy to miss)."""
    mex, cdmx = two_centres.mex, two_centres.cdmx
    page = console_of(mex)
    folio, inbound = _requested_of_cdmx(mex, cdmx)
    rejected = cdmx.session("despachador").post(
        f"/api/v1/escalations/{inbound['id']}/reject", json={"reason": "Sin unidades disponibles"}
    )
    assert rejected.status_code == 200, rejected.text
    banner = page.locator("#banner")
    expect(banner).to_contain_text(
        f"rechazó la solicitud de {folio}: Sin unidades disponibles", timeout=15_000
    )
    expect(banner).to_contain_text("sigue a cargo de este centro")
