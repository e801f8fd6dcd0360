"""URLconf of bench/tracking_rps.py's server only: the product's URLs, plus `bench/pixel.gif`, the
baseline: the same GIF with the same no-store headers as the open pixel, and nothing stored
(no token, no Redis, no database). Served through the same middleware as the real pixel."""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.http import require_http_methods

from delivery.views import NO_STORE, PIXEL
from emailseq.urls import handler400, handler500  # noqa: F401
from emailseq.urls import urlpatterns as product_urlpatterns


@require_http_methods(["GET", "HEAD"])
def bench_pixel(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(PIXEL, content_type="image/gif")
    response["Cache-Control"] = NO_STORE
    response["Pragma"] = "no-cache"
    response["Expires"] = "0"
    return response


urlpatterns = [*product_urlpatterns, path("bench/pixel.gif", bench_pixel, name="bench-pixel")]
