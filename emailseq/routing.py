"""WebSocket routes, served by Channels under /ws/.

Each app that serves live data adds its consumers' routes here; the ASGI router in
emailseq/asgi.py wraps them in session authentication and an origin check.
"""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
