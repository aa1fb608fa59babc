#
# Varnish configuration for cachesweeper.edges.Varnish (Varnish 6.0+, VCL 4.1,
# varnish-modules for xkey). Copy it, set the backend and the purgers ACL, and
# load it with `varnishd -f varnish.vcl` (or include its subroutines in yours).
#
# What it does
#   * Caches only what Django says is cacheable: a response needs Cache-Control
#     (max-age / s-maxage, as `edge_cache` sets) or Expires. Without either,
#     Varnish's builtin rules would keep it for default_ttl (120 s) -- a page
#     nobody asked to cache at the edge.
#   * Django tags each response with its dependency names in the `xkey`
#     header; the xkey vmod indexes objects by them. The header is stripped
#     before delivery (send `X-Cachesweeper-Debug: 1` from a purger to keep it).
#   * Adds `X-Cache: HIT` or `X-Cache: MISS` to every delivered response.
#   * ESI, for pages with holes ({% nocache %}) and the Varnish edge's
#     OPTIONS["esi"] = True: every request announces
#     `Surrogate-Capability: cachesweeper="ESI/1.0"`, so Django answers such a
#     page with an <esi:include> per hole, public and tagged like any page,
#     plus `Surrogate-Control: content="ESI/1.0"`; only then is ESI processed
#     (beresp.do_esi). One copy serves every anonymous visitor; each include
#     goes to Django (cachesweeper.urls), `Cache-Control: private, no-store`,
#     never cached. An assembled page is delivered `private`, without ETag.
#     Varnish parses a body for ESI only when it starts with "<".
#   * The CSRF cookie: Varnish drops the Set-Cookie of an include request, so
#     a form in a hole would get a token for a cookie its visitor never
#     receives (the POST gets 403). An ESI page names the cookie its holes may
#     need (X-Cachesweeper-Csrf-Cookie: CSRF_COOKIE_NAME, so a renamed cookie
#     needs no change here) and a view that mints it (X-Cachesweeper-Csrf-Url).
#     For a visitor without that cookie, vcl_deliver restarts to that view
#     (Django's own get_token, so the secret is Django's), keeps its
#     Set-Cookie, restarts back to the page (a hit), gives the include
#     requests the cookie, and delivers the page with the Set-Cookie. Both
#     headers stay on the cached object and are stripped on delivery.
#
# Purge protocol (requests from the purgers ACL only; others get 403)
#   PURGE /      xkey-purge: a b c      hard purge of objects tagged a, b or c
#   PURGE /      xkey-softpurge: a b c  soft purge: expired, kept for grace
#   PURGE /path  Host: www.example.com  purge that URL (all its Vary variants)
#   PURGE /path  + X-Purge-Soft: 1      the same, soft (objects stay for grace)
#   PURGE /      X-Purge-All: 1         ban every object in the cache
# Success is a synthetic 200; anything else is an error that cachesweeper
# retries. The xkey vmod has no wildcard, hence the separate purge-all ban.
# A URL purge must carry the site's public Host (the cache hashes on it), not
# the cache's own address.
#

vcl 4.1;

import std;
import purge;
import xkey;
import cookie;  # Varnish 6.4+ (6.0: from varnish-modules)
import header;  # varnish-modules

# Your Django server (gunicorn, uwsgi, ...).
backend default {
    .host = "127.0.0.1";
    .port = "8000";
}

# Who may purge: the hosts running Django (and its purge worker).
acl purgers {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    if (req.method == "PURGE") {
        if (client.ip !~ purgers) {
            return (synth(403, "Forbidden"));
        }
        if (req.http.X-Purge-All) {
            # obj.* only: the ban lurker can evict matches in the background.
            if (std.ban("obj.status != 0")) {
                return (synth(200, "Banned"));
            }
            return (synth(500, "Ban failed: " + std.ban_error()));
        }
        if (req.http.xkey-purge) {
            set req.http.X-Purged = xkey.purge(req.http.xkey-purge);
            return (synth(200, "Purged " + req.http.X-Purged));
        }
        if (req.http.xkey-softpurge) {
            set req.http.X-Purged = xkey.softpurge(req.http.xkey-softpurge);
            return (synth(200, "Soft-purged " + req.http.X-Purged));
        }
        if (req.http.X-Purge-Soft) {
            # Look the URL up; vcl_hit / vcl_miss soft-purge its variants.
            return (hash);
        }
        return (purge);
    }
    # A client must not smuggle purge headers into a normal request.
    unset req.http.X-Purged;
    call cachesweeper_esi_recv;
}

