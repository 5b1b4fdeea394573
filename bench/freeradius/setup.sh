#!/usr/bin/env bash
# Builds a private FreeRADIUS 3.2 configuration for the benchmark baseline from the Debian
# package's /etc/freeradius/3.0 (left untouched), and optionally runs it in the foreground.
#
#   bench/freeradius/setup.sh [--dir DIR] [--port 18120] [--secret S] [--users N]
#                             [--password PW] [--users-file FILE] [--status-server]
#                             [--reply-message-authenticator] [--run]
#
# Prints the directory on stdout. With --run, then execs `freeradius -f -d DIR` (foreground,
# file logging only; -X is far too slow to benchmark).
#
# What the copy changes: no `default` / `inner-tunnel` sites, only the always/pap/files/expr/
# attr_filter modules (no eap, mschap, ...), proxy_requests = no, runs as the invoking user,
# logs to DIR/log (auth logging off), max_requests raised to 262144 (the stock 16384 counts
# answered requests kept for cleanup_delay = 5 s, the duplicate cache, and caps the rate at
# ~3k/s), one site `bench` with `listen` on 127.0.0.1:PORT (auth) and
#   authorize { files; pap }  authenticate { pap }
# a users file with userN Cleartext-Password := "PW" for N in 0..users-1, and clients.conf with
# 127.0.0.1 and the secret, require_message_authenticator = yes (3.2.1 has no
# limit_proxy_state; that arrived in 3.2.5 with the Blast-RADIUS fixes).
# --users-file FILE: use FILE as the users file instead (--users/--password are then unused).
# --status-server: answer Status-Server (Autz-Type Status-Server { ok }).
# --reply-message-authenticator: put Message-Authenticator in every Access-Accept, -Reject and
#   -Challenge (3.2.1 sends none for PAP; 3.2.5 does by default since Blast-RADIUS).
set -euo pipefail

src=/etc/freeradius/3.0
dir=""
port=18120
secret=testing123
users=1000
password=123456
run=0
users_from=""
status_server=0
reply_ma=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --secret) secret="$2"; shift 2 ;;
    --users) users="$2"; shift 2 ;;
    --password) password="$2"; shift 2 ;;
    --users-file) users_from="$2"; shift 2 ;;
    --status-server) status_server=1; shift ;;
    --reply-message-authenticator) reply_ma=1; shift ;;
    --run) run=1; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

command -v freeradius >/dev/null || { echo "freeradius is not installed (apt-get install freeradius)" >&2; exit 1; }
[ -d "$src" ] || { echo "$src missing" >&2; exit 1; }
if [ -z "$dir" ]; then
  dir=$(mktemp -d /tmp/vip-bench-freeradius.XXXXXX)
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
cp -a "$src/." "$dir/"
mkdir -p "$dir/log" "$dir/run"

# Sites: only ours.
rm -f "$dir"/sites-enabled/*
# Modules: only what PAP from a users file needs.
rm -f "$dir"/mods-enabled/*
for m in always pap files expr attr_filter; do
  ln -s ../mods-available/$m "$dir/mods-enabled/$m"
done

conf="$dir/radiusd.conf"
sed -i \
  -e "s|^raddbdir = .*|raddbdir = $dir|" \
  -e "s|^logdir = .*|logdir = $dir/log|" \
  -e "s|^run_dir = .*|run_dir = $dir/run|" \
  -e "s|^proxy_requests  *= .*|proxy_requests = no|" \
  -e "s|^max_requests = .*|max_requests = 262144|" \
  -e "s|^\(\s*\)user = freerad|\1# user = freerad|" \
  -e "s|^\(\s*\)group = freerad|\1# group = freerad|" \
  "$conf"
grep -q "^proxy_requests = no" "$conf" || { echo "could not set proxy_requests = no" >&2; exit 1; }

cat > "$dir/clients.conf" <<CLIENTS
client bench {
	ipaddr = 127.0.0.1
	secret = $secret
	require_message_authenticator = yes
	nas_type = other
}
CLIENTS

autz_status=""
if [ "$status_server" = 1 ]; then
  autz_status="Autz-Type Status-Server {
			ok
		}"
  if [ "$reply_ma" = 1 ]; then
    autz_status="Autz-Type Status-Server {
			update reply {
				Message-Authenticator := 0x00
			}
			ok
		}"
  fi
fi
reply_ma_update=""
reject_ma=""
if [ "$reply_ma" = 1 ]; then
  reply_ma_update="update reply {
			Message-Authenticator := 0x00
		}"
  reject_ma="Post-Auth-Type REJECT {
			update reply {
				Message-Authenticator := 0x00
			}
		}
		Post-Auth-Type Challenge {
			update reply {
				Message-Authenticator := 0x00
			}
		}"
fi

cat > "$dir/sites-enabled/bench" <<SITE
server bench {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = $port
	}
	authorize {
		$autz_status
		files
		pap
	}
	authenticate {
		pap
	}
	post-auth {
		$reply_ma_update
		$reject_ma
	}
}
SITE

users_file="$dir/mods-config/files/authorize"
: > "$users_file"
if [ -n "$users_from" ]; then
  cp "$users_from" "$users_file"
else
awk -v n="$users" -v pw="$password" 'BEGIN { for (i = 0; i < n; i++) printf "user%d Cleartext-Password := \"%s\"\n", i, pw }' > "$users_file"
fi

freeradius -C -d "$dir" >"$dir/log/check.log" 2>&1 || { echo "freeradius -C failed:" >&2; tail -20 "$dir/log/check.log" >&2; exit 1; }
echo "$dir"
if [ "$run" = 1 ]; then
  exec freeradius -f -d "$dir"
fi
