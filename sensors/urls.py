from django.urls import path

from sensors import api_lpr, api_panic

urlpatterns = [
    path("panic/signals", api_panic.PanicSignalApi.as_view(), name="panic-signal"),
    path("panic/buttons", api_panic.PanicButtonListApi.as_view(), name="panic-buttons"),
    path(
        "panic/buttons/<int:button_id>", api_panic.PanicButtonDetailApi.as_view(), name="panic-button-detail"
    ),
    path("lpr/reads", api_lpr.LprReadIngestApi.as_view(), name="lpr-reads"),
    path(
        "lpr/webhooks/platerecognizer",
        api_lpr.PlateRecognizerWebhookApi.as_view(),
        name="lpr-platerecognizer",
    ),
    path("lpr/readers", api_lpr.LprReaderListApi.as_view(), name="lpr-readers"),
    path("lpr/hits", api_lpr.LprHitListApi.as_view(), name="lpr-hits"),
    path("lpr/hits/<int:hit_id>/incident", api_lpr.LprHitIncidentApi.as_view(), name="lpr-hit-incident"),
    path("lpr/hits/<int:hit_id>/status", api_lpr.LprHitStatusApi.as_view(), name="lpr-hit-status"),
    path("lpr/plates/<str:plate>/track", api_lpr.PlateTrackApi.as_view(), name="lpr-plate-track"),
    path("lpr/hotlists", api_lpr.HotlistListApi.as_view(), name="lpr-hotlists"),
    path(
        "lpr/hotlists/<int:hotlist_id>/entries", api_lpr.HotlistEntryApi.as_view(), name="lpr-hotlist-entries"
    ),
    path(
        "lpr/hotlists/<int:hotlist_id>/entries/<str:plate>",
        api_lpr.HotlistEntryDeleteApi.as_view(),
        name="lpr-hotlist-entry",
    ),
]
