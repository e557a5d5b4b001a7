import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from incidents.catalogue import (
    CatalogueError,
    import_catalogue,
    read_catalogue_csv,
    response_plan_for,
)
from incidents.models import Incident, IncidentType, Priority, SubtypeResponsePlan
from tests.factories import CenterFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def shipped_rows():
    return read_catalogue_csv()


def test_import_shipped_catalogue(shipped_rows):
    report = import_catalogue(rows=shipped_rows, edition="2.x")

    assert report.created == IncidentType.objects.count() == 279
    assert IncidentType.objects.filter(priority=Priority.ALTA).count() == 170
    assert IncidentType.objects.filter(active=True).count() == 279
    assert report.retired == report.updated == 0
    assert SubtypeResponsePlan.objects.count() == 24
    assert response_plan_for(IncidentType.objects.get(code="10104")) == {"ambulance": 1, "patrol": 1}
    assert response_plan_for(IncidentType.objects.get(code="20301")) == {"fire_engine": 1}
    assert response_plan_for(IncidentType.objects.get(code="20402")) == {"rescue": 1, "ambulance": 1}
    assert response_plan_for(IncidentType.objects.get(code="70101")) == {}


def test_later_edition_updates_retires_and_keeps_incident_snapshot(shipped_rows):
    import_catalogue(rows=shipped_rows, edition="2.x")
    old = IncidentType.objects.get(code="10104")
    user = UserFactory()
    incident = Incident.objects.create(
        folio="MEX-2026-000001",
        center=CenterFactory(),
        incident_type=old,
        type_code=old.code,
        type_name=old.name,
        priority=old.priority,
        priority_rank=1,
        opened_at=timezone.now(),
        created_by=user,
    )
    # An operator edit of a subtipo plan survives later imports.
    SubtypeResponsePlan.objects.filter(subtipo_code="101").update(plan={"ambulance": 2})

    rows = [dict(row) for row in shipped_rows]
    by_code = {row["incident_code"]: row for row in rows}
    by_code["10104"]["incident_name"] = "Accidente vehicular con lesionados"  # renamed
    by_code["20104"]["priority"] = "BAJA"  # was MEDIA
    rows.remove(by_code["30440"])  # removed
    rows.append({**by_code["10101"], "incident_code": "10122", "incident_name": "Accidente de dron"})

    report = import_catalogue(rows=rows, edition="3.0")

    assert (report.created, report.renamed, report.priority_changed, report.retired) == (1, 1, 1, 1)
    assert report.updated == 2
    assert report.retired_codes == ["30440"]
    assert IncidentType.objects.count() == 280  # never deleted
    assert IncidentType.objects.get(code="30440").active is False
    assert IncidentType.objects.get(code="10122").catalogue_edition == "3.0"
    assert IncidentType.objects.get(code="20104").priority == Priority.BAJA
    assert IncidentType.objects.get(code="10104").name == "Accidente vehicular con lesionados"
    incident.refresh_from_db()
    assert (incident.type_code, incident.type_name, incident.priority) == (
        "10104",
        "Accidente de vehículo automotor con lesionados",
        Priority.ALTA,
    )
    assert response_plan_for(IncidentType.objects.get(code="10104")) == {"ambulance": 2}

    # Reimporting the old edition brings the retired code back.
    again = import_catalogue(rows=shipped_rows, edition="2.x")
    assert again.reactivated == 1
    assert IncidentType.objects.get(code="30440").active is True


def test_type_plan_overrides_subtipo_plan(shipped_rows):
    import_catalogue(rows=shipped_rows, edition="2.x")
    incident_type = IncidentType.objects.get(code="30413")
    incident_type.response_plan = {"patrol": 2}
    incident_type.save()
    assert response_plan_for(incident_type) == {"patrol": 2}
    assert response_plan_for(None) == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"incident_code": "1010"}, "5 dígitos"),
        ({"incident_code": "20199"}, "no empieza con su subtipo"),
        ({"subtipo_code": "201"}, "no empieza con el tipo"),
        ({"priority": "URGENTE"}, "prioridad"),
        ({"incident_name": ""}, "nombre"),
    ],
)
def test_bad_row_names_the_line_and_writes_nothing(shipped_rows, change, message):
    rows = [dict(row) for row in shipped_rows]
    rows[41].update(change)  # CSV line 43 (line 1 is the header)

    with pytest.raises(CatalogueError) as excinfo:
        import_catalogue(rows=rows, edition="bad")

    assert "Línea 43" in str(excinfo.value)
    assert message in str(excinfo.value)
    assert IncidentType.objects.count() == 0
    assert SubtypeResponsePlan.objects.count() == 0


def test_bad_row_after_an_import_leaves_catalogue_untouched(shipped_rows):
    import_catalogue(rows=shipped_rows, edition="2.x")
    rows = [dict(row) for row in shipped_rows[:10]]
    rows[0]["incident_name"] = "Renombrado"
    rows.append({**rows[1]})  # duplicate code

    with pytest.raises(CatalogueError, match="Línea 12"):
        import_catalogue(rows=rows, edition="bad")

    assert IncidentType.objects.filter(active=True).count() == 279
    assert IncidentType.objects.get(code="10101").name == shipped_rows[0]["incident_name"]


def test_import_command(tmp_path, capsys):
    call_command("import_cnie")
    out = capsys.readouterr().out
    assert "279 nuevos" in out
    assert IncidentType.objects.count() == 279

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "tipo_code,tipo_name,subtipo_code,subtipo_name,incident_code,incident_name,priority,definition\n"
        "1,Médico,101,Accidentes,10101,Uno,ALTA,\n"
        "1,Médico,101,Accidentes,10102,Dos,CRITICA,\n",
        encoding="utf-8",
    )
    with pytest.raises(CommandError, match="Línea 3"):
        call_command("import_cnie", str(bad), "--edition", "x")
    with pytest.raises(CommandError, match="No se pudo leer"):
        call_command("import_cnie", str(tmp_path / "missing.csv"))