sub cachesweeper_esi_recv {
    # Django sends pages with holes as ESI includes only to requests that say so.
    set req.http.Surrogate-Capability = "cachesweeper=ESI/1.0";
    if (req.restarts == 0) {
        # Where the CSRF cookie handling keeps its state: never from a client.
        unset req.http.X-Cachesweeper-Page;
        unset req.http.X-Cachesweeper-Set-Cookie;
        unset req.http.X-Cachesweeper-Cookie;
        unset req.http.X-Cachesweeper-Csrf-Only;
        if (req.esi_level == 0 && (req.method == "GET" || req.method == "HEAD") &&
            req.http.Cookie ~ "^\s*csrftoken=[^;]*;?\s*$") {
            # Only the CSRF cookie (Django's default CSRF_COOKIE_NAME: change it here
            # if you renamed it): look the page up as a visitor without cookies does,
            # instead of passing every returning visitor to Django. Django gets the
            # cookie (vcl_backend_fetch) and shares only what every such visitor gets;
            # the includes of the page get it too (they copy the client's headers).
            set req.http.X-Cachesweeper-Csrf-Only = req.http.Cookie;
            unset req.http.Cookie;
        }
    }
    if (req.esi_level > 0 && req_top.http.X-Cachesweeper-Cookie) {
        # An include of a page whose visitor just got a CSRF cookie: render for it.
        if (req.http.Cookie) {
            set req.http.Cookie = req.http.Cookie + "; " + req_top.http.X-Cachesweeper-Cookie;
        } else {
            set req.http.Cookie = req_top.http.X-Cachesweeper-Cookie;
        }
    }
    if (req.http.X-Cachesweeper-Page && !req.http.X-Cachesweeper-Set-Cookie) {
        # The restart to the view that mints the cookie: one visitor's, never cached.
        return (pass);
    }
}

sub vcl_hit {
    if (req.method == "PURGE") {
        set req.http.X-Purged = purge.soft();
        return (synth(200, "Soft-purged " + req.http.X-Purged));
    }
}

sub vcl_miss {
    if (req.method == "PURGE") {
        set req.http.X-Purged = purge.soft();
        return (synth(200, "Soft-purged " + req.http.X-Purged));
    }
}

sub vcl_backend_fetch {
    if (bereq.http.X-Cachesweeper-Csrf-Only) {
        set bereq.http.Cookie = bereq.http.X-Cachesweeper-Csrf-Only;
    }
}

sub vcl_backend_response {
    if (bereq.http.X-Cachesweeper-Csrf-Only) {
        # Stored for lookups without cookies (see vcl_recv): it varies as one of them.
        unset bereq.http.Cookie;
        unset bereq.http.X-Cachesweeper-Csrf-Only;
    }
    if (beresp.http.Surrogate-Control ~ "ESI/1\.0") {
        # A page with holes as includes (cachesweeper.edges.Varnish, esi=True).
        unset beresp.http.Surrogate-Control;
        set beresp.do_esi = true;
    }
    if (!beresp.http.Cache-Control && !beresp.http.Expires) {
        # Not marked cacheable by Django: do not cache it, and do not make
        # other requests for it wait (hit-for-miss for two minutes).
        set beresp.ttl = 120s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    # Everything else: the builtin rules (Cache-Control, Set-Cookie, Vary: *).
}

sub vcl_deliver {
    if (req.esi_level == 0) {
        call cachesweeper_esi_deliver;
    }
    unset resp.http.X-Cachesweeper-Csrf-Cookie;
    unset resp.http.X-Cachesweeper-Csrf-Url;
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
    if (!(req.http.X-Cachesweeper-Debug && client.ip ~ purgers)) {
        unset resp.http.xkey;
    }
}

sub cachesweeper_esi_deliver {
    if (req.http.X-Cachesweeper-Page && !req.http.X-Cachesweeper-Set-Cookie) {
        # Back from the view that mints the CSRF cookie: keep it, return to the page.
        if (resp.http.Set-Cookie) {
            set req.http.X-Cachesweeper-Set-Cookie = resp.http.Set-Cookie;
            set req.http.X-Cachesweeper-Cookie = regsub(resp.http.Set-Cookie, ";.*$", "");
        } else {
            set req.http.X-Cachesweeper-Set-Cookie = "-";  # none came: do not ask again
        }
        set req.url = req.http.X-Cachesweeper-Page;
        return (restart);
    }
    if (resp.http.X-Cachesweeper-Csrf-Cookie && resp.http.X-Cachesweeper-Csrf-Url) {
        if (req.http.X-Cachesweeper-Cookie) {
            header.append(resp.http.Set-Cookie, req.http.X-Cachesweeper-Set-Cookie);
        } elsif (!req.http.X-Cachesweeper-Set-Cookie && !req.http.X-Cachesweeper-Csrf-Only) {
            if (req.http.Cookie) {
                cookie.parse(req.http.Cookie);
            }
            if (!req.http.Cookie || !cookie.isset(resp.http.X-Cachesweeper-Csrf-Cookie)) {
                # Its holes need a CSRF cookie this visitor has not got: fetch one first.
                set req.http.X-Cachesweeper-Page = req.url;
                set req.url = resp.http.X-Cachesweeper-Csrf-Url;
                return (restart);
            }
        }
    }
    if (obj.can_esi) {
        # Assembled for this visitor (their holes): no other cache may keep it.
        if (!resp.http.Cache-Control) {
            set resp.http.Cache-Control = "private";
        } elsif (resp.http.Cache-Control !~ "(?i)\bprivate\b") {
            set resp.http.Cache-Control = "private" + regsuball(
                ", " + resp.http.Cache-Control, "(?i),\s*public\s*(?=,|$)", "");
        }
        unset resp.http.ETag;
        unset resp.http.Last-Modified;
    }
}
