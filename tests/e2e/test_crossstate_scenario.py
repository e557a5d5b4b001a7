"""Issue 11 "Across states" with two real instances (tests/interstate_harness.py): PostgreSQL each, Redis, real
Celery workers and beat, real signed HTTP between them, both consoles' websockets open.

MEX imports a shared cargo-theft list with a stolen truck's plate (`manage.py import_hotlist --shared`) → the
alert reaches CDMX as MEX's list → CDMX's arch reads the plate → CDMX's console alerts (list of MEX) → MEX's
console gets the sighting with CDMX's arch and location, and the plate's track at MEX gains the point.
"""

import subprocess
import sys
from datetime import UTC, datetime

import httpx
import pytest

from tests.interstate_harness import ROOT, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PLATE = "LF-12-345"
ARCH = {"code": "CDMX-ARCO-09", "name": "Arco Calzada Vallejo", "lat": 19.4890, "lon": -99.1480}
# CDMX has no API for registering arches (the admin does it): its manage.py shell does, and hands out the
# gateway's token, as an operator would.
CDMX_ARCH_AND_TOKEN = f"""
from accounts.tokens import issue_token
from accounts.models import User
from cad.models import Center
from sensors.models import LprReader
LprReader.objects.get_or_create(code={ARCH["code"]!r}, defaults=dict(
    center=Center.objects.get(code="CDMX"), name={ARCH["name"]!r}, lat={ARCH["lat"]}, lon={ARCH["lon"]},
    direction="S"))
print(issue_token(User.objects.get(username="avl-gateway")))
"""


def manage(centre, *args: str) -> subprocess.Popen:
    """`manage.py <args>` for `centre`, started now (the caller waits for it with `finished`)."""
    return subprocess.Popen(  # noqa: S603
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=centre.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(proc: subprocess.Popen, stdin: str = "") -> str:
    stdout, stderr = proc.communicate(input=stdin, timeout=120)
    assert proc.returncode == 0, stderr[-2000:]
    return stdout


def test_a_stolen_truck_shared_by_mex_is_read_in_cdmx_and_mex_sees_the_sighting(two_centres):
    mex, cdmx = two_centres.mex, two_centres.cdmx
    arch = manage(cdmx, "shell", "-c", CDMX_ARCH_AND_TOKEN)
    with mex.console("despachador") as mex_console, cdmx.console("despachador") as cdmx_console:
        # 1. MEX shares a cargo-theft list with the truck: the alert reaches CDMX as MEX's list.
        csv = f"plate,reason,make,model,color\n{PLATE},Tractocamión robado con carga,Kenworth,T680,Blanco\n"
        finished(
            manage(
                mex,
                *("import_hotlist", "-", "--kind", "cargo_theft", "--name", "Robo a transporte"),
                *("--owner", "supervisor", "--center", "MEX", "--shared"),
            ),
            stdin=csv,
        )
        token = finished(arch).strip().splitlines()[-1]

        def mex_list_at_cdmx():
            lists = cdmx.session("supervisor").get("/api/v1/lpr/hotlists").json()
            return [h for h in lists if h["peer"] == "MEX" and h["entries"] == 1]

        [mex_list] = wait_until(mex_list_at_cdmx, timeout=60, what="MEX's shared list at CDMX")
        assert mex_list["kind"] == "cargo_theft"

        # 2. CDMX's arch reads the plate: CDMX's consoles alert, showing the list is MEX's.
        now = datetime.now(UTC).replace(microsecond=0).isoformat()
        read = {"reader": ARCH["code"], "plate": "LF12345", "read_at": now}
        response = httpx.post(
            f"{cdmx.base}/api/v1/lpr/reads",
            json={"reads": [read]},
            headers={"Authorization": f"Token {token}"},
            timeout=15,
        )
        assert response.status_code == 202 and response.json()["hits"] == 1, response.text
        local = cdmx_console.wait_for(lambda m: m.get("type") == "lpr.hit")["payload"]
        assert (local["plate"], local["list_owner"], local["origin"]) == ("LF12345", "MEX", "")

        # 3. MEX's console gets the sighting: the vehicle, CDMX's arch and its location.
        sighting = mex_console.wait_for(lambda m: m.get("type") == "lpr.hit", timeout=60)["payload"]
        assert (sighting["plate"], sighting["origin"], sighting["hotlist_kind"]) == (
            "LF12345",
            "CDMX",
            "cargo_theft",
        )
        assert sighting["place"] == ARCH["name"]
        assert (round(sighting["lat"], 4), round(sighting["lon"], 4)) == (ARCH["lat"], ARCH["lon"])
        assert sighting["vehicle"]["make"] == "Kenworth"

        # 4. The plate's track on MEX's dashboard map gains the point read in CDMX.
        track = mex.session("supervisor").get(f"/api/v1/lpr/plates/{PLATE}/track").json()
        assert [(p["origin"], p["place"]) for p in track] == [("CDMX", ARCH["name"])]

        # Signed and audited on both sides like every peer message.
        audited = (
            "SELECT DISTINCT direction FROM interstate_peerrequestlog WHERE action = %s AND status_code = 200"
        )
        assert sorted(mex.sql(audited, "vehicleSighting") + mex.sql(audited, "vehicleAlert")) == [
            ("inbound",),
            ("outbound",),
        ]
        assert sorted(cdmx.sql(audited, "vehicleSighting") + cdmx.sql(audited, "vehicleAlert")) == [
            ("inbound",),
            ("outbound",),
        ]
