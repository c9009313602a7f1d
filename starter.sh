#!/usr/bin/env bash
# starter.sh: run plantcdn on a laptop, with Docker when an engine is there, else locally.
# See ./starter.sh --help.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"

SERVICE=mock-cdn
VENV=${PLANTCDN_VENV:-$ROOT/.venv}
PIDFILE=${PLANTCDN_PIDFILE:-$ROOT/twistd.pid}
LOGFILE=${PLANTCDN_LOGFILE:-$ROOT/twistd.log}
START_TIMEOUT=${PLANTCDN_START_TIMEOUT:-30}
STOP_TIMEOUT=${PLANTCDN_STOP_TIMEOUT:-30}
STORAGE_DIRS=(s3_inbox s3_longterm)

usage() {
  cat <<'USAGE'
Usage: ./starter.sh COMMAND [OPTIONS]

Run plantcdn (the local AWS S3 + CloudFront stand-in). With a running Docker
engine it uses `docker compose` (service mock-cdn); without one it runs
`twistd plantcdn` from a local virtualenv in the background. It says which.

Commands:
  start [--build]   start plantcdn and wait until /_plantcdn/health answers
                    (--build: rebuild the image / reinstall into the virtualenv)
  stop              stop it (SIGTERM: uploads in flight may finish first)
  restart [--build] stop, then start
  status            running or not, how, where, and whether it is healthy
                    (exit 0 healthy, 1 running but unhealthy, 3 not running)
  logs [-f]         show the log (-f: follow it)
  test [ARGS]       run the test suite (bash scripts/test.sh ARGS)
  scan              security scan: bandit + pip-audit (bash scripts/scan.sh)
  clean [--yes]     delete everything stored in s3_inbox/ and s3_longterm/
                    (objects and plantcdn's metadata); asks first unless --yes.
                    Nothing outside those two folders is ever deleted.

Environment:
  PORT              port to listen on (also read from .env)   [8001]
  PLANTCDN_MODE     docker or local (default: docker when an engine answers)
  PLANTCDN_VENV     virtualenv for the local mode             [./.venv]
  PLANTCDN_PIDFILE, PLANTCDN_LOGFILE   local mode files     [./twistd.pid, ./twistd.log]
USAGE
}

say() { printf 'starter: %s\n' "$*"; }
die() { printf 'starter: error: %s\n' "$*" >&2; exit "${2:-1}"; }

# PORT from the environment, else from .env, else 8001 (as plantcdn itself resolves it).
port() {
  local value=${PORT:-}
  if [ -z "$value" ] && [ -f .env ]; then
    value=$(sed -n 's/^[[:space:]]*PORT[[:space:]]*=[[:space:]]*["'\'']\{0,1\}\([0-9]*\).*/\1/p' .env | tail -n 1)
  fi
  printf '%s' "${value:-8001}"
}

health_url() { printf 'http://127.0.0.1:%s/_plantcdn/health' "$(port)"; }

compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose "$@"
  elif command -v docker-compose >/dev/null 2>&1; then
    docker-compose "$@"
  else
    return 127
  fi
}

have_compose() {
  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1
}

# docker when asked, or when an engine answers and compose exists; else local.
# Decided once per run (asking the engine takes a moment).
MODE=
mode() {
  if [ -z "$MODE" ]; then
    case ${PLANTCDN_MODE:-} in
      docker|local) MODE=$PLANTCDN_MODE ;;
      "")
        if command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1 \
            && have_compose; then
          MODE=docker
        else
          MODE=local
        fi ;;
      *) die "PLANTCDN_MODE must be docker or local, not '$PLANTCDN_MODE'" 2 ;;
    esac
  fi
  printf '%s' "$MODE"
}

# Print the health document; exit status 0 when it says healthy.
probe() {
  local python=python3
  [ -x "$VENV/bin/python" ] && python="$VENV/bin/python"
  "$python" - "$(health_url)" <<'PY'
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        print(r.read().decode().strip()); sys.exit(0)
except urllib.error.HTTPError as e:
    print(e.read().decode(errors="replace").strip()); sys.exit(1)
except Exception as e:
    print(f"no answer: {e}"); sys.exit(2)
PY
}

