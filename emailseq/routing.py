"""WebSocket routes, served by Channels under /ws/.

Each app that serves live data adds its consumers' routes here; the ASGI router in
emailseq/asgi.py wraps them in an origin check, session authentication and token
authentication (analytics/ws_auth.py).
"""

from django.urls import URLPattern, re_path

from analytics import consumers

websocket_urlpatterns: list[URLPattern] = [
    re_path(r"^ws/analytics/?$", consumers.AnalyticsConsumer.as_asgi()),
    re_path(r"^ws/events/?$", consumers.EventsConsumer.as_asgi()),
    re_path(r"^ws/notifications/?$", consumers.NotificationsConsumer.as_asgi()),
]
