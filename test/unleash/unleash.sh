#!/usr/bin/env bash
# unleash.sh - install (cached) and run a real, local Unleash server with its
# own private PostgreSQL, for the toggle-feature integration tests.
# Everything listens on 127.0.0.1 only, on free ports.
#
# Usage:
#   unleash.sh install     npm-install unleash-server (cached), print its directory
#   unleash.sh start DIR   (install if needed and) start PostgreSQL and Unleash
#                          with data/logs/pids in DIR; writes DIR/env
#   unleash.sh stop DIR    stop everything started in DIR (idempotent)
#
# unleash-server is installed under ${XDG_CACHE_HOME:-$HOME/.cache}/action-provider/.
# See README.md next to this file.
# shellcheck disable=SC2317 # functions run indirectly via wait_until
set -euo pipefail

# The exact version, also pinned (with every transitive dependency) by
# package.json and package-lock.json next to this script. 6.x is the last
# major that runs on Node 20 (engines: >=18 <21); 7.x and 8.x need Node 22.
UNLEASH_VERSION="6.10.1"
NODE_MAJOR_MIN=18
NODE_MAJOR_MAX=20

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/action-provider"
INSTALL_DIR="$CACHE_ROOT/unleash-$UNLEASH_VERSION"
SERVER_JS="$INSTALL_DIR/node_modules/unleash-server/dist/server.js"

# Seconds each start phase may take before start gives up. Unleash runs its
# database migrations on first start, which takes most of its start time.
TIMEOUT="${UNLEASH_TIMEOUT:-120}"

PROG=unleash # as log and die of test/lib/proc.sh name this script
# shellcheck source=test/lib/proc.sh
source "$SCRIPT_DIR/../lib/proc.sh"

usage() {
	cat >&2 <<EOF
usage: $0 install | start DIR | stop DIR
  install     npm-install unleash-server $UNLEASH_VERSION (cached) and print its directory
  start DIR   start a private PostgreSQL and Unleash with data/logs/pids in DIR;
              writes DIR/env (UNLEASH_URL, UNLEASH_ADMIN_TOKEN, ...)
  stop DIR    stop everything started in DIR (TERM/INT, then KILL)
EOF
	exit 2
}

# -------------------------------------------------------------- install ---

check_node() {
	command -v node >/dev/null || die "node is required (Node $NODE_MAJOR_MIN–$NODE_MAJOR_MAX; apt-get install -y nodejs npm)"
	local v major
	v="$(node --version)"
	major="${v#v}"
	major="${major%%.*}"
	if ! [[ $major =~ ^[0-9]+$ ]] || ((major < NODE_MAJOR_MIN || major > NODE_MAJOR_MAX)); then
		die "unleash-server $UNLEASH_VERSION needs Node $NODE_MAJOR_MIN–$NODE_MAJOR_MAX (its engines: >=18 <21); this is node $v"
	fi
}

lock_sum() { sha256sum "$SCRIPT_DIR/package-lock.json" | cut -d' ' -f1; }

installed() {
	[[ -f $SERVER_JS && -f $INSTALL_DIR/.installed && "$(<"$INSTALL_DIR/.installed")" == "$(lock_sum)" ]]
}

