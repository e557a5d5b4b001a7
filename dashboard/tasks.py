"""Celery wrappers over dashboard services (tasks take ids, are idempotent: acks_late is safe)."""

from celery import shared_task


@shared_task(acks_late=True, name="dashboard.tasks.refresh_kpi_rollups")
def refresh_kpi_rollups() -> dict:
    """Recompute the KPI rollups of the hours touched since the last run (idempotent: recomputes, never
    increments). Scheduled every 60 s: Celery beat on the production path, cad.periodic embedded."""
    from dashboard.rollups import refresh_rollups

    return refresh_rollups()
