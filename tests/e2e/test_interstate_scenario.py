"""Issue 8's scenario with two real instances (tests/interstate_harness.py): PostgreSQL each, Redis, real
Celery workers and beat, real HTTP between them, both consoles' websockets open.

A MEX call-taker takes a 9-1-1 call located inside CDMX → MEX flags it for CDMX → escalates → it appears in
CDMX's queue and on CDMX's console showing where it came from → a CDMX dispatcher accepts it and assigns
units → MEX sees the acceptance, the units and their statuses → notes typed on either side appear on the
other → CDMX closes it and MEX sees the closure.
"""

import time

import pytest

from tests.interstate_harness import (
    escalation_of,
    interstate_of,
    is_escalation,
    open_call,
    timeline_texts,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_escalation_scenario_between_two_real_centres(two_centres):
    mex, cdmx = two_centres.mex, two_centres.cdmx
    with mex.console("despachador") as mex_console, cdmx.console("despachador") as cdmx_console:
        # 1. MEX takes a call located inside CDMX: its console flags the incident for CDMX.
        folio = open_call(mex)
        flagged = mex_console.wait_for(
            lambda m: m.get("type") == "interstate.flagged" and m["payload"]["folio"] == folio
        )
        (flag,) = flagged["payload"]["peers"]
        assert (flag["peer"], flag["reason"]) == ("CDMX", "inside")
        assert flag["name"]
        assert [f["peer"] for f in interstate_of(mex, folio)["flags"]] == ["CDMX"]

        # 2. The call-taker presses escalate: request for service to CDMX.
        started = time.monotonic()
        response = mex.session("operador").post(
            f"/api/v1/incidents/{folio}/escalations",
            json={"peer": "CDMX", "kind": "request_for_service", "reason": "Ocurre en la CDMX"},
        )
        assert response.status_code == 201, response.text
        assert response.json()["state"] in ("pending", "sent")

        # 3. It arrives in CDMX's queue and on CDMX's console, showing where it came from.
        created = cdmx_console.wait_for(
            lambda m: m.get("type") == "incident.created" and m["payload"].get("origin_folio") == folio
        )
        arrival_s = time.monotonic() - started
        cdmx_folio = created["payload"]["folio"]
        assert cdmx_folio.startswith("CDMX-")
        assert created["payload"]["origin_center"] == "MEX"
        inbound = cdmx_console.wait_for(is_escalation(cdmx_folio, direction="inbound"))["payload"][
            "escalation"
        ]
        assert (inbound["peer"]["code"], inbound["remote_folio"], inbound["kind"]) == (
            "MEX",
            folio,
            "request_for_service",
        )
        queue = cdmx.session("despachador").get("/api/v1/incidents/").json()
        queued = [
            i for i in (queue["results"] if isinstance(queue, dict) else queue) if i["folio"] == cdmx_folio
        ]
        assert [(i["origin_center"], i["origin_folio"]) for i in queued] == [("MEX", folio)]
        mex_console.wait_for(is_escalation(folio, state="sent"))

        # 4. A CDMX dispatcher accepts: MEX sees the acceptance and CDMX's folio.
        response = cdmx.session("despachador").post(f"/api/v1/escalations/{inbound['id']}/accept")
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "accepted"
        accepted = mex_console.wait_for(is_escalation(folio, state="accepted"))["payload"]["escalation"]
        assert accepted["remote_folio"] == cdmx_folio

        # 5. CDMX assigns two units; they go en route, one arrives: MEX sees the units and their statuses.
        units = cdmx.session("despachador").get("/api/v1/units/").json()
        units = units["results"] if isinstance(units, dict) else units
        chosen = [u for u in units if u["status"] == "available"][:2]
        for unit in chosen:
            response = cdmx.session("despachador").post(
                f"/api/v1/incidents/{cdmx_folio}/assignments", json={"unit_id": unit["id"]}
            )
            assert response.status_code == 201, response.text
        for unit, status in ((chosen[0], "en_route"), (chosen[1], "en_route"), (chosen[0], "on_scene")):
            response = cdmx.session("despachador").post(
                f"/api/v1/units/{unit['id']}/status", json={"status": status}
            )
            assert response.status_code == 200, response.text

        def remote_units(message: dict) -> dict:
            """{callsign: status} of the peer's units as MEX shows them (names read "CALLSIGN (agency)")."""
            escalation = message["payload"]["escalation"]
            return {r["name"].split(" ")[0]: r["status_internal"] for r in escalation["remote_resources"]}

        expected = {chosen[0]["callsign"]: "on_scene", chosen[1]["callsign"]: "en_route"}
        arrived = mex_console.wait_for(lambda m: is_escalation(folio)(m) and remote_units(m) == expected)
        assert all(r["active"] for r in arrived["payload"]["escalation"]["remote_resources"])
        assert {
            r["name"].split(" ")[0]: r["status_internal"]
            for r in escalation_of(mex, folio)["remote_resources"]
        } == expected

        # 6. Notes typed on either side appear on the other, live, once.
        mex_note, cdmx_note = "MEX: el reportante indica dos vehículos", "CDMX: unidad en sitio, 3 lesionados"
        assert (
            mex.session("despachador")
            .post(f"/api/v1/incidents/{folio}/notes", json={"text": mex_note})
            .status_code
            == 201
        )
        assert (
            cdmx.session("despachador")
            .post(f"/api/v1/incidents/{cdmx_folio}/notes", json={"text": cdmx_note})
            .status_code
            == 201
        )
        cdmx_console.wait_for(
            lambda m: (
                m.get("type") == "incident.note_added"
                and m["payload"]["folio"] == cdmx_folio
                and mex_note in m["payload"].get("text", "")
            )
        )
        mex_console.wait_for(
            lambda m: (
                m.get("type") == "incident.note_added"
                and m["payload"]["folio"] == folio
                and cdmx_note in m["payload"].get("text", "")
            )
        )
        wait_until(
            lambda: any(cdmx_note in t for t in timeline_texts(mex, folio)),
            timeout=15,
            what="CDMX note in MEX",
        )
        time.sleep(1.5)  # any echo of the notes would have arrived by now
        for centre, incident in ((mex, folio), (cdmx, cdmx_folio)):
            texts = timeline_texts(centre, incident)
            assert sum(mex_note in t for t in texts) == 1, texts
            assert sum(cdmx_note in t for t in texts) == 1, texts

        # 7. CDMX closes its incident: MEX sees the closure.
        detail = cdmx.session("despachador").get(f"/api/v1/incidents/{cdmx_folio}/")
        response = cdmx.session("despachador").post(
            f"/api/v1/incidents/{cdmx_folio}/close",
            json={"disposition": "Atendido por SSC y ERUM"},
            headers={"If-Match": detail.headers["ETag"]},
        )
        assert response.status_code == 200, response.text
        closed = mex_console.wait_for(is_escalation(folio, remote_status="closed"), timeout=20)
        assert closed["payload"]["escalation"]["state"] in ("accepted", "closed")
        # CDMX had taken it over and no MEX unit is on it: MEX's incident closes too, leaving MEX's queue.
        mex_console.wait_for(
            lambda m: m.get("type") == "incident.closed" and m["payload"]["folio"] == folio, timeout=20
        )
        ours = mex.session("despachador").get(f"/api/v1/incidents/{folio}/").json()
        assert ours["status"] == "closed" and "Atendido por SSC y ERUM" in ours["disposition"], ours

    # Every peer request, both ways, is in both audits.
    for centre, peer in ((mex, "CDMX"), (cdmx, "MEX")):
        audit = centre.session("supervisor").get("/api/v1/interstate/audit", params={"peer": peer}).json()
        directions = {(e["direction"], (e["status_code"] or 0) // 100) for e in audit["results"]}
        assert {("inbound", 2), ("outbound", 2)} <= directions, audit["results"][:5]
    print(f"\nescalate → CDMX console: {arrival_s * 1000:.0f} ms")
