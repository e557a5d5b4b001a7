"""Run-time validation of EIDO documents (NENA-STA-021) and conveyance messages (NENA-STA-024) against NENA's
published schemas, shipped in interstate/schemas/ (see SOURCE.md there).

Loading the EIDO schema (~3 MB of YAML, OpenAPI 3 + NIEM components) takes about a second, so each validator
is built once per process, lazily, under a lock, and shared by all threads (jsonschema validators are
read-only once built). Draft 4 with a `referencing` registry, as /work/shared/tools/eido_validate.py does.
"""

import functools
import json
import threading
from pathlib import Path

import yaml
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
EIDO_DIR = SCHEMA_DIR / "nena-eido"
CONVEYANCE_FILE = SCHEMA_DIR / "nena-conveyance" / "websocket.yaml"
OWN_MESSAGES_FILE = SCHEMA_DIR / "c4cad" / "vehicle-messages.json"
EIDO_ROOT = "EmergencyIncidentDataObjectType"
MAX_ERRORS = 50

# Wire key of each message kind -> the STA-024 object schema it is validated against, as published
# (including the published spellings `requestAwarenes` and `cancelREequest`; docs/interstate.md).
MESSAGE_SCHEMAS = {
    "requestForService": "requestForServiceObject",
    "requestAwarenes": "requestAwarenessObject",
    "cancelREequest": "cancelRequestObject",
    "response": "responseToRequestObject",
    "event": "eventObject",
}
# This protocol's own kinds (not in STA-024) -> their envelope in our schema file.
OWN_MESSAGE_SCHEMAS = {"vehicleAlert": "vehicleAlertMessage", "vehicleSighting": "vehicleSightingMessage"}

_NUMERIC_KEYWORDS = {"minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum", "minProperties"}
_lock = threading.Lock()
# PyYAML's C safe loader when compiled in (about ten times faster on the 3 MB EIDO schema); both are safe loaders.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SchemaErrors(Exception):
    """A document does not validate; `errors` lists "json/path: message" lines (at most MAX_ERRORS)."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors[:3]))
        self.errors = errors


def _clean(node):
    """The published YAML writes some numeric bounds as strings ('1,'); JSON Schema needs numbers."""
    if isinstance(node, dict):
        return {
            key: (
                int(value.strip(" ,"))
                if key in _NUMERIC_KEYWORDS and isinstance(value, str)
                else _clean(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_clean(value) for value in node]
    return node


def _load(path: Path) -> dict:
    return _clean(yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER))  # noqa: S506 - a safe loader


@functools.cache
def _eido_validator() -> Draft4Validator:
    main_uri = (EIDO_DIR / "openapi.yaml").as_uri()
    resources = [(main_uri, Resource(contents=_load(EIDO_DIR / "openapi.yaml"), specification=DRAFT4))]
    for path in sorted((EIDO_DIR / "NIEMComponents").glob("*.yaml")):
        resource = Resource(contents=_load(path), specification=DRAFT4)
        resources.append((path.as_uri(), resource))
        # openapi.yaml also spells one reference with a doubled slash
        resources.append((path.as_uri().replace("/NIEMComponents/", "/NIEMComponents//"), resource))
    registry = Registry().with_resources(resources)
    return Draft4Validator({"$ref": f"{main_uri}#/components/schemas/{EIDO_ROOT}"}, registry=registry)


@functools.cache
def _message_validators() -> dict[str, Draft4Validator]:
    uri = CONVEYANCE_FILE.as_uri()
    registry = Registry().with_resource(uri, Resource(contents=_load(CONVEYANCE_FILE), specification=DRAFT4))
    validators = {
        key: Draft4Validator({"$ref": f"{uri}#/components/schemas/{name}"}, registry=registry)
        for key, name in MESSAGE_SCHEMAS.items()
    }
    own_uri = OWN_MESSAGES_FILE.as_uri()
    own = Resource(contents=json.loads(OWN_MESSAGES_FILE.read_text(encoding="utf-8")), specification=DRAFT4)
    own_registry = Registry().with_resource(own_uri, own)
    for key, name in OWN_MESSAGE_SCHEMAS.items():
        validators[key] = Draft4Validator({"$ref": f"{own_uri}#/definitions/{name}"}, registry=own_registry)
    return validators


def eido_validator() -> Draft4Validator:
    with _lock:  # functools.cache alone could build it twice under concurrent first calls
        return _eido_validator()


def message_validator(wire_key: str) -> Draft4Validator:
    with _lock:
        return _message_validators()[wire_key]


def _errors(validator: Draft4Validator, document, prefix: str = "") -> list[str]:
    found = sorted(validator.iter_errors(document), key=lambda error: [str(p) for p in error.absolute_path])
    return [
        f"{prefix}{'/'.join(str(part) for part in error.absolute_path) or '<root>'}: {error.message}"
        for error in found[:MAX_ERRORS]
    ]


def null_character_paths(document, path: str = "") -> list[str]:
    """Where `document` (parsed JSON) holds U+0000 in a key or a string, as "a/b/0" paths (at most
    MAX_ERRORS): valid JSON, but PostgreSQL's text cannot store it."""
    found: list[str] = []
    if isinstance(document, str):
        if "\x00" in document:
            found.append(path or "<root>")
    elif isinstance(document, dict):
        for key, value in document.items():
            here = f"{path}/{key}" if path else str(key)
            if "\x00" in str(key):
                found.append(here)
            found += null_character_paths(value, here)
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += null_character_paths(value, f"{path}/{index}" if path else str(index))
    return found[:MAX_ERRORS]


def eido_errors(document, *, prefix: str = "") -> list[str]:
    return _errors(eido_validator(), document, prefix)


def validate_eido(document) -> None:
    """Raise SchemaErrors unless `document` is a valid EIDO."""
    errors = eido_errors(document)
    if errors:
        raise SchemaErrors(errors)


def validate_message(wire_key: str, message) -> None:
    """Raise SchemaErrors unless `message` validates against its STA-024 object schema and the EIDO it
    carries (top-level `eido`, when present) validates against the EIDO schema."""
    errors = _errors(message_validator(wire_key), message)
    if isinstance(message, dict) and "eido" in message:
        errors += eido_errors(message["eido"], prefix="eido/")
    if errors:
        raise SchemaErrors(errors[:MAX_ERRORS])


def warm_up() -> None:
    """Build the validators now (e.g. when a worker starts) instead of on the first message."""
    eido_validator()
    _message_validators()
