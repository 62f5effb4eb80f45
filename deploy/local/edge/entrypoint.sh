#!/bin/bash
# The edge's entrypoint: nginx with an `upstream` of every api replica, followed as they
# come and go.
#
# An upstream block is what lets nginx keep idle connections to the replicas open and
# reuse them (`keepalive`); `proxy_pass` with a variable, which re-resolves by itself,
# keeps no such pool and opens a new TCP connection per request. Debian bookworm's nginx
# (1.22) has no `resolve` parameter on upstream servers, so this script resolves the api
# service name every QF_EDGE_RESOLVE_S seconds (Docker's DNS, one address per replica)
# and reloads nginx when the set of addresses changes. A reload is graceful: requests in
# flight finish on the old workers.
set -euo pipefail

API_HOST="${QF_EDGE_API_HOST:-api}"
API_PORT="${QF_EDGE_API_PORT:-8080}"
RESOLVE_S="${QF_EDGE_RESOLVE_S:-3}"
UPSTREAM=/etc/nginx/upstream/api.conf

addresses() {
    getent ahostsv4 "$API_HOST" | awk '{print $1}' | sort -u || true
}

render() {  # $1: addresses, one per line
    {
        echo "# written by entrypoint.sh from getent ahostsv4 $API_HOST"
        echo "upstream api {"
        if [ -z "$1" ]; then
            # no replica resolves (yet): answer 502 until one does
            echo "    server 127.0.0.1:1 down;"
        fi
        for a in $1; do
            # a replica that refuses connections is skipped for 2 s
            echo "    server $a:$API_PORT max_fails=1 fail_timeout=2s;"
        done
        echo "    keepalive 128;"
        echo "    keepalive_requests 100000;"
        echo "    keepalive_timeout 60s;"
        echo "}"
    } > "$UPSTREAM.tmp"
    mv "$UPSTREAM.tmp" "$UPSTREAM"
}

follow() {
    local current="$1" now
    while sleep "$RESOLVE_S"; do
        now="$(addresses)"
        if [ -n "$now" ] && [ "$now" != "$current" ]; then
            render "$now"
            if nginx -t -q 2>/dev/null && nginx -s reload; then
                echo "edge: api replicas now $(echo "$now" | tr '\n' ' ')" >&2
                current="$now"
            fi
        fi
    done
}

current="$(addresses)"
render "$current"
echo "edge: api replicas $(echo "$current" | tr '\n' ' ')" >&2
follow "$current" &
exec nginx -g "daemon off;"
