from django.urls import path

from tips import api

urlpatterns = [
    path("tips/", api.TipCreateApi.as_view(), name="tip-create"),
    path("tips/queue", api.TipListApi.as_view(), name="tip-list"),
    path("tips/callback", api.TipCallbackApi.as_view(), name="tip-callback"),
    path("tips/authorities", api.AuthorityListApi.as_view(), name="tip-authorities"),
    path("tips/audit", api.TipAccessLogApi.as_view(), name="tip-audit"),
    path("tips/<str:folio>/", api.TipDetailApi.as_view(), name="tip-detail"),
    path("tips/<str:folio>/classify", api.TipClassifyApi.as_view(), name="tip-classify"),
    path("tips/<str:folio>/route", api.TipRouteApi.as_view(), name="tip-route"),
    path("tips/<str:folio>/status", api.TipStatusApi.as_view(), name="tip-status"),
]