wait_healthy() {
  local deadline=$((SECONDS + START_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if probe >/dev/null 2>&1; then return 0; fi
    if [ "$(mode)" = local ] && ! local_pid >/dev/null; then return 1; fi
    sleep 0.3
  done
  return 1
}

# -- local mode --------------------------------------------------------------------

# The pid of the plantcdn we started, if it still runs (and is ours: a twistd plantcdn).
local_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(tr -dc '0-9' <"$PIDFILE")
  [ -n "$pid" ] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [ -r "/proc/$pid/cmdline" ] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q plantcdn; then
    return 1
  fi
  printf '%s' "$pid"
}

ensure_venv() {
  local rebuild=$1
  if [ ! -x "$VENV/bin/twistd" ] || [ "$rebuild" = yes ]; then
    [ -f "$ROOT/setup.py" ] || die "no virtualenv at $VENV and no setup.py here to install from"
    if [ ! -x "$VENV/bin/python" ]; then
      say "creating the virtualenv $VENV"
      python3 -m venv "$VENV"
    fi
    say "installing plantcdn into $VENV"
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT" --config-settings editable_mode=compat
  fi
}

local_start() {
  local build=$1 pid
  if pid=$(local_pid); then
    say "already running locally (pid $pid) on http://127.0.0.1:$(port)"
    return 0
  fi
  rm -f "$PIDFILE"
  ensure_venv "$build"
  say "no Docker engine in use: starting twistd from $VENV in the background"
  say "log: $LOGFILE  pid file: $PIDFILE"
  PORT=$(port) "$VENV/bin/twistd" --umask=0022 --pidfile="$PIDFILE" --logfile="$LOGFILE" \
    plantcdn --data-dir "$ROOT"
  if wait_healthy; then
    say "plantcdn is up (pid $(local_pid)): http://127.0.0.1:$(port)  health: $(health_url)"
  else
    say "plantcdn did not become healthy within ${START_TIMEOUT}s; the end of its log:" >&2
    tail -n 30 "$LOGFILE" >&2 2>/dev/null || true
    exit 1
  fi
}

local_stop() {
  local pid
  if ! pid=$(local_pid); then
    rm -f "$PIDFILE"
    say "not running locally"
    return 0
  fi
  say "stopping plantcdn (pid $pid): SIGTERM, then up to ${STOP_TIMEOUT}s for uploads in flight"
  kill -TERM "$pid"
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "still running after ${STOP_TIMEOUT}s: sending SIGKILL to pid $pid" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$PIDFILE"
  say "stopped"
}

# -- commands ------------------------------------------------------------------------

cmd_start() {
  local build=no
  for arg in "$@"; do
    case $arg in
      --build) build=yes ;;
      *) die "start: unknown option '$arg' (see --help)" 2 ;;
    esac
  done
  if [ "$(mode)" = docker ]; then
    [ -f .env ] || die "docker mode needs a .env (cp .env.example .env, then set the key pair)"
    if [ "$build" = yes ]; then
      say "Docker engine found: docker compose up -d --build"
      compose up -d --build
    else
      say "Docker engine found: docker compose up -d"
      compose up -d
    fi
    if wait_healthy; then
      say "plantcdn is up in Docker (service $SERVICE): http://127.0.0.1:$(port)"
    else
      say "the container did not become healthy within ${START_TIMEOUT}s; see ./starter.sh logs" >&2
      exit 1
    fi
  else
    local_start "$build"
  fi
}

