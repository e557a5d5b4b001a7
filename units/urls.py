from django.urls import path

from units import api

urlpatterns = [
    path("units/", api.UnitListApi.as_view(), name="unit-list"),
    path("units/<str:unit_id>/", api.UnitDetailApi.as_view(), name="unit-detail"),
    path("units/<str:unit_id>/status", api.UnitStatusApi.as_view(), name="unit-status"),
    path("units/<str:unit_id>/track", api.UnitTrackApi.as_view(), name="unit-track"),
    path("agencies/", api.AgencyListApi.as_view(), name="agency-list"),
    path("avl/positions", api.AvlPositionsApi.as_view(), name="avl-positions"),
]