install() {
	check_node
	grep -q "\"unleash-server\": \"$UNLEASH_VERSION\"" "$SCRIPT_DIR/package.json" ||
		die "$SCRIPT_DIR/package.json does not pin unleash-server $UNLEASH_VERSION; keep it and UNLEASH_VERSION in $0 in step"
	if installed; then return 0; fi
	command -v npm >/dev/null || die "npm is required (apt-get install -y npm)"
	mkdir -p "$CACHE_ROOT"
	# Serialize concurrent installs (e.g. two test runs).
	if lock_or_done "$CACHE_ROOT/.unleash-install.lock" installed; then return 0; fi
	log "first run installs unleash-server $UNLEASH_VERSION from npm, ~30 s, longer on a slow network (~180 MB, into $INSTALL_DIR)"
	local start=$SECONDS tmp="$INSTALL_DIR.tmp.$$"
	rm -rf "$tmp" && mkdir -p "$tmp"
	cp "$SCRIPT_DIR/package.json" "$SCRIPT_DIR/package-lock.json" "$tmp/"
	# npm ci: exactly the lock file. --ignore-scripts: the only install
	# scripts are @scarf/scarf's (install analytics, which would reach the
	# internet), es5-ext's (a message) and ssh2's optional native build
	# (it falls back to JavaScript); Unleash needs none of them.
	if ! (cd "$tmp" && SCARF_ANALYTICS=false DO_NOT_TRACK=1 \
		npm ci --no-audit --no-fund --ignore-scripts --omit=dev --loglevel=warn) >"$tmp.log" 2>&1; then
		tail -n 40 "$tmp.log" >&2 || true
		rm -rf "$tmp"
		die "npm ci of unleash-server $UNLEASH_VERSION failed (log above)"
	fi
	[[ -f $tmp/node_modules/unleash-server/dist/server.js ]] || { rm -rf "$tmp"; die "npm ci finished but unleash-server is missing"; }
	lock_sum >"$tmp/.installed"
	rm -rf "$INSTALL_DIR" "$tmp.log"
	mv "$tmp" "$INSTALL_DIR"
	log "installed unleash-server $UNLEASH_VERSION in $((SECONDS - start))s"
	if command -v flock >/dev/null; then exec 9>&-; fi
}

# ----------------------------------------------------------- postgresql ---

# pg_bindir -> the directory of PostgreSQL's server binaries (initdb, postgres).
pg_bindir() {
	local d
	if [[ -n ${PG_BIN:-} ]]; then
		[[ -x $PG_BIN/initdb && -x $PG_BIN/postgres ]] || die "PG_BIN=$PG_BIN has no initdb and postgres"
		echo "$PG_BIN"
		return 0
	fi
	# Debian keeps them out of PATH, one directory per major version: take the newest.
	for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5 -V -r); do
		if [[ -x $d/initdb && -x $d/postgres ]]; then echo "$d"; return 0; fi
	done
	if command -v initdb >/dev/null && command -v postgres >/dev/null; then
		dirname "$(command -v postgres)"
		return 0
	fi
	die "PostgreSQL server binaries (initdb, postgres) not found: apt-get install -y postgresql (or set PG_BIN)"
}

# AS_PG is the command prefix that runs a PostgreSQL server program as a
# user it accepts: postgres and initdb refuse to run as root, so as root they
# run as the "postgres" OS user that Debian's package creates. setpriv execs,
# so the pid recorded for the server is the server's.
AS_PG=()
set_as_pg() {
	if ((EUID == 0)); then
		AS_PG=(setpriv --reuid="$PG_USER" --regid="$PG_USER" --init-groups --reset-env --
			env PATH=/usr/bin:/bin HOME="$DIR/pg" LC_ALL=C.UTF-8)
	fi
}

# ---------------------------------------------------------------- start ---










