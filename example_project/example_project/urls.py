from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("blog.urls")),
]

if "debug_toolbar" in settings.INSTALLED_APPS:  # see settings.py: only when it is installed
    urlpatterns.append(path("__debug__/", include("debug_toolbar.urls")))
