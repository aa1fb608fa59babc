from django.urls import path

from . import views

app_name = "blog"

urlpatterns = [
    path("", views.article_list, name="article_list"),
    path("articles/<slug:slug>/", views.article_detail, name="article_detail"),
    path("articles/<slug:slug>/edit/", views.article_edit, name="article_edit"),
    path("articles/<slug:slug>/comment/", views.add_comment, name="add_comment"),
    path("comments/<int:pk>/vote/", views.vote, name="vote"),
    path("authors/<int:pk>/", views.author_detail, name="author_detail"),
]
