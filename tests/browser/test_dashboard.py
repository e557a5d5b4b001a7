"""The supervisor map in a real Chromium against a real Daphne: markers for every seeded unit and open
incident, live incident creation, a unit moved through the AVL API moving on the map within 2 s, the
radius query, the unit track, permissions, and a screenshot."""

import time
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def _new_incident(client, lat, lon, narrative):
    response = client.post(
        "/api/v1/calls/",
        json={
            "line": "911",
            "channel": "voice",
            "lat": lat,
            "lon": lon,
            "address": "Toluca centro",
            "narrative": narrative,
            "incident_type_code": "10104",
            "disposition": "new_incident",
        },
    )
    assert response.status_code == 201, response.text[:500]
    return response.json()["call"]["incident"]


def _open_dashboard(page):
    page.goto("/dashboard/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15_000)
    page.wait_for_function("window.cadMap && window.cadMap.ready === true", timeout=15_000)


def test_supervisor_map_is_live(login, api_session, screenshot_dir):
    operator = api_session("operador")
    before = _new_incident(operator, 19.2826, -99.6557, "Choque frente al mercado")
    supervisor_api = api_session("supervisor")
    units = supervisor_api.get("/api/v1/units/").json()
    open_incidents = supervisor_api.get("/api/v1/incidents/?open=true&limit=500").json()["count"]

    page = login("supervisor", viewport=(1440, 900))
    _open_dashboard(page)
    counts = page.evaluate("window.cadMap.counts()")
    with_position = [u for u in units if u["lat"] is not None]
    assert counts["units"] == len(units) and counts["visibleUnits"] == len(with_position) > 0
    assert counts["incidents"] == open_incidents >= 1
    assert page.evaluate(f"window.cadMap.incidents.has('{before}')")
    expect(page.locator("#map")).to_have_attribute("data-units", str(len(with_position)))
    expect(page.locator(".leaflet-control-attribution")).to_contain_text(
        "Fuente: INEGI, Marco Geoestadístico"
    )

    # An incident opened now appears without reloading, labelled with its CNIE code.
    after = _new_incident(operator, 19.30, -99.64, "Segundo choque")
    page.wait_for_function(f"window.cadMap.incidents.has('{after}')", timeout=5_000)
    expect(page.locator(".incident-label", has_text="10104").first).to_be_visible()

    # A unit moved through the AVL API moves on the map within 2 s.
    unit = with_position[0]
    target = (round(unit["lat"] + 0.0123, 6), round(unit["lon"] - 0.0087, 6))
    admin = api_session("admin")  # administrators may post AVL positions (devices use tokens)
    sent = time.monotonic()
    response = admin.post(
        "/api/v1/avl/positions",
        json={
            "positions": [
                {
                    "unit_id": unit["id"],
                    "lat": target[0],
                    "lon": target[1],
                    "recorded_at": datetime.now(tz=UTC).isoformat(),
                }
            ]
        },
    )
    assert response.status_code == 202, response.text[:300]
    page.wait_for_function(
        f"""(() => {{ const p = window.cadMap.position({unit["id"]});
                return p && Math.abs(p[0] - {target[0]}) < 1e-6 && Math.abs(p[1] - {target[1]}) < 1e-6; }})()""",
        timeout=2_000,
    )
    moved_in = time.monotonic() - sent
    assert moved_in < 2.0, moved_in

    page.screenshot(path=str(screenshot_dir / "dashboard-map.png"), full_page=False)

    # Filters: one agency only.
    agency_id = str(unit["agency"]["id"])
    page.select_option("#f-agency", agency_id)
    same_agency = sum(1 for u in with_position if str(u["agency"]["id"]) == agency_id)
    assert page.evaluate("window.cadMap.counts().visibleUnits") == same_agency
    page.select_option("#f-agency", "")

    # Radius around the moved unit lists it; its track has the new point.
    assert page.evaluate(f"window.cadMap.radiusAt({target[0]}, {target[1]}, 500)") >= 1
    expect(page.locator(f"#radius-list li[data-unit-id='{unit['id']}']")).to_be_visible()
    page.evaluate(f"window.cadMap.selectUnit({unit['id']})")
    page.click("#track-btn")
    page.wait_for_function("window.cadMap.trackPoints >= 1", timeout=5_000)

    # Clicking an incident opens its detail link to the console.
    page.evaluate(f"() => {{ window.cadMap.incidents.get('{after}').marker.openPopup(); }}")
    expect(page.locator("a.open-incident")).to_have_attribute("href", f"/console/?folio={after}")
    page.screenshot(path=str(screenshot_dir / "dashboard-map-track.png"), full_page=False)

    page.goto("/dashboard/kpis/")
    expect(page.locator("svg.chart").first).to_be_visible()
    page.screenshot(path=str(screenshot_dir / "dashboard-kpis.png"), full_page=True)


def test_dispatcher_cannot_open_the_dashboard(login):
    page = login("despachador")
    response = page.goto("/dashboard/")
    assert response.status == 403
