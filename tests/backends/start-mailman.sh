#!/usr/bin/env bash
# start-mailman.sh — a throwaway GNU Mailman 3 core (PyPI, in a venv) serving only its REST
# API on 127.0.0.1, used as a real legacy back-end by scimbridge's integration tests.
#
#   start-mailman.sh PORT [DATA_DIR]          install if needed, configure, start, create the
#                                             mail domain, print KEY=value lines (URL, creds)
#   start-mailman.sh --stop PORT [DATA_DIR]   stop the instance started for PORT/DATA_DIR
#
# DATA_DIR defaults to /tmp/scimbridge-legacy/mailman-PORT. Env overrides: MAILMAN_VENV
# (default /tmp/scimbridge-legacy/mailman-venv, shared by all DATA_DIRs), MAILMAN_DOMAIN
# (default example.com). The REST admin is "restadmin" with a random password generated
# once per DATA_DIR (kept in DATA_DIR/etc/rest-password, mode 600, never in the repo) and
# printed on every run. Only the REST runner is started (no LMTP/SMTP/archiver; NullMTA),
# with cheap password hashing, so the only listening socket is 127.0.0.1:PORT.
# Versions are pinned: Mailman 3.3.10 breaks with SQLAlchemy >= 2.1 (paged GETs answer 500).
# Idempotent: re-running while up just prints the lines again. Progress goes to stderr;
# stdout has only KEY=value lines and comments, e.g.
#   eval "$(tests/backends/start-mailman.sh 18001 /tmp/it/mailman | grep '^MAILMAN_')"
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

die() { echo "start-mailman.sh: $*" >&2; exit 1; }
log() { echo "start-mailman.sh: $*" >&2; }

