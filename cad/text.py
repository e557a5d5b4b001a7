"""Text helpers shared by the searches (CNIE type-ahead, gazetteer)."""

import unicodedata


def fold(text: str) -> str:
    """Lower-case without accents: «Incendio en vehículo» matches «VEHICULO», «Nezahualcóyotl» «nezahualcoyotl»."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
