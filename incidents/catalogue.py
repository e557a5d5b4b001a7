"""The CNIE incident catalogue (Catálogo Nacional de Incidentes de Emergencia, SESNSP): import of an
edition and the response plan of each incident type.

An edition import creates new codes, updates names and priorities of existing ones and retires (never
deletes) the codes the edition no longer lists. Incidents keep the code, name and priority they were
created with: an import never writes `Incident`.
"""

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from cad.errors import DomainError
from incidents.models import IncidentType, Priority, SubtypeResponsePlan

DEFAULT_CATALOGUE_PATH = Path(__file__).resolve().parent / "data" / "cnie" / "cnie.csv"
DEFAULT_EDITION = "CNIE 2.x (SESNSP)"
CSV_COLUMNS = (
    "tipo_code",
    "tipo_name",
    "subtipo_code",
    "subtipo_name",
    "incident_code",
    "incident_name",
    "priority",
    "definition",
)

# Capability codes used by response plans and by units (units.Capability.code). The names are stored in
# Spanish and translated where shown (gettext_noop puts them in the catalogue).
CAPABILITY_NAMES = {
    "ambulance": gettext_noop("Ambulancia"),
    "patrol": gettext_noop("Patrulla"),
    "fire_engine": gettext_noop("Autobomba"),
    "rescue": gettext_noop("Rescate"),
    "hazmat": gettext_noop("Materiales peligrosos"),
    "civil_protection": gettext_noop("Protección Civil"),
}

# Default response plan of each CNIE subtipo: {capability_code: units}. Created when missing; an
# operator's edit of a plan is never overwritten by a later import.
DEFAULT_SUBTYPE_PLANS: dict[str, dict[str, int]] = {
    "101": {"ambulance": 1, "patrol": 1},  # Accidentes
    "102": {"ambulance": 1},  # Traumáticos
    "103": {"ambulance": 1},  # Clínicos
    "201": {"fire_engine": 1, "civil_protection": 1},  # Auxilios (explosión, fugas, sustancias…)
    "202": {"civil_protection": 1},  # Medio ambiente
    "203": {"fire_engine": 1},  # Incendio
    "204": {"rescue": 1, "ambulance": 1},  # Rescate
    "301": {"patrol": 1},
    "302": {"patrol": 2},  # Armas / explosivos
    "303": {"patrol": 1},
    "304": {"patrol": 1},
    "305": {"patrol": 1},
    "306": {"patrol": 1},
    "307": {"patrol": 1},
    "308": {"patrol": 1},
    "309": {"patrol": 1, "ambulance": 1},  # Vida e integridad personal
    "310": {"patrol": 1},
    "311": {"patrol": 2},  # Disturbios
    "401": {"civil_protection": 1},  # Infraestructura
    "501": {"patrol": 1},
    "502": {"patrol": 1},
    "503": {"patrol": 1},
    "601": {"civil_protection": 1},
    "701": {},  # Llamadas improcedentes: never dispatched
}
# Fallback by tipo for subtipos a later edition may add.
DEFAULT_TIPO_PLANS: dict[str, dict[str, int]] = {
    "1": {"ambulance": 1},
    "2": {"civil_protection": 1},
    "3": {"patrol": 1},
    "4": {"civil_protection": 1},
    "5": {"patrol": 1},
    "6": {"civil_protection": 1},
    "7": {},
}

_CODE_RE = re.compile(r"^\d{5}$")


class CatalogueError(DomainError):
    code = "invalid_catalogue"


@dataclass
class ImportReport:
    edition: str
    total: int = 0
    created: int = 0
    updated: int = 0
    renamed: int = 0
    priority_changed: int = 0
    reactivated: int = 0
    retired: int = 0
    unchanged: int = 0
    plans_created: int = 0
    retired_codes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Row:
    line: int
    code: str
    name: str
    tipo_code: str
    tipo_name: str
    subtipo_code: str
    subtipo_name: str
    priority: str
    definition: str


