#!/usr/bin/env bash
# with-broker.sh CMD [ARGS...]: run CMD with a Pulsar broker available, exit with CMD's exit code.
#
#   - PULSAR_URL set:                    run CMD as is (you chose the broker).
#   - something answers on 127.0.0.1:6650: export PULSAR_URL / PULSAR_ADMIN_URL for it, run CMD;
#                                          that broker is left alone.
#   - otherwise:                         `pulsar.sh up`, export the URLs, run CMD, and stop the
#                                          broker afterwards, also when CMD fails or on Ctrl-C.
#
# Several sessions may share one broker in the same checkout (two `make integration` at once):
# each holds a shared lock on .cache/pulsar-run/users.lock while CMD runs, and a broker that a
# session started is stopped by the last session to leave, never under another one's feet.
# PULSAR_BROKER_PORT / PULSAR_WEB_PORT move the ports, as for pulsar.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PULSAR="$HERE/pulsar.sh"

if [[ $# -eq 0 ]]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi

if [[ -n "${PULSAR_URL:-}" ]]; then
  exec "$@"
fi

HOST=127.0.0.1
BROKER_PORT="${PULSAR_BROKER_PORT:-6650}"
WEB_PORT="${PULSAR_WEB_PORT:-8080}"
RUN_DIR="$ROOT/.cache/pulsar-run"
AUTO_STOP="$RUN_DIR/auto-stop" # present while the running broker was started by a session

log() { echo "with-broker.sh: $*" >&2; }
port_open() { timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

mkdir -p "$RUN_DIR"
exec 7>"$RUN_DIR/users.lock"
flock -s 7

export PULSAR_URL="pulsar://$HOST:$BROKER_PORT"
export PULSAR_ADMIN_URL="${PULSAR_ADMIN_URL:-http://$HOST:$WEB_PORT}"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Last user out (no other session holds the shared lock) stops a session-started broker.
  if flock -n -x 7 && [[ -f "$AUTO_STOP" ]]; then
    "$PULSAR" down 7>&- || log "pulsar.sh down failed"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if port_open "$BROKER_PORT"; then
  log "using the broker already answering on $PULSAR_URL"
else
  # PULSAR_AUTO_STOP=1: pulsar.sh writes the auto-stop marker before it launches java, so a
  # start that fails half-way is cleaned up too.
  PULSAR_AUTO_STOP=1 "$PULSAR" up 7>&-
fi

rc=0
"$@" || rc=$?
exit "$rc"
