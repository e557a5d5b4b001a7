from django.urls import path

from geo import api

urlpatterns = [
    path("jurisdictions/", api.JurisdictionListApi.as_view(), name="jurisdiction-list"),
    path("geocode/search", api.GeocodeSearchApi.as_view(), name="geocode-search"),
    path("geocode/reverse", api.GeocodeReverseApi.as_view(), name="geocode-reverse"),
    path("jurisdictions/boundaries", api.JurisdictionBoundariesApi.as_view(), name="jurisdiction-boundaries"),
    path("jurisdictions/locate", api.JurisdictionLocateApi.as_view(), name="jurisdiction-locate"),
    path("jurisdictions/<str:cvegeo>/", api.JurisdictionDetailApi.as_view(), name="jurisdiction-detail"),
]