cmd_stop() {
  [ $# -eq 0 ] || die "stop takes no options" 2
  if [ "$(mode)" = docker ]; then
    say "docker compose stop $SERVICE"
    compose stop "$SERVICE"
  else
    local_stop
  fi
}

cmd_status() {
  [ $# -eq 0 ] || die "status takes no options" 2
  local how pid health
  how=$(mode)
  if [ "$how" = docker ]; then
    if [ -z "$(compose ps -q "$SERVICE" 2>/dev/null)" ]; then
      say "not running (docker compose, service $SERVICE)"
      return 3
    fi
    say "running in Docker (service $SERVICE)"
  else
    if ! pid=$(local_pid); then
      say "not running (local mode; no live process in $PIDFILE)"
      return 3
    fi
    say "running locally: pid $pid, log $LOGFILE"
  fi
  say "url: http://127.0.0.1:$(port)"
  if health=$(probe); then
    say "healthy: $health"
    return 0
  fi
  say "NOT healthy: $health"
  return 1
}

cmd_logs() {
  local follow=no
  for arg in "$@"; do
    case $arg in
      -f|--follow) follow=yes ;;
      *) die "logs: unknown option '$arg' (see --help)" 2 ;;
    esac
  done
  if [ "$(mode)" = docker ]; then
    if [ "$follow" = yes ]; then compose logs -f "$SERVICE"; else compose logs "$SERVICE"; fi
  else
    [ -f "$LOGFILE" ] || die "no log file yet at $LOGFILE (start plantcdn first)"
    if [ "$follow" = yes ]; then tail -n 100 -F "$LOGFILE"; else tail -n 100 "$LOGFILE"; fi
  fi
}

cmd_test() {
  [ -f "$ROOT/scripts/test.sh" ] || die "no scripts/test.sh in $ROOT"
  exec bash "$ROOT/scripts/test.sh" "$@"
}

cmd_scan() {
  [ $# -eq 0 ] || die "scan takes no options" 2
  [ -f "$ROOT/scripts/scan.sh" ] || die "no scripts/scan.sh in $ROOT"
  PLANTCDN_VENV="$VENV" exec bash "$ROOT/scripts/scan.sh"
}

cmd_clean() {
  local yes=no
  for arg in "$@"; do
    case $arg in
      -y|--yes) yes=yes ;;
      *) die "clean: unknown option '$arg' (see --help)" 2 ;;
    esac
  done
  if [ "$(mode)" = local ] && local_pid >/dev/null; then
    die "plantcdn is running: ./starter.sh stop first (files must not vanish under it)"
  fi
  if [ "$yes" != yes ]; then
    if [ ! -t 0 ]; then
      die "clean asks for confirmation: run it in a terminal or pass --yes" 2
    fi
    printf 'Delete everything stored in %s/s3_inbox and %s/s3_longterm? [y/N] ' "$ROOT" "$ROOT"
    local answer
    read -r answer || answer=
    case $answer in
      y|Y|yes|YES) ;;
      *) say "nothing deleted"; return 1 ;;
    esac
  fi
  local dir count
  for dir in "${STORAGE_DIRS[@]}"; do
    [ -d "$ROOT/$dir" ] || continue
    if [ -L "$ROOT/$dir" ]; then
      die "$ROOT/$dir is a symlink: refusing to delete through it"
    fi
    # -mindepth 1: the folder itself stays; .gitkeep stays; -xdev: never another filesystem.
    count=$(find "$ROOT/$dir" -mindepth 1 -xdev ! -name .gitkeep | wc -l)
    find "$ROOT/$dir" -mindepth 1 -maxdepth 1 -xdev ! -name .gitkeep -exec rm -rf -- {} +
    say "emptied $dir/ ($count entries)"
  done
  if [ "$(mode)" = docker ]; then
    say "Docker volumes: docker compose exec $SERVICE find /app/s3_inbox /app/s3_longterm -mindepth 1 -delete"
    compose exec -T "$SERVICE" find /app/s3_inbox /app/s3_longterm -mindepth 1 -delete \
      || say "could not clean the container's volumes (is $SERVICE running?)" >&2
  fi
}

main() {
  if [ $# -eq 0 ]; then usage; exit 2; fi
  local command=$1
  shift
  case $command in
    -h|--help|help|test|scan) ;;
    *) mode >/dev/null; MODE=$(mode) ;;
  esac
  case $command in
    -h|--help|help) usage ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    restart) cmd_stop; cmd_start "$@" ;;
    status) cmd_status "$@" ;;
    logs) cmd_logs "$@" ;;
    test) cmd_test "$@" ;;
    scan) cmd_scan "$@" ;;
    clean) cmd_clean "$@" ;;
    *) printf 'starter: unknown command %s\n\n' "$command" >&2; usage >&2; exit 2 ;;
  esac
}

main "$@"
