from django.urls import path

from console.api import RealtimeMetricsApi

urlpatterns = [
    path("realtime/metrics", RealtimeMetricsApi.as_view(), name="realtime-metrics"),
]
