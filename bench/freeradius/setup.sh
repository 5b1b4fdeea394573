#!/usr/bin/env bash
# Builds a private FreeRADIUS 3.2 configuration for the benchmark baseline from the Debian
# package's /etc/freeradius/3.0 (left untouched), and optionally runs it in the foreground.
#
#   bench/freeradius/setup.sh [--dir DIR] [--port 18120] [--secret S] [--users N]
#                             [--password PW] [--users-file FILE] [--status-server]
#                             [--reply-message-authenticator] [--run]
#                             [--rest-uri URL --rest-ca FILE --rest-cert FILE --rest-key FILE
#                              [--rest-pool N] [--threads N]]
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
# --rest-uri URL (with --rest-ca/--rest-cert/--rest-key, PEM files): FreeRADIUS + rlm_rest, the
#   HTTP-upstream anchor (Debian package freeradius-rest). Instead of files/pap, the site checks
#   the code with VIP: one mutual-TLS HTTPS POST per Access-Request of a SOAP CheckOtpRequest
#   (userId = User-Name, otp = User-Password) to URL, e.g.
#   https://127.0.0.1:PORT/vipuserservices/AuthenticationService_1_8, over kept-alive
#   connections (HTTP/1.1, a pool of --rest-pool connections, default 32 = the thread pool's
#   max_servers). authorize: reject a User-Name outside ^[A-Za-z0-9._@-]{1,128}$ or a
#   User-Password outside ^[A-Za-z0-9]{6,10}$ first (rlm_rest does not XML-escape what it
#   expands into the body), send `SOAPAction: ""`, call rest, and accept only on HTTP 200 with
#   <status>0000</status> in the body (VIP answers 200 with another status for a wrong code);
#   post-auth strips the REST-HTTP-* attributes. Modules: always, attr_filter, expr, rest.
#   The server certificate is checked against --rest-ca and the URL's host.
# --threads N: the thread pool's start_servers and max_servers (stock 5 and 32).
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
rest_uri=""
rest_ca=""
rest_cert=""
rest_key=""
rest_pool=32
threads=""
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
    --rest-uri) rest_uri="$2"; shift 2 ;;
    --rest-ca) rest_ca="$2"; shift 2 ;;
    --rest-cert) rest_cert="$2"; shift 2 ;;
    --rest-key) rest_key="$2"; shift 2 ;;
    --rest-pool) rest_pool="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --run) run=1; shift ;;
    -h|--help) sed -n '2,39p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

command -v freeradius >/dev/null || { echo "freeradius is not installed (apt-get install freeradius)" >&2; exit 1; }
[ -d "$src" ] || { echo "$src missing" >&2; exit 1; }
if [ -n "$rest_uri" ]; then
  [ -n "$rest_ca" ] && [ -n "$rest_cert" ] && [ -n "$rest_key" ] ||
    { echo "--rest-uri needs --rest-ca, --rest-cert and --rest-key" >&2; exit 2; }
  for f in "$rest_ca" "$rest_cert" "$rest_key"; do
    [ -r "$f" ] || { echo "cannot read $f" >&2; exit 1; }
  done
  case "$rest_uri" in
    http://*|https://*) ;;
    *) echo "--rest-uri must be an http(s) URL: $rest_uri" >&2; exit 2 ;;
  esac
  [ -e /usr/lib/freeradius/rlm_rest.so ] && [ -e "$src/mods-available/rest" ] ||
    { echo "rlm_rest is not installed (apt-get install freeradius-rest)" >&2; exit 3; }
  rest_ca=$(cd "$(dirname "$rest_ca")" && pwd)/$(basename "$rest_ca")
  rest_cert=$(cd "$(dirname "$rest_cert")" && pwd)/$(basename "$rest_cert")
  rest_key=$(cd "$(dirname "$rest_key")" && pwd)/$(basename "$rest_key")
fi
if [ -z "$dir" ]; then
  dir=$(mktemp -d /tmp/vip-bench-freeradius.XXXXXX)
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
cp -a "$src/." "$dir/"
mkdir -p "$dir/log" "$dir/run"

# Sites: only ours.
rm -f "$dir"/sites-enabled/*
# Modules: only what PAP from a users file needs (or, with --rest-uri, what the REST site needs).
rm -f "$dir"/mods-enabled/*
if [ -n "$rest_uri" ]; then mods="always expr attr_filter"; else mods="always pap files expr attr_filter"; fi
for m in $mods; do
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
if [ -n "$threads" ]; then
  sed -i -e "s|^\(\s*\)start_servers = .*|\1start_servers = $threads|" \
    -e "s|^\(\s*\)max_servers = .*|\1max_servers = $threads|" "$conf"
fi

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

authorize_body="files
		pap"
authenticate_body="pap"
rest_strip=""
if [ -n "$rest_uri" ]; then
  connect_uri=$(printf '%s' "$rest_uri" | sed -E 's|^(https?://[^/]+).*|\1/|')
  # The SOAP body: single-quoted XML attributes, so that the configuration string needs no
  # escaping; %{User-Name} and %{User-Password} are expanded as they are (checked first).
  soap="<?xml version='1.0' encoding='UTF-8'?><soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/' xmlns:vip='https://schemas.symantec.com/vip/2011/04/vipuserservices'><soapenv:Header/><soapenv:Body><vip:CheckOtpRequest><vip:requestId>fr%{randstr:hhhhhhhhhhhhhhhh}</vip:requestId><vip:userId>%{User-Name}</vip:userId><vip:otpAuthData><vip:otp>%{User-Password}</vip:otp></vip:otpAuthData></vip:CheckOtpRequest></soapenv:Body></soapenv:Envelope>"
  cat > "$dir/mods-available/rest" <<REST
rest {
	tls {
		ca_info_file = "$rest_ca"
		certificate_file = "$rest_cert"
		private_key_file = "$rest_key"
		check_cert = yes
		check_cert_cn = yes
	}
	connect_uri = "$connect_uri"
	connect_timeout = 4.0
	http_negotiation = 1.1
	authorize {
		uri = "$rest_uri"
		method = 'post'
		body = 'text/xml; charset=utf-8'
		force_to = 'plain'
		data = "$soap"
		tls = \${..tls}
		timeout = 10
	}
	pool {
		start = $rest_pool
		min = $rest_pool
		max = $rest_pool
		spare = 0
		uses = 0
		retry_delay = 1
		lifetime = 0
		idle_timeout = 0
	}
}
REST
  ln -s ../mods-available/rest "$dir/mods-enabled/rest"
  authorize_body="if (!(&User-Name =~ /^[A-Za-z0-9._@-]{1,128}\$/) || !(&User-Password =~ /^[A-Za-z0-9]{6,10}\$/)) {
			reject
		}
		update control {
			&REST-HTTP-Header := \"SOAPAction: \\\"\\\"\"
		}
		rest
		if (&reply:REST-HTTP-Status-Code == 200 && &reply:REST-HTTP-Body =~ /<status>0000<\/status>/) {
			update control {
				&Auth-Type := Accept
			}
		}
		else {
			reject
		}"
  authenticate_body=""
  rest_strip="update reply {
			&REST-HTTP-Body !* ANY
			&REST-HTTP-Status-Code !* ANY
		}"
fi
if [ -n "$rest_strip" ]; then
  reject_ma="Post-Auth-Type REJECT {
			$rest_strip
			${reply_ma_update}
		}
		Post-Auth-Type Challenge {
			${reply_ma_update}
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
		$authorize_body
	}
	authenticate {
		$authenticate_body
	}
	post-auth {
		$rest_strip
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
