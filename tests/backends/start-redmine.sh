#!/usr/bin/env bash
# start-redmine.sh — a throwaway Redmine 5 (Debian bookworm package) with its REST API on
# 127.0.0.1, used as a real legacy back-end by scimbridge's integration tests and mappings.
#
#   start-redmine.sh PORT [DATA_DIR]          install if needed, set up DATA_DIR, start,
#                                             print KEY=value lines (URL, credentials)
#   start-redmine.sh --stop PORT [DATA_DIR]   stop the server started for PORT/DATA_DIR
#
# DATA_DIR defaults to /tmp/scimbridge-legacy/redmine-PORT. Needs root: apt-get, a symlink in
# /var/lib/redmine and /usr/share/redmine/Gemfile.local (adds WEBrick as the app server).
# Each DATA_DIR is its own Debian Redmine "instance" (REDMINE_INSTANCE) with its own SQLite
# database; the Debian "default" instance is not used. First start in a DATA_DIR: migrate,
# enable the REST API, give admin a random password (no forced change), and create the user
# custom fields "externalId", "givenName", "familyName" (ids 1-3 on a new data dir). Credentials are generated per DATA_DIR, kept in
# DATA_DIR/credentials.env (mode 600, never in the repo) and printed on every run.
# Idempotent: re-running while up just prints the lines again. Progress goes to stderr;
# stdout has only KEY=value lines and comments, e.g.
#   eval "$(tests/backends/start-redmine.sh 13000 /tmp/it/redmine | grep '^REDMINE_')"
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

die() { echo "start-redmine.sh: $*" >&2; exit 1; }
log() { echo "start-redmine.sh: $*" >&2; }

