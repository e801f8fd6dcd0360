# Importing the Celery app here binds @shared_task to it, so tasks run eagerly on embedded
# defaults instead of trying to reach a broker.
from emailseq.celery import app as celery_app

__all__ = ["celery_app"]
