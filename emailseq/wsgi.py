import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emailseq.settings")

application = get_wsgi_application()

# What is loaded by now lives as long as the process: keep it out of the collector's full passes,
# which would otherwise walk all of it (the tracking drainer's batches set them off: 7 µs a hit).
gc.freeze()
