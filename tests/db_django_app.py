"""A minimal Django project in one module (settings, a model, views), for test_web_db.py.

Nothing here knows about dhaga. ``DATABASE_PARAMS`` (JSON: host, port, user, dbname) names
the PostgreSQL database, ``CONN_MAX_AGE`` the connection lifetime. The ORM queries
``django.contrib.auth``'s ``User`` table, created at import by ``migrate``.
"""

import json
import os

import django
from django.conf import settings

_db = json.loads(os.environ["DATABASE_PARAMS"])
settings.configure(
    DEBUG=False,
    SECRET_KEY="test-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
    MIDDLEWARE=[],
    DATABASES={"default": {
        "ENGINE": "django.db.backends.postgresql", "HOST": _db["host"], "PORT": _db["port"],
        "USER": _db["user"], "NAME": _db["dbname"],
        "CONN_MAX_AGE": float(os.environ.get("CONN_MAX_AGE", "0")),
    }},
    USE_TZ=True,
)
django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

call_command("migrate", verbosity=0)
User.objects.get_or_create(username="dhaga")
connection.close()  # the set-up's connection (the importing thread's own, not a request's)


def orm(request):
    """One ORM query and one raw query that sleeps on the server."""
    user = User.objects.get(username="dhaga")
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid() FROM pg_sleep(%s)", [float(request.GET.get("s", 0.1))])
        pid = cur.fetchone()[0]
    return JsonResponse({"user": user.username, "pid": pid})


def backends(request):
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                    "AND pid <> pg_backend_pid() AND datname = current_database()")
        n = cur.fetchone()[0]
    return JsonResponse({"others": n})


urlpatterns = [path("orm", orm), path("backends", backends)]
application = get_wsgi_application()
