"""Mexican licence plates: normalisation and the confusion-tolerant matching key.

`normalize_plate` keeps letters and digits, upper-case, without separators ("mex-12 34" → "MEX1234").
`plate_key` also folds the characters readers and people confuse most on Mexican plates (O→0, I→1,
B→8), so "ABC-1O2" and "A8C102" meet. Further folds (S/5, Z/2…) would raise false hits; add them here
if a deployment's readers need them. Hotlist entries and reads are compared by key; the alert shows both
the listed and the read plate for the dispatcher to confirm.
"""

import re

_KEEP = re.compile(r"[^0-9A-Z]")
_FOLD = str.maketrans({"O": "0", "I": "1", "B": "8"})
PLATE_MIN, PLATE_MAX = 4, 10


def normalize_plate(raw: str) -> str:
    return _KEEP.sub("", raw.upper().replace("Ñ", "N"))


def fold_plate(plate: str) -> str:
    """The matching key of an already normalised plate."""
    return plate.translate(_FOLD)


def plate_key(raw: str) -> str:
    return fold_plate(normalize_plate(raw))


_DIGIT = re.compile(r"[0-9]")


def valid_plate(plate: str) -> bool:
    """A normalised plate: 4 to 10 letters/digits, with at least one digit (Mexican plates all have)."""
    return PLATE_MIN <= len(plate) <= PLATE_MAX and _DIGIT.search(plate) is not None
