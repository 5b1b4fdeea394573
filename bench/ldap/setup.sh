#!/usr/bin/env bash
# Builds a private OpenLDAP directory for the benchmark's "LDAP password + code" scenario from
# Debian's slapd (nothing system-wide is touched), and optionally runs it in the foreground.
#
#   bench/ldap/setup.sh [--dir DIR] [--port 16360] [--users N] [--password PW]
#                       [--user-template 'user{n}'] [--bind-password PW] [--threads 16] [--run]
#
# Prints what it made on stdout, one `key=value` a line (dir, url, ca_file, base_dn, bind_dn,
# bind_password_file, users, user_dn, conf, pid_file, monitor_dn, monitor_password_file,
# seconds); with --run it then execs `slapd -d 0` in the foreground (no fork, no log output).
# Started without --run:
#   slapd -f DIR/slapd.conf -h ldaps://127.0.0.1:PORT/ -d 0
#
# What it makes, in DIR:
# - a throwaway CA (ca.pem) and a server certificate signed by it (server.pem / server.key,
#   EC P-256, SAN IP:127.0.0.1 and DNS:localhost), made with the openssl CLI;
# - slapd.conf: the core, cosine, inetorgperson and nis schemas from /etc/ldap/schema, back_mdb
#   from /usr/lib/ldap, TLS files, loglevel 0 (the stock `stats` logs every operation to
#   syslog: it would measure syslog), `threads` (slapd's default 16), an mdb database for
#   dc=example,dc=org with eq indexes on objectClass and uid, and cn=Monitor readable by the
#   root DN (connection and operation counters, read by bench/run.sh after the scenario);
#   slapd runs as the invoking user (no -u/-g);
# - the data, loaded with `slapadd -q` before slapd starts (seconds for 200,000 users, where
#   ldapadd through a running slapd takes minutes): dc=example,dc=org, ou=services with the
#   service account cn=vip-bridge (bind_password_file), ou=people with inetOrgPerson entries
#   uid=<name>,ou=people,dc=example,dc=org for the names of --user-template with {n} =
#   0..N-1 (the bench's simulator users are user0..user{N-1});
# - every user has the same password, stored as ONE {SSHA} value (salted SHA-1, the salt
#   drawn once by this script): a directory stores hashes, not cleartext, and checking one
#   costs slapd one SHA-1 of ~30 bytes per bind, so the benchmark measures what a real
#   directory does per bind without spending minutes hashing N passwords here.
#
# Access: userPassword only for authentication (anonymous auth) and the entry itself; the
# service account (and any bound user) may read the rest.
set -euo pipefail

dir=""
port=16360
users=1000
password=ldap-pw-0123
user_template='user{n}'
bind_password=bench-service-pw
threads=16
run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --users) users="$2"; shift 2 ;;
    --password) password="$2"; shift 2 ;;
    --user-template) user_template="$2"; shift 2 ;;
    --bind-password) bind_password="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --run) run=1; shift ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

slapd=/usr/sbin/slapd
slapadd=/usr/sbin/slapadd
schema=/etc/ldap/schema
modules=/usr/lib/ldap
for f in "$slapd" "$slapadd"; do
  [ -x "$f" ] || { echo "$f missing (apt-get install slapd)" >&2; exit 1; }