def read_catalogue_csv(path: Path | str = DEFAULT_CATALOGUE_PATH) -> list[dict]:
    """The rows of a catalogue CSV (header: see CSV_COLUMNS) as dicts; the header is line 1."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in CSV_COLUMNS if c != "definition" and c not in (reader.fieldnames or [])]
            if missing:
                raise CatalogueError(
                    _("Al archivo %(path)s le faltan columnas: %(columns)s.")
                    % {"path": path, "columns": ", ".join(missing)}
                )
            return list(reader)
    except OSError as exc:
        raise CatalogueError(
            _("No se pudo leer el catálogo %(path)s: %(error)s") % {"path": path, "error": exc}
        ) from exc


def _clean(value) -> str:
    return str(value or "").strip()


def _validate_rows(rows: Iterable[Mapping]) -> list[_Row]:
    """Check every row before anything is written. Line numbers count the CSV header as line 1."""
    valid, seen = [], {}
    for index, raw in enumerate(rows):
        line = index + 2
        code = _clean(raw.get("incident_code"))
        tipo_code = _clean(raw.get("tipo_code"))
        subtipo_code = _clean(raw.get("subtipo_code"))
        priority = _clean(raw.get("priority")).upper()
        name = _clean(raw.get("incident_name"))
        problems = []
        if not _CODE_RE.match(code):
            problems.append(_("la clave «%(code)s» no tiene 5 dígitos") % {"code": code})
        if not re.match(r"^\d$", tipo_code):
            problems.append(_("el tipo «%(tipo)s» no es un dígito") % {"tipo": tipo_code})
        if not re.match(r"^\d{3}$", subtipo_code) or not subtipo_code.startswith(tipo_code):
            problems.append(
                _("el subtipo «%(subtipo)s» no tiene 3 dígitos o no empieza con el tipo «%(tipo)s»")
                % {"subtipo": subtipo_code, "tipo": tipo_code}
            )
        elif not code.startswith(subtipo_code):
            problems.append(
                _("la clave «%(code)s» no empieza con su subtipo «%(subtipo)s»")
                % {"code": code, "subtipo": subtipo_code}
            )
        if priority not in Priority.values:
            problems.append(
                _("la prioridad «%(priority)s» no es ALTA, MEDIA ni BAJA") % {"priority": priority}
            )
        if not name:
            problems.append(_("falta el nombre del incidente"))
        if not _clean(raw.get("tipo_name")) or not _clean(raw.get("subtipo_name")):
            problems.append(_("falta el nombre del tipo o del subtipo"))
        if code in seen:
            problems.append(
                _("la clave %(code)s ya aparece en la línea %(other)s") % {"code": code, "other": seen[code]}
            )
        if problems:
            raise CatalogueError(
                _("Línea %(line)s del catálogo: %(problems)s. No se importó nada.")
                % {"line": line, "problems": "; ".join(problems)},
                fields={"line": [str(line)]},
            )
        seen[code] = line
        valid.append(
            _Row(
                line=line,
                code=code,
                name=name,
                tipo_code=tipo_code,
                tipo_name=_clean(raw.get("tipo_name")),
                subtipo_code=subtipo_code,
                subtipo_name=_clean(raw.get("subtipo_name")),
                priority=priority,
                definition=_clean(raw.get("definition")),
            )
        )
    if not valid:
        raise CatalogueError(_("El catálogo está vacío; no se importó nada."))
    return valid


@transaction.atomic
def import_catalogue(*, rows: Iterable[Mapping], edition: str) -> ImportReport:
    """Import one CNIE edition. All rows are validated first; on any bad row `CatalogueError` names the
    line and nothing is written. Codes absent from the edition are retired (`active=False`), never
    deleted; incidents keep their own snapshot of code, name and priority."""
    edition = _clean(edition)[:40] or DEFAULT_EDITION
    valid = _validate_rows(rows)
    report = ImportReport(edition=edition, total=len(valid))
    existing = {t.code: t for t in IncidentType.objects.select_for_update()}
    to_create, to_update = [], []
    for row in valid:
        current = existing.get(row.code)
        if current is None:
            to_create.append(
                IncidentType(
                    code=row.code,
                    name=row.name,
                    tipo_code=row.tipo_code,
                    tipo_name=row.tipo_name,
                    subtipo_code=row.subtipo_code,
                    subtipo_name=row.subtipo_name,
                    priority=row.priority,
                    definition=row.definition,
                    active=True,
                    catalogue_edition=edition,
                )
            )
            continue
        changed = False
        if current.name != row.name:
            report.renamed += 1
            changed = True
        if current.priority != row.priority:
            report.priority_changed += 1
            changed = True
        if not current.active:
            report.reactivated += 1
            changed = True
        if row.definition and current.definition != row.definition:
            changed = True
        new_values = {
            "tipo_name": row.tipo_name,
            "subtipo_name": row.subtipo_name,
            "tipo_code": row.tipo_code,
            "subtipo_code": row.subtipo_code,
        }
        changed = changed or any(getattr(current, k) != v for k, v in new_values.items())
        if changed:
            report.updated += 1
        else:
            report.unchanged += 1
        current.name, current.priority, current.active = row.name, row.priority, True
        if row.definition:
            current.definition = row.definition
        for key, value in new_values.items():
            setattr(current, key, value)
        current.catalogue_edition = edition
        to_update.append(current)

    IncidentType.objects.bulk_create(to_create, batch_size=500)
    report.created = len(to_create)
    IncidentType.objects.bulk_update(
        to_update,
        [
            "name",
            "priority",
            "active",
            "definition",
            "tipo_code",
            "tipo_name",
            "subtipo_code",
            "subtipo_name",
            "catalogue_edition",
        ],
        batch_size=500,
    )
    new_codes = {row.code for row in valid}
    retired = sorted(code for code, t in existing.items() if code not in new_codes and t.active)
    if retired:
        IncidentType.objects.filter(code__in=retired).update(active=False)
    report.retired, report.retired_codes = len(retired), retired
    report.plans_created = ensure_default_response_plans(subtipo_codes={row.subtipo_code for row in valid})
    return report


def ensure_default_response_plans(*, subtipo_codes: Iterable[str]) -> int:
    """Create the default plan of each subtipo that has none; existing plans are left as edited."""
    have = set(SubtypeResponsePlan.objects.values_list("subtipo_code", flat=True))
    missing = sorted(set(subtipo_codes) - have)
    SubtypeResponsePlan.objects.bulk_create(
        [
            SubtypeResponsePlan(
                subtipo_code=code,
                plan=dict(DEFAULT_SUBTYPE_PLANS.get(code, DEFAULT_TIPO_PLANS.get(code[:1], {}))),
            )
            for code in missing
        ]
    )
    return len(missing)


# `subtype_plan` of response_plan_for when the caller has not read it.
NOT_READ = object()


def response_plan_for(incident_type: IncidentType | None, *, subtype_plan=NOT_READ) -> dict[str, int]:
    """The capabilities an incident type needs: its own plan if set, else its subtipo's, else {}.

    `subtype_plan`: the subtipo's plan (None: it has none) already read by the caller, e.g. with
    incidents.selectors.incident_get_for_recommendation; by default it is read here."""
    if incident_type is None:
        return {}
    if incident_type.response_plan:
        return dict(incident_type.response_plan)
    if subtype_plan is not NOT_READ:
        return dict(subtype_plan or {})
    plan = (
        SubtypeResponsePlan.objects.filter(subtipo_code=incident_type.subtipo_code)
        .values_list("plan", flat=True)
        .first()
    )
    return dict(plan or {})
