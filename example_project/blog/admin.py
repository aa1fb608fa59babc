"""Admin for the example: saving here sweeps exactly like the blog's own forms do."""

from django.contrib import admin

from .models import Article, Author, Comment, Vote


class CommentInline(admin.TabularInline):
    model = Comment
    extra = 0


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    list_display = ["title", "author", "published", "updated_at"]
    prepopulated_fields = {"slug": ["title"]}
    inlines = [CommentInline]


@admin.register(Comment)
class CommentAdmin(admin.ModelAdmin):
    list_display = ["author_name", "article", "updated_at"]


admin.site.register(Author)
admin.site.register(Vote)