done
[ -f "$schema/inetorgperson.schema" ] || { echo "$schema/inetorgperson.schema missing" >&2; exit 1; }
command -v openssl >/dev/null || { echo "the openssl CLI is missing" >&2; exit 1; }
[[ "$users" =~ ^[0-9]+$ ]] || { echo "--users must be a number" >&2; exit 2; }
case "$user_template" in
  *[,=+\<\>\#\;\\\"]*) echo "--user-template must be usable in a DN as is" >&2; exit 2 ;;
esac

started=$(date +%s.%N)
if [ -z "$dir" ]; then
  dir=$(mktemp -d /tmp/vip-bench-ldap.XXXXXX)
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
rm -rf "$dir/db"
mkdir -p "$dir/db"
umask 077

base_dn=dc=example,dc=org
bind_dn="cn=vip-bridge,ou=services,$base_dn"
root_dn="cn=admin,$base_dn"

# --- Certificates -------------------------------------------------------------------------
ossl() { openssl "$@" >/dev/null 2>"$dir/openssl.err" || { cat "$dir/openssl.err" >&2; exit 1; }; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/ca.key" \
  -out "$dir/ca.pem" -days 7 -subj "/CN=vip-bench LDAP CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/server.key" \
  -out "$dir/server.csr" -subj "/CN=localhost"
printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$dir/server.ext"
ossl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
  -out "$dir/server.pem" -days 7 -extfile "$dir/server.ext"
rm -f "$dir/openssl.err" "$dir/server.csr" "$dir/server.ext"
chmod 644 "$dir/ca.pem"

# --- Secrets and the {SSHA} value ------------------------------------------------------------
printf '%s' "$bind_password" >"$dir/bind.pass"
root_password=$(openssl rand -hex 16)
printf '%s' "$root_password" >"$dir/root.pass"
# {SSHA} = base64(SHA1(password + salt) + salt), the salt drawn once for every user.
ssha() {
  python3 -c 'import base64, hashlib, os, sys
pw = sys.argv[1].encode()
salt = os.urandom(8)
print("{SSHA}" + base64.b64encode(hashlib.sha1(pw + salt).digest() + salt).decode())' "$1"
}
user_hash=$(ssha "$password")
bind_hash=$(ssha "$bind_password")
root_hash=$(ssha "$root_password")

# --- slapd.conf -----------------------------------------------------------------------------
conf="$dir/slapd.conf"
cat >"$conf" <<CONF
include $schema/core.schema
include $schema/cosine.schema
include $schema/inetorgperson.schema
include $schema/nis.schema
modulepath $modules
moduleload back_mdb
pidfile $dir/slapd.pid
argsfile $dir/slapd.args
loglevel 0
threads $threads
sizelimit 500
TLSCACertificateFile $dir/ca.pem
TLSCertificateFile $dir/server.pem
TLSCertificateKeyFile $dir/server.key

database mdb
maxsize 4294967296
suffix "$base_dn"
rootdn "$root_dn"
rootpw $root_hash
directory $dir/db
index objectClass eq
index uid eq
access to attrs=userPassword
    by self read
    by anonymous auth
    by * none
access to *
    by users read
    by anonymous auth

database monitor
access to *
    by dn.exact="$root_dn" read
    by * none
CONF

# --- Data: slapadd before start ---------------------------------------------------------------
ldif="$dir/seed.ldif"
{
  cat <<LDIF
dn: $base_dn
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=services,$base_dn
objectClass: organizationalUnit
ou: services

dn: ou=people,$base_dn
objectClass: organizationalUnit
ou: people

dn: $bind_dn
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: vip-bridge
userPassword: $bind_hash

LDIF
  # The template cut at each {n} once (a regex gsub per entry takes mawk minutes for 200,000).
  awk -v n="$users" -v t="$user_template" -v h="$user_hash" -v b="ou=people,$base_dn" 'BEGIN {
    k = 0
    while ((j = index(t, "{n}")) > 0) { part[k++] = substr(t, 1, j - 1); t = substr(t, j + 3) }
    part[k] = t
    for (i = 0; i < n; i++) {
      u = part[0]; for (m = 1; m <= k; m++) u = u i part[m]
      printf "dn: uid=%s,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\nuserPassword: %s\n\n", u, b, u, u, u, h
    }
  }'
} >"$ldif"
"$slapadd" -q -f "$conf" -l "$ldif" >"$dir/slapadd.log" 2>&1 ||
  { echo "slapadd failed:" >&2; tail -20 "$dir/slapadd.log" >&2; exit 1; }
rm -f "$ldif"

url="ldaps://127.0.0.1:$port"
elapsed=$(python3 -c 'import sys, time; print("%.1f" % (time.time() - float(sys.argv[1])))' "$started")
cat <<OUT
dir=$dir
url=$url
ca_file=$dir/ca.pem
base_dn=ou=people,$base_dn
bind_dn=$bind_dn
bind_password_file=$dir/bind.pass
users=$users
user_dn=uid=$user_template,ou=people,$base_dn
conf=$conf
pid_file=$dir/slapd.pid
monitor_dn=$root_dn
monitor_password_file=$dir/root.pass
seconds=$elapsed
OUT
if [ "$run" = 1 ]; then
  exec "$slapd" -f "$conf" -h "$url/" -d 0
fi