STOP=0
if [ "${1:-}" = "--stop" ]; then STOP=1; shift; fi
PORT="${1:-}"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "usage: $0 [--stop] PORT [DATA_DIR]"
DATA="${2:-/tmp/scimbridge-legacy/redmine-$PORT}"
case "$DATA" in /*) ;; *) DATA="$PWD/$DATA" ;; esac
INSTANCE="scim-$(printf '%s' "$DATA" | md5sum | cut -c1-8)"
PIDFILE="$DATA/tmp/pids/server.pid"
RM=/usr/share/redmine
BASE="http://127.0.0.1:$PORT"

# alive: the pid file names a live Rails server process (not a recycled pid)
alive() {
  [ -s "$PIDFILE" ] || return 1
  local pid; pid="$(cat "$PIDFILE")"
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q rails
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

if [ "$STOP" = 1 ]; then
  if alive; then
    PID="$(cat "$PIDFILE")"; kill "$PID"
    for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$PID" 2>/dev/null; then kill -9 "$PID"; fi
    rm -f "$PIDFILE"; echo "redmine on port $PORT stopped (pid $PID)"
  else
    echo "redmine on port $PORT not running (no live pid in $PIDFILE)"
  fi
  exit 0
fi

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, /var/lib/redmine, $RM/Gemfile.local)"
mkdir -p "$DATA/config" "$DATA/log" "$DATA/tmp/cache" "$DATA/tmp/pids" "$DATA/files" "$DATA/db"
# one run at a time per DATA_DIR (a second concurrent run waits, then finds it up)
exec 9>"$DATA/.start.lock"
flock -w 600 9 || die "timed out waiting for another start-redmine.sh on $DATA"
if ! alive && port_busy; then die "port $PORT is already in use by another process"; fi

# 1. install (idempotent): redmine + sqlite backend + WEBrick; no Apache/Passenger
installed() {
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
  done
}
# Workaround for bookworm's ruby3.1 3.1.7 security update: its bundler lost Debian's patch
# (Debian bug #1004195) and takes gems whose files live in vendor_ruby (no gems/NAME-VER
# dir) for deleted, so redmine's postinst (`bundle install --local`) fails with
# "Could not find racc-1.6.2.gem for installation". An empty gem dir is all it checks.
fix_debian_gems() {
  ruby -rfileutils -e 'Gem::Specification.each do |s|
    next if s.default_gem? || File.directory?(s.full_gem_path) ||
            !s.loaded_from.to_s.include?("/rubygems-integration/")
    FileUtils.mkdir_p(s.full_gem_path)
  end'
}
if ! installed redmine redmine-sqlite ruby-webrick curl; then
  log "installing redmine from Debian (about 1.5 min; log: $DATA/log/apt.log)"
  debconf-set-selections <<'DEB'
redmine redmine/current-instances string default
redmine redmine/instances/default/dbconfig-install boolean true
redmine redmine/instances/default/database-type select sqlite3
redmine redmine/instances/default/default-language select en
DEB
  (
    apt-get update -q || exit 1
    if ! apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 \
         -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
         redmine redmine-sqlite ruby-webrick curl ca-certificates; then
      echo "### apt-get failed: retrying redmine's configuration with the bundler workaround"
      command -v ruby >/dev/null && fix_debian_gems && dpkg --configure -a
    fi
  ) </dev/null >"$DATA/log/apt.log" 2>&1 || true
  installed redmine redmine-sqlite ruby-webrick curl \
    || { tail -30 "$DATA/log/apt.log" >&2; die "installing redmine failed; see $DATA/log/apt.log"; }
fi
# Redmine's Gemfile names no app server; Gemfile.local is its supported hook for one.
grep -qs "gem 'webrick'" "$RM/Gemfile.local" || echo "gem 'webrick'" >> "$RM/Gemfile.local"

# 2. instance + database (first start in this DATA_DIR only)
ln -sfn "$DATA" "/var/lib/redmine/$INSTANCE"      # $RM/instances -> /var/lib/redmine
export REDMINE_INSTANCE="$INSTANCE" RAILS_ENV=production
cd "$RM"
if [ ! -s "$DATA/credentials.env" ]; then
  log "initialising instance $INSTANCE in $DATA"
  cat > "$DATA/config/database.yml" <<YML
production:
  adapter: sqlite3
  database: $DATA/db/redmine.sqlite3
  timeout: 5000
YML
  umask 077
  [ -s "$DATA/config/secret_key.txt" ] ||
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DATA/config/secret_key.txt"
  bin/rake db:migrate </dev/null >"$DATA/log/migrate.log" 2>&1 \
    || { tail -20 "$DATA/log/migrate.log" >&2; die "db:migrate failed; see $DATA/log/migrate.log"; }
  ADMIN_PASSWORD="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  bin/rails runner '
    Setting.rest_api_enabled = "1"                 # the REST API is off by default
    u = User.find_by_login("admin")
    u.password = u.password_confirmation = ENV.fetch("ADMIN_PASSWORD")
    u.must_change_passwd = false
    u.save!
    # externalId, and the full names (Redmine caps its own name fields at 30 characters).
    field = ->(name) { UserCustomField.find_by_name(name) ||
                       UserCustomField.create!(name: name, field_format: "string", visible: true) }
    cf = field.("externalId"); gn = field.("givenName"); fn = field.("familyName")
    puts "REDMINE_API_KEY=#{u.api_key}"
    puts "REDMINE_ADMIN_PASSWORD=#{ENV.fetch("ADMIN_PASSWORD")}"
    puts "REDMINE_EXTERNALID_FIELD_ID=#{cf.id}"
    puts "REDMINE_GIVENNAME_FIELD_ID=#{gn.id}"
    puts "REDMINE_FAMILYNAME_FIELD_ID=#{fn.id}"
  ' </dev/null >"$DATA/credentials.env.tmp" 2>"$DATA/log/setup.log" \
    || { tail -20 "$DATA/log/setup.log" >&2; die "setup (rails runner) failed; see $DATA/log/setup.log"; }
  grep -E '^REDMINE_' "$DATA/credentials.env.tmp" > "$DATA/credentials.env"
  rm -f "$DATA/credentials.env.tmp"
  [ "$(grep -c '^REDMINE_' "$DATA/credentials.env")" = 5 ] \
    || { rm -f "$DATA/credentials.env"; die "setup printed no credentials; see $DATA/log/setup.log"; }
fi
# shellcheck disable=SC1091
. "$DATA/credentials.env"

# 3. start (idempotent)
if ! alive; then
  rm -f "$PIDFILE"     # a stale pid file makes `rails server` refuse to start
  log "starting redmine on $BASE (log: $DATA/log/server.out)"
  setsid bin/rails server -e production -b 127.0.0.1 -p "$PORT" -P "$PIDFILE" \
    </dev/null >"$DATA/log/server.out" 2>&1 9>&- &   # 9>&-: the server must not hold the lock
  SERVER=$!
fi
ok() { curl -sf -m 2 -H "X-Redmine-API-Key: $REDMINE_API_KEY" "$BASE/users/current.json" >/dev/null; }
for _ in $(seq 1 600); do   # boot takes ~6 s
  ok && break
  if [ -n "${SERVER:-}" ] && ! kill -0 "$SERVER" 2>/dev/null; then break; fi   # it died
  sleep 0.1
done
ok || { tail -20 "$DATA/log/server.out" >&2; die "redmine did not come up on $BASE; see $DATA/log/server.out"; }

cat <<OUT
REDMINE_BASE_URL=$BASE
REDMINE_API_KEY=$REDMINE_API_KEY
REDMINE_ADMIN_LOGIN=admin
REDMINE_ADMIN_PASSWORD=$REDMINE_ADMIN_PASSWORD
REDMINE_EXTERNALID_FIELD_ID=$REDMINE_EXTERNALID_FIELD_ID
REDMINE_GIVENNAME_FIELD_ID=$REDMINE_GIVENNAME_FIELD_ID
REDMINE_FAMILYNAME_FIELD_ID=$REDMINE_FAMILYNAME_FIELD_ID
REDMINE_PID=$(cat "$PIDFILE")
REDMINE_DATA_DIR=$DATA
# auth: header "X-Redmine-API-Key: \$REDMINE_API_KEY" (or HTTP Basic admin:\$REDMINE_ADMIN_PASSWORD)
# stop: $0 --stop $PORT $DATA
# wipe: rm -rf $DATA /var/lib/redmine/$INSTANCE
OUT
