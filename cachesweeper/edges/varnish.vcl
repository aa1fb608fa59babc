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

sub vcl_backend_response {
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
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
    if (!(req.http.X-Cachesweeper-Debug && client.ip ~ purgers)) {
        unset resp.http.xkey;
    }
}
