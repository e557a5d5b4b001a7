from django.db import models
from django.utils.translation import gettext_lazy as _


class Jurisdiction(models.Model):
    """A state or municipality boundary (GeoJSON geometry in WGS84), with its bounding box."""

    class Kind(models.TextChoices):
        STATE = "state", _("Entidad federativa")
        MUNICIPALITY = "municipality", _("Municipio")

    kind = models.CharField(_("tipo"), max_length=16, choices=Kind.choices)
    cvegeo = models.CharField(_("clave geoestadística"), max_length=16, unique=True)
    cve_ent = models.CharField(_("clave de entidad"), max_length=2, db_index=True)
    name = models.CharField(_("nombre"), max_length=160)
    parent = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="children",
        verbose_name=_("entidad"),
    )
    geometry = models.JSONField(_("geometría GeoJSON"))
    min_lat = models.FloatField()
    min_lon = models.FloatField()
    max_lat = models.FloatField()
    max_lon = models.FloatField()
    source = models.CharField(_("fuente"), max_length=200, blank=True)
    imported_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("jurisdicción")
        verbose_name_plural = _("jurisdicciones")
        ordering = ["cvegeo"]

    def __str__(self) -> str:
        return f"{self.cvegeo} {self.name}"


class Locality(models.Model):
    """A locality of INEGI's Catálogo Único de Claves de Áreas Geoestadísticas Estatales, Municipales y
    Localidades (AGEEML), as imported by the operator: the offline gazetteer's rows."""

    cvegeo = models.CharField(_("clave geoestadística"), max_length=9, unique=True)
    cve_ent = models.CharField(_("clave de entidad"), max_length=2, db_index=True)
    cve_mun = models.CharField(_("clave de municipio"), max_length=3)
    cve_loc = models.CharField(_("clave de localidad"), max_length=4)
    name = models.CharField(_("nombre"), max_length=200)
    municipality_name = models.CharField(_("municipio"), max_length=160)
    state_name = models.CharField(_("entidad"), max_length=80)
    ambito = models.CharField(_("ámbito"), max_length=1, blank=True, help_text=_("U urbana, R rural"))
    lat = models.FloatField()
    lon = models.FloatField()
    population = models.PositiveIntegerField(_("población total"), null=True, blank=True)
    # Lower case, without accents: "toluca de lerdo|toluca|mexico" (what the search matches).
    search_text = models.CharField(max_length=500)
    source = models.CharField(_("fuente"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("localidad (AGEEML)")
        verbose_name_plural = _("localidades (AGEEML)")
        indexes = [models.Index(fields=["lat", "lon"], name="locality_point")]

    def __str__(self) -> str:
        return f"{self.cvegeo} {self.name}"
