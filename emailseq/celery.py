import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emailseq.settings")

app = Celery("emailseq")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