# http_ok URL: GET URL answers 2xx, with bash alone (no curl needed).
# A subshell, so that a refused connection cannot end the script.
http_ok() (
	rest=${1#http://}
	hostport=${rest%%/*}
	path=/${rest#*/}
	exec 3<>"/dev/tcp/${hostport%:*}/${hostport#*:}" || exit 1
	printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&3
	read -r -t 5 _ status _ <&3 || exit 1
	[[ $status == 2?? ]]
)


# unleash_up URL: the server answers at URL, and has not exited since start:
# supervise would start it again, but a server that cannot start must fail
# start at once, with its log.
unleash_up() {
	# wait_until silences this; fd 7 is start's stderr.
	# fail's stop_all prints the exits and the server's log.
	[[ ! -s $DIR/unleash.exits ]] || fail "unleash-server exited during start" 2>&7
	http_ok "$1"
}

start_postgres() {
	local bindir=$1 port=$2 password=$3
	local pg="$DIR/pg" sock="$DIR/pg/run"
	rm -rf "$pg"
	mkdir -p "$pg/run"
	(umask 077 && printf '%s\n' "$password" >"$pg/pwfile")
	set_as_pg
	if ((EUID == 0)); then
		id "$PG_USER" >/dev/null 2>&1 ||
			die "PostgreSQL refuses to run as root and there is no \"$PG_USER\" user to run it as (apt-get install -y postgresql creates it; or set UNLEASH_PG_USER)"
		chown -R "$PG_USER:" "$pg"
		# The postgres user only needs to pass through DIR to reach DIR/pg.
		chmod o+x "$DIR"
		"${AS_PG[@]}" test -w "$pg" ||
			die "the $PG_USER user cannot reach $pg: a directory above $DIR is not searchable by others (chmod o+x it, or pick a DIR under /tmp)"
	fi
	chmod 700 "$pg/run"

	log "creating a PostgreSQL cluster in $pg/data ($bindir)"
	"${AS_PG[@]}" "$bindir/initdb" -D "$pg/data" -U unleash --pwfile="$pg/pwfile" -E UTF8 --locale=C.UTF-8 \
		--auth-local=scram-sha-256 --auth-host=scram-sha-256 --no-sync \
		>"$DIR/logs/initdb.log" 2>&1 || { show_log initdb; die "initdb failed"; }
	rm -f "$pg/pwfile"

	# The socket path is limited to 107 bytes; with a longer DIR, TCP only.
	local sockdirs=$sock
	if ((${#sock} + 18 > 107)); then
		log "DIR is too long for a unix socket inside it; PostgreSQL listens on TCP only"
		sockdirs=""
	fi
	log "starting PostgreSQL on 127.0.0.1:$port"
	# Throw-away data: durability off for speed.
	start_proc postgres "${AS_PG[@]}" "$bindir/postgres" -D "$pg/data" \
		-c listen_addresses=127.0.0.1 -p "$port" \
		-c unix_socket_directories="$sockdirs" \
		-c fsync=off -c synchronous_commit=off -c full_page_writes=off \
		-c max_connections=40 -c shared_buffers=32MB \
		-c log_min_messages=warning -c logging_collector=off
	STARTED+=(postgres)
	wait_until "PostgreSQL" postgres "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -U unleash
	PGPASSWORD="$password" "$bindir/createdb" -h 127.0.0.1 -p "$port" -U unleash unleash \
		>"$DIR/logs/createdb.log" 2>&1 || fail "createdb unleash failed" createdb postgres
}

start() {
	install
	local bindir
	bindir="$(pg_bindir)"
	command -v setsid >/dev/null || die "setsid is required (apt-get install -y util-linux)"
	command -v openssl >/dev/null || die "openssl is required (apt-get install -y openssl)"
	((EUID != 0)) || command -v setpriv >/dev/null || die "setpriv is required (apt-get install -y util-linux)"
	# Leftovers of an earlier start in DIR.
	stop_all quiet
	local t0=$SECONDS
	mkdir -p "$DIR"/{logs,pids,home}
	rm -f "$DIR/env" "$DIR"/logs/*.log "$DIR/unleash.exits"
	trap 'log "interrupted"; stop_all; exit 130' INT TERM

	local pg_port http_port pg_password token admin_password
	pg_port="$(free_port)"
	http_port="$(free_port)"
	pg_password="$(openssl rand -hex 16)"
	# Unleash 6 admin tokens are "*:*.<secret>": all projects, all environments.
	token="*:*.$(openssl rand -hex 24)"
	admin_password="$(openssl rand -hex 12)"

	start_postgres "$bindir" "$pg_port" "$pg_password"
	log "PostgreSQL ready after $((SECONDS - t0))s"

	local url="http://127.0.0.1:$http_port"
	local db_url="postgres://unleash:$pg_password@127.0.0.1:$pg_port/unleash"
	# A file inside DIR runs the server, so that its command line names DIR
	# and stop can tell it from any other node process.
	printf "require('%s');\n" "$SERVER_JS" >"$DIR/unleash-server.js"
	log "starting unleash-server $UNLEASH_VERSION on $url"
	# Nothing that reaches the internet: no version check, no telemetry,
	# no install analytics. HOME inside DIR: nothing written to ~.
	start_proc unleash env -i PATH="$PATH" HOME="$DIR/home" TZ=UTC NODE_ENV=production \
		HTTP_HOST=127.0.0.1 HTTP_PORT="$http_port" UNLEASH_URL="$url" \
		DATABASE_URL="$db_url" DATABASE_SSL=false DATABASE_POOL_MAX=10 \
		INIT_ADMIN_API_TOKENS="$token" \
		UNLEASH_DEFAULT_ADMIN_USERNAME=admin UNLEASH_DEFAULT_ADMIN_PASSWORD="$admin_password" \
		CHECK_VERSION=false SEND_TELEMETRY=false SCARF_ANALYTICS=false DO_NOT_TRACK=1 \
		LOG_LEVEL="${UNLEASH_LOG_LEVEL:-warn}" \
		bash "$SCRIPT_DIR/unleash.sh" supervise "$DIR" node "$DIR/unleash-server.js"
	STARTED+=(unleash)
	exec 7>&2
	wait_until "Unleash (GET $url/health)" "unleash postgres" unleash_up "$url/health"
	exec 7>&-
	check_alive

	{
		envline UNLEASH_URL "$url"
		envline UNLEASH_ADMIN_TOKEN "$token"
		envline UNLEASH_VERSION "$UNLEASH_VERSION"
		envline UNLEASH_ADMIN_USER admin
		envline UNLEASH_ADMIN_PASSWORD "$admin_password"
		envline UNLEASH_DATABASE_URL "$db_url"
		envline UNLEASH_PID "$(<"$DIR/pids/unleash.pid")"
		envline UNLEASH_POSTGRES_PID "$(<"$DIR/pids/postgres.pid")"
		envline UNLEASH_DIR "$DIR"
	} >"$DIR/env.tmp"
	ready Unleash "$url" "$t0"
}

# ------------------------------------------------------------ supervise ---

# Times supervise starts the server again after it exits by itself.
RESTARTS=3

# supervise DIR COMMAND...: run COMMAND, the Unleash server, and start it
# again when it exits by itself, up to RESTARTS times. Each exit is logged
# with its status and counted in DIR/unleash.exits, which stop reports.
# Why: once in CI, unleash-server died between two tests (connection
# refused on its port, PostgreSQL still up) and its log went with the
# run's directory. A crash of this third-party fixture must be visible,
# and must not fail the provider's tests. TERM (what stop sends) stops the
# server, then the supervisor.
supervise() {
	local dir=$1 n
	shift
	SERVER=0
	trap stop_server TERM
	for ((n = 0; ; n++)); do
		"$@" &
		SERVER=$!
		local rc=0
		wait "$SERVER" || rc=$?
		SERVER=0
		printf '%s exit status %s\n' "$(date -u +%FT%TZ)" "$rc" >>"$dir/unleash.exits" 2>/dev/null || true
		if ((n >= RESTARTS)); then
			log "unleash-server exited with status $rc, $((n + 1)) times in all: not starting it again"
			exit 1
		fi
		log "unleash-server exited with status $rc; starting it again ($((n + 1)) of $RESTARTS)"
		sleep 1
	done
}

# stop_server is supervise's TERM trap. It signals its whole process group
# (start_proc made the supervisor a session leader), so that a server just
# started, before SERVER was set, is stopped too; a server that ignores TERM
# for 10 s is killed with the group, as stop_procs would have killed it.
# (wait -n -p needs bash 5.1.)
stop_server() {
	trap '' TERM
	local server=$SERVER which=
	((server)) || server=${!:-}
	kill -TERM 0 2>/dev/null || true
	if [[ -n $server ]] && kill -0 "$server" 2>/dev/null; then
		sleep 10 &
		local watchdog=$!
		wait -n -p which "$server" "$watchdog" 2>/dev/null || true
		if [[ $which == "$watchdog" ]]; then
			kill -KILL 0 # the group, this shell included
		fi
		kill -KILL "$watchdog" 2>/dev/null || true
	fi
	exit 0
}

# ----------------------------------------------------------------- stop ---

stop_all() {
	local quiet=${1:-}
	if [[ -s $DIR/unleash.exits ]]; then
		log "unleash-server exited by itself $(wc -l <"$DIR/unleash.exits") time(s) in this run (supervise's log lines say which it started again):"
		cat "$DIR/unleash.exits" >&2
		show_log unleash
		rm -f "$DIR/unleash.exits"
	fi
	# Unleash first, so that it does not log a lost database. PostgreSQL's
	# TERM waits for every client to leave; INT is its "fast" shutdown.
	stop_procs TERM "$quiet" unleash
	stop_procs INT "$quiet" postgres
}

# ----------------------------------------------------------------- main ---

PG_USER="${UNLEASH_PG_USER:-postgres}"

main() {
	if [[ ${1:-} == supervise ]]; then
		shift
		supervise "$@"
	fi
	dispatch install INSTALL_DIR "$@"
}

{ main "$@"; exit $?; }
