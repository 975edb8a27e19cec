"""A single-file Django project with one view, for the memory comparison: Django's import cost is what
load-once (fork after import) saves per worker."""
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY='tsgi-bench-only',
    ALLOWED_HOSTS=['*'],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[
        'django.middleware.common.CommonMiddleware',
    ],
    INSTALLED_APPS=[
        'django.contrib.contenttypes',
        'django.contrib.auth',
    ],
    DATABASES={},
    USE_TZ=True,
)

import django  # noqa: E402

django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


def hello(request):
    return HttpResponse('Hello World')


urlpatterns = [path('', hello)]

application = get_wsgi_application()