STOP=0
if [ "${1:-}" = "--stop" ]; then STOP=1; shift; fi
PORT="${1:-}"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "usage: $0 [--stop] PORT [DATA_DIR]"
DATA="${2:-/tmp/scimbridge-legacy/mailman-$PORT}"
case "$DATA" in /*) ;; *) DATA="$PWD/$DATA" ;; esac
VENV="${MAILMAN_VENV:-/tmp/scimbridge-legacy/mailman-venv}"
DOMAIN="${MAILMAN_DOMAIN:-example.com}"
ADMIN_USER=restadmin
CFG="$DATA/etc/mailman.cfg"
BASE="http://127.0.0.1:$PORT/3.1"
PINS=(mailman==3.3.10 SQLAlchemy==2.0.58 falcon==4.4.0 gunicorn==27.0.1 click==8.5.1
      alembic==1.20.1 passlib==1.7.4 zope.interface==8.7 zope.component==7.1
      lazr.config==4.0.0 aiosmtpd==1.4.6)
ROOTFLAG=(); [ "$(id -u)" = 0 ] && ROOTFLAG=(--run-as-root)   # must precede -C

mm() { "$VENV/bin/mailman" "${ROOTFLAG[@]}" -C "$CFG" "$@"; }
# alive: master.pid names a live Mailman master (not a recycled pid)
alive() {
  [ -s "$DATA/master.pid" ] || return 1
  local pid; pid="$(cat "$DATA/master.pid")"
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q master
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

if [ "$STOP" = 1 ]; then
  if alive; then
    PID="$(cat "$DATA/master.pid")"
    mm stop </dev/null >/dev/null 2>&1 || kill "$PID"
    # the master removes master.pid before it exits: wait on the pid itself
    for _ in $(seq 1 150); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$PID" 2>/dev/null; then kill -9 "$PID"; fi
    echo "mailman on port $PORT stopped (master pid $PID)"
  else
    echo "mailman on port $PORT not running (no live master in $DATA/master.pid)"
  fi
  exit 0
fi

mkdir -p "$DATA/etc" "$(dirname "$VENV")"
# one run at a time per DATA_DIR, and one installer at a time per venv
exec 9>"$DATA/.start.lock"
flock -w 600 9 || die "timed out waiting for another start-mailman.sh on $DATA"
if ! alive && port_busy; then die "port $PORT is already in use by another process"; fi

# 1. install (idempotent): a venv with the pinned set; reinstalled if the pins change
apt_install() {   # apt_install PKG...: only as root; for a bare machine
  [ "$(id -u)" = 0 ] || die "missing $*; install it (or run as root)"
  log "installing $* from Debian"
  { apt-get update -q &&
    apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "$@"; } \
    </dev/null >"$DATA/apt.log" 2>&1 \
    || { tail -20 "$DATA/apt.log" >&2; die "apt-get install $* failed; see $DATA/apt.log"; }
}
command -v curl >/dev/null || apt_install curl ca-certificates
command -v python3 >/dev/null || apt_install python3 python3-venv
exec 8>"$VENV.lock"
flock -w 600 8 || die "timed out waiting for another install into $VENV"
if [ "$(cat "$VENV/.pins" 2>/dev/null)" != "${PINS[*]}" ] || ! "$VENV/bin/python" -c 'import mailman' 2>/dev/null; then
  log "installing ${PINS[0]} into $VENV (about 40 s; log: $DATA/pip.log)"
  if [ ! -x "$VENV/bin/pip" ]; then
    # Debian's python3 needs python3-venv for ensurepip
    python3 -m venv "$VENV" >"$DATA/venv.log" 2>&1 \
      || { rm -rf "$VENV"; apt_install python3-venv; python3 -m venv "$VENV"; } \
      || die "python3 -m venv $VENV failed; see $DATA/venv.log"
  fi
  "$VENV/bin/pip" install -q "${PINS[@]}" </dev/null >"$DATA/pip.log" 2>&1 \
    || { tail -20 "$DATA/pip.log" >&2; die "pip install failed; see $DATA/pip.log"; }
  printf '%s' "${PINS[*]}" > "$VENV/.pins"
fi
exec 8>&-   # release the venv lock

# 2. configure (rewritten on every start so PORT always matches; password kept per DATA_DIR)
umask 077
[ -s "$DATA/etc/rest-password" ] ||
  head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DATA/etc/rest-password"
ADMIN_PASS="$(cat "$DATA/etc/rest-password")"
# default hashing costs ~0.25 s per user create; 1000 rounds is plenty for a test back-end
cat > "$DATA/etc/passlib.cfg" <<PEOF
[passlib]
schemes = sha512_crypt
default = sha512_crypt
sha512_crypt__default_rounds = 1000
sha512_crypt__min_rounds = 1000
PEOF
# gunicorn >= 25 opens a control socket in \$HOME/.gunicorn by default: turn it off
cat > "$DATA/etc/gunicorn.cfg" <<GEOF
[gunicorn]
graceful_timeout = 30
timeout = 360
control_socket_disable = true
GEOF
{
  cat <<CEOF
[mailman]
layout: here
site_owner: admin@$DOMAIN

[paths.here]
var_dir: $DATA

[passwords]
configuration: $DATA/etc/passlib.cfg

[webservice]
hostname: 127.0.0.1
port: $PORT
admin_user: $ADMIN_USER
admin_pass: $ADMIN_PASS
workers: 1
show_tracebacks: no
configuration: $DATA/etc/gunicorn.cfg

[mta]
# NullMTA: no postmap, no outgoing mail; unreachable SMTP/LMTP on 127.0.0.1
incoming: mailman.mta.null.NullMTA
smtp_host: 127.0.0.1
smtp_port: 9
lmtp_host: 127.0.0.1
lmtp_port: 9
CEOF
  for r in archive bounces command in lmtp out pipeline retry task virgin digest; do
    printf '\n[runner.%s]\nstart: no\n' "$r"
  done
} > "$CFG"

# 3. start (idempotent)
if ! alive; then
  rm -f "$DATA/master.pid" "$DATA"/locks/master.lck*
  log "starting mailman on $BASE (log: $DATA/logs/mailman.log)"
  # `mailman start` daemonizes but keeps the caller's stdout open: redirect it (and do
  # not let the daemon inherit the lock fd 9, or every later run waits for the lock)
  mm start </dev/null >"$DATA/start.log" 2>&1 9>&- \
    || { cat "$DATA/start.log" >&2; die "mailman start failed; see $DATA/start.log"; }
fi
ok() { curl -sf -m 2 -u "$ADMIN_USER:$ADMIN_PASS" "$BASE/system/versions" >/dev/null; }
for _ in $(seq 1 600); do ok && break; sleep 0.1; done   # the REST runner needs ~4 s
ok || { tail -20 "$DATA/logs/mailman.log" >&2 2>/dev/null
        die "mailman did not answer on $BASE within 60 s; see $DATA/logs/mailman.log"; }

# lists (groups) need a mail domain: 201 when created, 400 "Duplicate ..." when it exists
code="$(curl -s -o "$DATA/domain.out" -w '%{http_code}' -u "$ADMIN_USER:$ADMIN_PASS" \
  -X POST "$BASE/domains" -d "mail_host=$DOMAIN")"
case "$code" in
  201) log "created domain $DOMAIN" ;;
  400) grep -q Duplicate "$DATA/domain.out" || die "POST /domains $DOMAIN: 400 $(cat "$DATA/domain.out")" ;;
  *) die "POST /domains $DOMAIN answered $code: $(cat "$DATA/domain.out")" ;;
esac

cat <<OUT
MAILMAN_BASE_URL=$BASE
MAILMAN_USER=$ADMIN_USER
MAILMAN_PASSWORD=$ADMIN_PASS
MAILMAN_DOMAIN=$DOMAIN
MAILMAN_MASTER_PID=$(cat "$DATA/master.pid")
MAILMAN_DATA_DIR=$DATA
# auth: HTTP Basic, e.g. curl -u "\$MAILMAN_USER:\$MAILMAN_PASSWORD" $BASE/users
# stop: $0 --stop $PORT $DATA
# wipe: rm -rf $DATA
OUT
