"""Settings, all driven by the environment.

With nothing set the product runs on embedded parts: SQLite under var/, local-memory cache,
in-memory channel layer, Celery tasks run in-process, outgoing mail captured under var/mailbox.
DATABASE_URL, REDIS_URL and EMAIL_URL switch on the real parts. README.md lists every variable.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path

from emailseq.environment import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    parse_base_url,
    parse_database_url,
    parse_email_url,
    parse_redis_url,
    sqlite_settings,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _local_secret_key() -> str:
    """A per-installation key kept under var/, so signed links survive restarts."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY", "") or _local_secret_key()
# Old keys stay valid for verifying signed links after a rotation (unsubscribe links must keep
# working for a year).
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])
DEBUG = env_bool("DEBUG", False)

BASE_URL = env_str("BASE_URL", "http://127.0.0.1:8000").rstrip("/")
BASE_URL_SCHEME, BASE_URL_HOST, BASE_URL_ORIGIN = parse_base_url("BASE_URL", BASE_URL)
BASE_URL = BASE_URL_ORIGIN
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [BASE_URL_HOST, "127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = [BASE_URL_ORIGIN]
CSRF_FAILURE_VIEW = "api.views.csrf_failure"

# HTTPS-only settings follow the scheme of BASE_URL, so a production configuration served
# over plain HTTP on 127.0.0.1 still works for local checks.
USES_HTTPS = BASE_URL_SCHEME == "https"
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", USES_HTTPS)
SESSION_COOKIE_SECURE = USES_HTTPS
CSRF_COOKIE_SECURE = USES_HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if USES_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", USES_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", USES_HTTPS)
if env_bool("BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True
# Exempt from the HTTPS redirect: tracking and unsubscribe (a redirect on a one-click
# unsubscribe POST breaks RFC 8058; pixels must answer directly) and the health check (load
# balancers probe over plain HTTP and treat a redirect as down).
SECURE_REDIRECT_EXEMPT = [r"^t/", r"^u/", r"^healthz$", r"^health$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_celery_beat",
    "axes",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "emailseq",
    "organizations",
    "subscribers",
    "sequences",
    "delivery",
    "deliverability",
    "experiments",
    "analytics",
    "api",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = 1  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# Behind a proxy every request comes from the proxy: lock out by the client's address instead.
AXES_CLIENT_IP_CALLABLE = "emailseq.http.client_ip"

ROOT_URLCONF = "emailseq.urls"
WSGI_APPLICATION = "emailseq.wsgi.application"
ASGI_APPLICATION = "emailseq.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_database_url = env_str("DATABASE_URL", "")
DATABASES = {
    "default": (
        parse_database_url("DATABASE_URL", _database_url, sqlite_default_path=VAR_DIR / "emailseq.sqlite3")
        if _database_url
        else sqlite_settings(str(VAR_DIR / "emailseq.sqlite3"))
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    parse_redis_url("REDIS_URL", REDIS_URL)
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "emailseq",
            # An unreachable Redis must fail fast (the health check, throttling), not hang.
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        }
    }
    # Pub/sub: a group message is one PUBLISH, fanned out inside each server process; the
    # list-based layer (channels_redis.core) costs several round trips per group message and
    # slows down with many connections per process (bench/websocket_fanout.py). Live updates
    # are a view of stored data, so at-most-once delivery is what they need.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "emailseq"},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Analytics. On PostgreSQL, tracking hits are appended to a spool of files on this host and
# written in batches (analytics/intake.py); pending facts are folded into the rollups every
# ANALYTICS_FLUSH_SECONDS.
TRACKING_BUFFER = env_bool("TRACKING_BUFFER", DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql")
TRACKING_SPOOL_DIR = Path(env_str("TRACKING_SPOOL_DIR", str(VAR_DIR / "tracking-spool")))
TRACKING_DRAIN_SECONDS = env_float("TRACKING_DRAIN_SECONDS", 1.0, minimum=0.05)
ANALYTICS_FLUSH_SECONDS = env_float("ANALYTICS_FLUSH_SECONDS", 2.0, minimum=0.1)

# The engine. Batches keep each transaction short and each Celery task worth its overhead.
SCHEDULER_INTERVAL_SECONDS = env_float("SCHEDULER_INTERVAL_SECONDS", 2.0, minimum=0.1)
ENGINE_CLAIM_BATCH_SIZE = env_int("ENGINE_CLAIM_BATCH_SIZE", 500, minimum=1)
ENGINE_TICK_BUDGET_SECONDS = env_float("ENGINE_TICK_BUDGET_SECONDS", 20.0, minimum=0.1)
SEND_BATCH_SIZE = env_int("SEND_BATCH_SIZE", 200, minimum=1)
# A message handed to the broker but not picked up within this time is dispatched again.
SEND_DISPATCH_GRACE_SECONDS = env_int("SEND_DISPATCH_GRACE_SECONDS", 120, minimum=1)
# A message claimed by a worker that died is released after this lease.
SEND_LEASE_SECONDS = env_int("SEND_LEASE_SECONDS", 600, minimum=10)
SEND_MAX_ATTEMPTS = env_int("SEND_MAX_ATTEMPTS", 8, minimum=1)
SEND_RETRY_BASE_SECONDS = env_int("SEND_RETRY_BASE_SECONDS", 60, minimum=1)
# Delivery routes (delivery.routing): a route's circuit opens after this many connection
# failures or throttling replies in a row, lets one probe through after the cool-down, and
# doubles the cool-down after each failed probe up to the maximum. A throttled route rests for
# ROUTE_THROTTLE_PAUSE_SECONDS and then sends at a reduced share of its per-second limit.
ROUTE_CIRCUIT_FAILURES = env_int("ROUTE_CIRCUIT_FAILURES", 3, minimum=1)
ROUTE_CIRCUIT_COOLDOWN_SECONDS = env_float("ROUTE_CIRCUIT_COOLDOWN_SECONDS", 60.0, minimum=0.1)
ROUTE_CIRCUIT_MAX_COOLDOWN_SECONDS = env_float("ROUTE_CIRCUIT_MAX_COOLDOWN_SECONDS", 3600.0, minimum=0.1)
ROUTE_THROTTLE_PAUSE_SECONDS = env_float("ROUTE_THROTTLE_PAUSE_SECONDS", 60.0, minimum=0.1)
# An organization's SMTP route may only reach public addresses (checked when it is saved and
# again on each connection), so no one with an admin role can point the workers at this
# network's own services. On only where every organization is trusted (tests, a private relay
# on the LAN). EMAIL_URL is the operator's and is never checked.
ROUTE_ALLOW_PRIVATE_HOSTS = env_bool("ROUTE_ALLOW_PRIVATE_HOSTS", False)

# Celery: with REDIS_URL a real broker and workers; without it, tasks run in the calling
# process (the scheduler thread of `manage.py serve`, or `manage.py tick`).
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"delivery.tasks.*": {"queue": "send"}}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# Every periodic schedule lives here. django-celery-beat's DatabaseScheduler copies these
# entries into its tables, where staff can see them in the admin. Each task is safe to run
# twice at once: the rows it works on are claimed with SKIP LOCKED.
CELERY_BEAT_SCHEDULE = {
    "imports-resume": {
        "task": "subscribers.tasks.imports_resume",
        "schedule": 60.0,
        "options": {"expires": 50},
    },
    "idempotency-expire": {
        "task": "api.tasks.idempotency_records_expire",
        "schedule": 3600.0,
        "options": {"expires": 600},
    },
    "sequences-tick": {
        "task": "sequences.tasks.tick",
        "schedule": SCHEDULER_INTERVAL_SECONDS,
        "options": {"expires": 30},
    },
    "analytics-flush": {
        "task": "analytics.tasks.rollups_flush",
        "schedule": ANALYTICS_FLUSH_SECONDS,
        "options": {"expires": max(ANALYTICS_FLUSH_SECONDS * 5, 10)},
    },
    "experiments-evaluate": {
        "task": "experiments.tasks.experiments_evaluate",
        "schedule": 300.0,
        "options": {"expires": 240},
    },
}

# REST API (api/ holds the shared machinery; each app has its api.py).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.ApiKeyAuthentication",
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.RolePermission"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.CallerRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "api_key": env_str("API_RATE_PER_KEY", "1200/min"),
        "user": env_str("API_RATE_PER_USER", "600/min"),
        "anonymous": env_str("API_RATE_ANONYMOUS", "60/min"),
    },
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.CursorPage",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "api.problems.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "api.schema.ProblemAwareAutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DATETIME_FORMAT": "iso-8601",
    "COERCE_DECIMAL_TO_STRING": False,
}
API_MAX_PAGE_SIZE = 500
# /metrics answers only `Authorization: Bearer <METRICS_TOKEN>` when set (open when empty).
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
API_BULK_LIMIT = env_int("API_BULK_LIMIT", 10_000, minimum=1)
IDEMPOTENCY_KEY_TTL_HOURS = env_int("IDEMPOTENCY_KEY_TTL_HOURS", 24, minimum=1)
SPECTACULAR_SETTINGS = {
    "TITLE": "emailseq API",
    "DESCRIPTION": (
        "Contacts, sequences, templates, events, imports and analytics of one organization. "
        "Authenticate with `Authorization: Api-Key <key>` (organization keys) or "
        "`Authorization: Bearer <JWT>` (users; send `X-Organization: <slug>` when you belong to "
        "several). Errors are RFC 9457 problem details."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "SequenceStatusEnum": "sequences.models.Sequence.Status",
        "EnrollmentStatusEnum": "sequences.models.Enrollment.Status",
        "ContactStatusEnum": "subscribers.models.Contact.Status",
        "MessageStatusEnum": "delivery.models.Message.Status",
        "StepKindEnum": "sequences.models.Step.Kind",
        "DeliveryRouteKindEnum": "delivery.models.DeliveryRoute.Kind",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": dt.timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15, minimum=1)),
    "REFRESH_TOKEN_LIFETIME": dt.timedelta(days=env_int("JWT_REFRESH_DAYS", 7, minimum=1)),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": True,
}
# Uploaded files (CSV imports). On several machines this must be shared storage.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 20 * 1024 * 1024, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
IMPORT_MAX_FILE_BYTES = env_int("IMPORT_MAX_FILE_BYTES", 512 * 1024 * 1024, minimum=1024)
IMPORT_CHUNK_ROWS = env_int("IMPORT_CHUNK_ROWS", 20_000, minimum=1)
IMPORT_LEASE_SECONDS = env_int("IMPORT_LEASE_SECONDS", 300, minimum=10)

# Templates: limits that bound rendering time and size.
TEMPLATE_LOOP_LIMIT = env_int("TEMPLATE_LOOP_LIMIT", 10_000, minimum=1)
TEMPLATE_OUTPUT_LIMIT_BYTES = env_int("TEMPLATE_OUTPUT_LIMIT_BYTES", 512_000, minimum=1024)

# Consent: public sign-up forms with double opt-in (subscribers.consent). Sign-ups are
# cross-site POSTs without CSRF tokens, so each client address gets a budget per hour and each
# address at most a few confirmation emails a day (counted in the cache).
CONFIRMATION_LINK_DAYS = env_int("CONFIRMATION_LINK_DAYS", 7, minimum=1)
SUBSCRIBE_REQUESTS_PER_IP_PER_HOUR = env_int("SUBSCRIBE_REQUESTS_PER_IP_PER_HOUR", 30, minimum=1)
CONFIRMATION_EMAILS_PER_ADDRESS_PER_DAY = env_int("CONFIRMATION_EMAILS_PER_ADDRESS_PER_DAY", 3, minimum=1)
# Sender of confirmation emails; its display name is the organization's name.
TRANSACTIONAL_FROM_EMAIL = env_str("TRANSACTIONAL_FROM_EMAIL", "")

# Mail.
EMAIL = parse_email_url("EMAIL_URL", env_str("EMAIL_URL", "") or None, mailbox_default=VAR_DIR / "mailbox")
MESSAGE_ID_DOMAIN = env_str("MESSAGE_ID_DOMAIN", BASE_URL_HOST)
UNSUBSCRIBE_MAILTO_DOMAIN = env_str("UNSUBSCRIBE_MAILTO_DOMAIN", MESSAGE_ID_DOMAIN)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", f"emailseq@{MESSAGE_ID_DOMAIN}")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_TIMEOUT = EMAIL.timeout
if EMAIL.kind == "smtp":
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST, EMAIL_PORT = EMAIL.host, EMAIL.port
    EMAIL_HOST_USER, EMAIL_HOST_PASSWORD = EMAIL.username, EMAIL.password
    EMAIL_USE_TLS = EMAIL.security == "starttls"
    EMAIL_USE_SSL = EMAIL.security == "tls"
elif EMAIL.kind == "anymail":
    EMAIL_BACKEND = EMAIL.anymail_backend
    ANYMAIL = dict(EMAIL.anymail_settings)
elif EMAIL.kind == "console":
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
else:
    EMAIL_BACKEND = "delivery.mailbox.CaptureEmailBackend"
MAILBOX_DIR = Path(EMAIL.mailbox_dir) if EMAIL.kind == "capture" else VAR_DIR / "mailbox"

# Sending domains (deliverability): a sequence starts only with a sender on a verified domain of
# its organization, unless this is off. Off by default while mail is captured or printed (it
# never reaches an inbox, so DNS has nothing to say about it); on as soon as EMAIL_URL sends.
REQUIRE_VERIFIED_SENDING_DOMAIN = env_bool("REQUIRE_VERIFIED_SENDING_DOMAIN", EMAIL.kind in ("smtp", "anymail"))
# What the SPF record of a sending domain must name for our route: include:<each SPF_INCLUDE>,
# ip4:/ip6:<each SPF_IP>. Both empty: the check can only say whether there is an SPF record.
SPF_INCLUDE = env_list("SPF_INCLUDE", [])
SPF_IP = env_list("SPF_IP", [])
# The rua= address suggested for DMARC aggregate reports; empty: dmarc-reports@<the domain>.
DMARC_REPORT_ADDRESS = env_str("DMARC_REPORT_ADDRESS", "")
# DNS checks: nameservers to ask (empty: the system's), their port, and the time one check may take.
DNS_NAMESERVERS = env_list("DNS_NAMESERVERS", [])
DNS_PORT = env_int("DNS_PORT", 53, minimum=1, maximum=65535)
DNS_TIMEOUT_SECONDS = env_float("DNS_TIMEOUT_SECONDS", 3.0, minimum=0.1)

# Bounces: each message's envelope sender is bounce+<signed id>@BOUNCE_DOMAIN, a domain whose MX
# is `manage.py bounce_server`, which also takes ARF complaints sent to any address there or to
# BOUNCE_COMPLAINT_ADDRESSES (feedback-loop addresses registered elsewhere).
BOUNCE_DOMAIN = env_str("BOUNCE_DOMAIN", MESSAGE_ID_DOMAIN).lower().rstrip(".")
BOUNCE_COMPLAINT_ADDRESSES = [address.lower() for address in env_list("BOUNCE_COMPLAINT_ADDRESSES", [])]
BOUNCE_MAX_MESSAGE_BYTES = env_int("BOUNCE_MAX_MESSAGE_BYTES", 10 * 1024 * 1024, minimum=64 * 1024)
# Provider webhooks (/webhooks/anymail/<esp>/tracking/): HTTP basic-auth "user:password" pairs
# (several while rotating), and each provider's own signing key as ANYMAIL_<ESP>_<SETTING>
# (ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY, ANYMAIL_POSTAL_WEBHOOK_KEY, ...).
_webhook_secrets = env_list("ANYMAIL_WEBHOOK_SECRET", [])
ANYMAIL = {
    **(ANYMAIL if EMAIL.kind == "anymail" else {}),
    **{
        name.removeprefix("ANYMAIL_"): value
        for name, value in os.environ.items()
        if name.startswith("ANYMAIL_") and name != "ANYMAIL_WEBHOOK_SECRET"
    },
    **({"WEBHOOK_SECRET": _webhook_secrets} if _webhook_secrets else {}),
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the app directories: no collectstatic step is needed to start.
WHITENOISE_USE_FINDERS = True

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        app: {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False}
        for app in ("organizations", "subscribers", "sequences", "delivery", "emailseq")
    },
}
