# The script library of test/controlplane/controlplane.sh and
# test/unleash/unleash.sh: logging, free loopback ports, processes started
# in their own session with pid files in DIR/pids and logs in DIR/logs,
# bounded waits that show the logs on failure, bounded stops, and the
# command line (PREPARE | start DIR | stop DIR) both scripts take.
#
# The sourcing script sets PROG (its name in messages) before sourcing,
# and defines TIMEOUT (seconds a wait may take) and the functions usage,
# start and stop_all; DIR is set by set_dir.
# shellcheck shell=bash

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

declare -A USED_PORTS=()
STARTED=()

# free_port -> a TCP port on which nothing listens (outside the ephemeral range).
free_port() {
	if ((${#USED_PORTS[@]} == 0)); then
		local _sl local_addr _rest f
		for f in /proc/net/tcp /proc/net/tcp6; do
			[[ -r $f ]] || continue
			while read -r _sl local_addr _rest; do
				[[ $local_addr == *:* ]] || continue
				USED_PORTS[$((16#${local_addr##*:}))]=1
			done <"$f"
		done
		USED_PORTS[0]=1
	fi
	local lo=32768 hi=60999 min max p i
	if [[ -r /proc/sys/net/ipv4/ip_local_port_range ]]; then
		read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
	fi
	if ((lo > 12000)); then min=10000 max=$((lo - 1)); else min=$((hi + 1)) max=65535; fi
	for ((i = 0; i < 1000; i++)); do
		p=$((min + (RANDOM * 32768 + RANDOM) % (max - min + 1)))
		if [[ -z ${USED_PORTS[$p]:-} ]]; then
			USED_PORTS[$p]=1
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# start_proc NAME COMMAND...: start in the background; pid in
# DIR/pids/NAME.pid, output in DIR/logs/NAME.log.
start_proc() {
	local name=$1
	shift
	# setsid: own session, so the servers survive the caller's terminal
	# signals; stdio redirected so callers capturing our output do not hang.
	(cd "$DIR" && exec setsid "$@" </dev/null >"$DIR/logs/$name.log" 2>&1) &
	echo "$!" >"$DIR/pids/$name.pid"
}

pid_of() { # NAME -> pid if it is alive and was started for DIR
	local f="$DIR/pids/$1.pid" pid
	[[ -s $f ]] || return 1
	pid="$(<"$f")"
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/cmdline ]] || return 1
	tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR/" || return 1
	echo "$pid"
}

show_log() {
	local name=$1 f="$DIR/logs/$1.log"
	[[ -f $f ]] || return 0
	log "---- last 40 lines of $f ----"
	tail -n 40 "$f" >&2 || true
	log "---- end of $name log ----"
}

# fail MESSAGE [COMPONENT...]: print logs, stop everything, exit 1.
fail() {
	local msg=$1 c
	shift
	log "error: $msg"
	for c in "$@"; do show_log "$c"; done
	stop_all
	exit 1
}

# running NAME: the process started for NAME is alive (not gone, not a zombie).
running() {
	local f="$DIR/pids/$1.pid" pid state
	[[ -s $f ]] || return 1
	pid="$(<"$f")"
	state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
	[[ -n $state && $state != Z ]]
}

check_alive() {
	local c
	for c in "${STARTED[@]}"; do
		running "$c" || fail "$c exited unexpectedly" "$c"
	done
}

# wait_until DESCRIPTION "COMPONENT..." COMMAND...: poll COMMAND for TIMEOUT
# seconds; on failure show the logs of the COMPONENTs.
wait_until() {
	local desc=$1 comps
	read -r -a comps <<<"$2"
	shift 2
	local deadline=$((SECONDS + TIMEOUT))
	until "$@" >/dev/null 2>&1; do
		check_alive
		((SECONDS < deadline)) || fail "$desc not ready within ${TIMEOUT}s" "${comps[@]}"
		sleep 0.2
	done
}

envline() { # NAME VALUE: shell-sourceable, unquoted when safe
	if [[ $2 =~ ^[A-Za-z0-9_./:@,=+-]*$ ]]; then
		printf '%s=%s\n' "$1" "$2"
	else
		printf '%s=%q\n' "$1" "$2"
	fi
}


# stop_procs SIGNAL QUIET NAME...: send SIGNAL to the processes started for
# the NAMEs, wait up to 15s for them all, then KILL those left; remove
# their pid files.
stop_procs() {
	local sig=$1 quiet=$2 name pid pids=() names=()
	shift 2
	[[ -d "$DIR/pids" ]] || return 0
	for name in "$@"; do
		if pid="$(pid_of "$name")"; then
			pids+=("$pid")
			names+=("$name")
			kill "-$sig" "$pid" 2>/dev/null || true
		fi
	done
	if ((${#pids[@]})); then
		[[ -n $quiet ]] || log "stopping ${names[*]} (pid ${pids[*]})"
		local deadline=$((SECONDS + 15)) alive
		while :; do
			alive=()
			for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
			((${#alive[@]})) || break
			if ((SECONDS >= deadline)); then
				log "killing ${alive[*]} (still running after $sig)"
				for pid in "${alive[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
				sleep 0.2
				break
			fi
			sleep 0.1
		done
	fi
	for name in "$@"; do rm -f "$DIR/pids/$name.pid"; done
}

# ready WHAT URL T0: make DIR/env.tmp, written by the caller, DIR/env
# (private: it may hold a token), end the start's cleanup on signals, say
# WHAT is ready at URL since T0 (SECONDS), and print the env file's path.
ready() {
	chmod 600 "$DIR/env.tmp"
	mv -f "$DIR/env.tmp" "$DIR/env"
	trap - INT TERM
	log "$1 ready after $((SECONDS - $3))s: $2 (source $DIR/env; stop with: $0 stop $DIR)"
	echo "$DIR/env"
}

# lock_or_done LOCKFILE CHECK...: serialize with other runs on LOCKFILE
# (flock on fd 9, held until the script exits); succeed if CHECK holds
# once the lock is taken, that is, another run did the work meanwhile.
lock_or_done() {
	local lock=$1
	shift
	command -v flock >/dev/null || return 1
	exec 9>"$lock"
	flock 9
	if "$@"; then
		exec 9>&-
		return 0
	fi
	return 1
}

# set_dir DIR: create DIR and set DIR to its absolute path.
set_dir() {
	[[ -n ${1:-} ]] || usage
	mkdir -p "$1"
	DIR="$(cd "$1" && pwd -P)"
}

# dispatch PREPARE OUTPUT ARGS...: the command line of both scripts.
# PREPARE (build, install) runs the function of that name and prints the
# value of the variable OUTPUT; start DIR runs start; stop DIR runs
# stop_all, and does nothing if DIR does not exist.
dispatch() {
	local prepare=$1 output=$2
	shift 2
	case "${1:-}" in
	"$prepare")
		[[ $# -eq 1 ]] || usage
		"$prepare"
		echo "${!output}"
		;;
	start)
		[[ $# -eq 2 ]] || usage
		set_dir "$2"
		start
		;;
	stop)
		[[ $# -eq 2 ]] || usage
		if [[ ! -d $2 ]]; then return 0; fi
		set_dir "$2"
		stop_all
		;;
	*) usage ;;
	esac
}
