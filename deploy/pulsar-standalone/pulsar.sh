#!/usr/bin/env bash
# Local Apache Pulsar standalone broker for tests, the demo and benchmarks: real broker, real
# BookKeeper (embedded bookie), RocksDB metadata, jars resolved from Maven Central. No Docker.
#
#   pulsar.sh fetch    resolve the broker jars into .cache/pulsar/<version>/lib (once; marker file)
#   pulsar.sh up       start the broker in the background and wait until it is ready (idempotent);
#                      a fresh, empty broker: `up --keep-data` starts on the previous run's data
#   pulsar.sh down     stop the broker this script started (TERM, then KILL after a deadline)
#   pulsar.sh restart  stop the broker and start it again KEEPING its data (topics, backlogs)
#   pulsar.sh status   say what runs (exit 0 ready, 1 running but not ready, 3 not running)
#   pulsar.sh wait     wait until the broker on the configured ports is ready
#   pulsar.sh url      print the service URL (pulsar://127.0.0.1:6650); `admin-url` the admin URL
#
# Environment:
#   JAVA_HOME                 JDK to use (17+), else `java` on PATH
#   PULSAR_BROKER_PORT        binary protocol port (default 6650)
#   PULSAR_WEB_PORT           admin/HTTP port (default 8080)
#   PULSAR_START_TIMEOUT      seconds `up`/`wait` wait for readiness (default 180)
#   PULSAR_STOP_TIMEOUT       seconds `down` waits after TERM before KILL (default 30)
#   PULSAR_VERSION            try another Pulsar release than pom.xml's (e.g. 4.0.7)
#   PULSAR_MEM                heap flags (default "-Xms512m -Xmx1g -XX:MaxDirectMemorySize=1g")
#   PULSAR_EXTRA_OPTS         extra JVM flags
#   PULSAR_RUN_DIR            run directory (default .cache/pulsar-run): a second broker from the
#                             same checkout (other ports) needs its own
#   PULSAR_CONF_EXTRA         a properties file appended to standalone.conf (its keys win), e.g.
#                             token authentication for auth tests (tests/integration/auth_broker.py)
#   PULSAR_AUTH_TOKEN         token the readiness probe sends (admin API and broker) when the
#                             broker requires authentication
#   PULSAR_AUTO_STOP=1        mark a broker `up` starts as session-owned (.cache/pulsar-run/auto-stop):
#                             with-broker.sh and tests/integration stop it when the last user leaves
#
# State lives under the repository's git-ignored .cache/: jars in .cache/pulsar/<version>/lib,
# the run directory (conf copy, data, tmp, logs/pulsar.log, pulsar.pid) in .cache/pulsar-run/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

POM_VERSION="$(sed -n 's:.*<pulsar.version>\(.*\)</pulsar.version>.*:\1:p' "$HERE/pom.xml" | head -n1)"
PULSAR_VERSION="${PULSAR_VERSION:-$POM_VERSION}"
[[ -n "$PULSAR_VERSION" ]] || { echo "pulsar.sh: no <pulsar.version> in $HERE/pom.xml" >&2; exit 1; }

HOST=127.0.0.1
BROKER_PORT="${PULSAR_BROKER_PORT:-6650}"
WEB_PORT="${PULSAR_WEB_PORT:-8080}"
START_TIMEOUT="${PULSAR_START_TIMEOUT:-180}"
STOP_TIMEOUT="${PULSAR_STOP_TIMEOUT:-30}"
SERVICE_URL="pulsar://$HOST:$BROKER_PORT"
ADMIN_URL="http://$HOST:$WEB_PORT"

CACHE="$ROOT/.cache"
DIST_DIR="$CACHE/pulsar/$PULSAR_VERSION"
LIB_DIR="$DIST_DIR/lib"
MARKER="$DIST_DIR/.fetched"
RUN_DIR="${PULSAR_RUN_DIR:-$CACHE/pulsar-run}"
PIDFILE="$RUN_DIR/pulsar.pid"
LOG="$RUN_DIR/logs/pulsar.log"
MAIN_CLASS=org.apache.pulsar.PulsarStandaloneStarter

log() { echo "pulsar.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# helpers

port_open() { # port -> 0 if something accepts TCP connections on 127.0.0.1:port
  timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# pid of the broker this script started, if it is alive and really is our java (else nothing)
our_pid() {
  local pid
  if [[ -f "$PIDFILE" ]]; then
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && is_ours "$pid"; then
      echo "$pid"
      return 0
    fi
  fi
  # The pidfile may be gone while the process lives on (crashed shell, manual rm): look for a
  # java whose command line names this checkout's run directory, which only we put there.
  pid="$(pgrep -f -- "-Djava.io.tmpdir=$RUN_DIR/tmp .*$MAIN_CLASS" | head -n1 || true)"
  if [[ -n "$pid" ]] && is_ours "$pid"; then
    echo "$pid"
    return 0
  fi
  return 1
}

is_ours() { # pid -> 0 if alive and its command line is our broker's
  local cmdline
  kill -0 "$1" 2>/dev/null || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true)"
  [[ "$cmdline" == *"$MAIN_CLASS"* && "$cmdline" == *"$RUN_DIR/tmp"* ]]
}

find_java() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    echo "$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    command -v java
  else
    die "no Java found: set JAVA_HOME or put java (17+) on PATH"
  fi
}

java_major() { # java -> major version number
  local v
  v="$("$1" -version 2>&1 | sed -n 's/.*version "\([0-9][0-9.]*\).*/\1/p' | head -n1)"
  v="${v#1.}"
  echo "${v%%.*}"
}

find_python() {
  if [[ -x "$ROOT/.venv/bin/python" ]]; then
    echo "$ROOT/.venv/bin/python"
  elif command -v python3 >/dev/null 2>&1; then
    command -v python3
  else
    die "no python3 found (needed for the readiness probe)"
  fi
}

log_tail() {
  if [[ -f "$LOG" ]]; then
    log "last lines of $LOG:"
    tail -n "${1:-60}" "$LOG" >&2
  fi
}

# ---------------------------------------------------------------------------------------------
# readiness probe: admin API lists public/default, then a real produce/consume round trip.
# Polls until the deadline; exits 0 ready, 2 broker process died, 3 timeout.
# shellcheck disable=SC2016
PROBE='
import json, os, sys, time, urllib.request, uuid

admin = os.environ["PROBE_ADMIN_URL"]
service = os.environ["PROBE_SERVICE_URL"]
deadline = time.monotonic() + float(os.environ["PROBE_TIMEOUT"])
pid = int(os.environ.get("PROBE_PID") or 0)
token = os.environ.get("PROBE_TOKEN") or ""

def alive():
    if not pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

def admin_ready():
    try:
        request = urllib.request.Request(admin + "/admin/v2/namespaces/public")
        if token:
            request.add_header("Authorization", "Bearer " + token)
        with urllib.request.urlopen(request, timeout=5) as r:
            return "public/default" in json.load(r)
    except Exception:
        return False

try:
    import pulsar
except ImportError:
    pulsar = None
    print("pulsar.sh: python has no pulsar-client; checking the admin API only", file=sys.stderr)

def round_trip():
    if pulsar is None:
        return True
    topic = "persistent://public/default/pulsar-sh-readiness"
    auth = pulsar.AuthenticationToken(token) if token else None
    client = pulsar.Client(service, operation_timeout_seconds=10, connection_timeout_ms=5000,
                           authentication=auth,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        consumer = client.subscribe(topic, "readiness", consumer_type=pulsar.ConsumerType.Shared)
        producer = client.create_producer(topic)
        marker = uuid.uuid4().hex.encode()
        producer.send(marker)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            msg = consumer.receive(timeout_millis=2000)
            consumer.acknowledge(msg)
            if msg.data() == marker:
                return True
        return False
    except Exception as exc:
        last_error[0] = repr(exc)
        return False
    finally:
        client.close()

last_error = [""]
while True:
    if not alive():
        sys.exit(2)
    if admin_ready() and round_trip():
        sys.exit(0)
    if time.monotonic() > deadline:
        if last_error[0]:
            print("pulsar.sh: last round-trip error: " + last_error[0], file=sys.stderr)
        sys.exit(3)
    time.sleep(1)
'

probe() { # timeout_seconds [pid] -> exit code of PROBE
  local rc=0
  PROBE_ADMIN_URL="$ADMIN_URL" PROBE_SERVICE_URL="$SERVICE_URL" PROBE_TIMEOUT="$1" \
    PROBE_PID="${2:-}" PROBE_TOKEN="${PULSAR_AUTH_TOKEN:-}" "$(find_python)" -c "$PROBE" || rc=$?
  return "$rc"
}

# ---------------------------------------------------------------------------------------------
# commands

cmd_fetch() {
  if [[ -f "$MARKER" && -f "$LIB_DIR/pulsar-broker-$PULSAR_VERSION.jar" ]]; then
    return 0
  fi
  mkdir -p "$DIST_DIR"
  exec 8>"$DIST_DIR/.lock"
  flock 8
  if [[ -f "$MARKER" && -f "$LIB_DIR/pulsar-broker-$PULSAR_VERSION.jar" ]]; then
    return 0 # fetched by a concurrent run while we waited for the lock
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found: Maven is needed once to fetch the broker jars"
  log "resolving Apache Pulsar $PULSAR_VERSION jars from Maven Central into $LIB_DIR ..."
  local tmp="$DIST_DIR/lib.partial" start=$SECONDS
  rm -rf "$tmp" "$LIB_DIR"
  # (sed: Maven 3.8 prints stray colour resets even in batch mode)
  if ! mvn -B -q -s "$HERE/settings.xml" -f "$HERE/pom.xml" \
      org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
      -Dpulsar.version="$PULSAR_VERSION" -DoutputDirectory="$tmp" -DincludeScope=runtime 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2; then
    rm -rf "$tmp"
    die "Maven could not resolve Pulsar $PULSAR_VERSION (see the output above)"
  fi
  [[ -f "$tmp/pulsar-broker-$PULSAR_VERSION.jar" ]] || die "pulsar-broker-$PULSAR_VERSION.jar missing after fetch"
  mv "$tmp" "$LIB_DIR"
  echo "pulsar $PULSAR_VERSION: $(find "$LIB_DIR" -name '*.jar' | wc -l) jars, fetched $(date -u +%FT%TZ) in $((SECONDS - start)) s" >"$MARKER"
  log "$(cat "$MARKER")"
}

cmd_wait() {
  local pid rc=0
  pid="$(our_pid || true)"
  probe "$START_TIMEOUT" "$pid" || rc=$?
  case "$rc" in
    0) log "broker ready at $SERVICE_URL (admin $ADMIN_URL)" ;;
    2) log "the broker process (pid $pid) died before becoming ready"; log_tail; rm -f "$PIDFILE"; exit 1 ;;
    3) log "broker not ready after ${START_TIMEOUT}s (PULSAR_START_TIMEOUT)"; log_tail; exit 1 ;;
    *) log "readiness probe failed (exit $rc)"; log_tail; exit 1 ;;
  esac
}

cmd_up() {
  local keep_data=0
  if [[ "${1:-}" == "--keep-data" ]]; then keep_data=1; fi
  cmd_fetch
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/.lock" # one `up`/`down` at a time in this checkout
  flock 9

  local pid
  if pid="$(our_pid)"; then
    log "our broker is already running (pid $pid)"
    cmd_wait
    return 0
  fi
  if port_open "$BROKER_PORT"; then
    log "something else already answers on $HOST:$BROKER_PORT; using it, not starting another broker"
    return 0
  fi
  if port_open "$WEB_PORT"; then
    die "port $WEB_PORT (PULSAR_WEB_PORT) is taken by another process; cannot start the broker"
  fi

  local java major
  java="$(find_java)"
  major="$(java_major "$java")"
  [[ "$major" =~ ^[0-9]+$ && "$major" -ge 17 ]] || die "$java is Java '$major'; Pulsar $PULSAR_VERSION needs 17+"

  # Fresh state every start: --wipe-data would only clear the bookie and keep the RocksDB metadata
  # (dangling ledger ids), and a leftover data/standalone/zookeeper silently switches modes.
  # --keep-data (restart) keeps data/ (metadata and bookie together, so they stay consistent).
  if [[ "$keep_data" == 1 ]]; then
    [[ -d "$RUN_DIR/data/metadata" ]] || log "no previous data in $RUN_DIR/data: starting empty"
    rm -rf "$RUN_DIR/tmp" "$RUN_DIR/conf" "$RUN_DIR/auto-stop"
  else
    rm -rf "$RUN_DIR/data" "$RUN_DIR/tmp" "$RUN_DIR/conf" "$RUN_DIR/auto-stop"
  fi
  mkdir -p "$RUN_DIR/data" "$RUN_DIR/tmp" "$RUN_DIR/conf" "$RUN_DIR/logs"
  # with-broker.sh and the test fixture set PULSAR_AUTO_STOP=1: the last session using this
  # broker stops it. A broker started by hand (`make pulsar-up`) has no marker and stays up.
  if [[ "${PULSAR_AUTO_STOP:-0}" == 1 ]]; then touch "$RUN_DIR/auto-stop"; fi
  [[ -f "$LOG" ]] && mv -f "$LOG" "$LOG.1"
  sed -e "s/^brokerServicePort=.*/brokerServicePort=$BROKER_PORT/" \
      -e "s/^webServicePort=.*/webServicePort=$WEB_PORT/" \
      "$HERE/conf/standalone.conf" >"$RUN_DIR/conf/standalone.conf"
  if [[ -n "${PULSAR_CONF_EXTRA:-}" ]]; then
    [[ -f "$PULSAR_CONF_EXTRA" ]] || die "PULSAR_CONF_EXTRA=$PULSAR_CONF_EXTRA is not a file"
    # java.util.Properties keeps the last value of a repeated key: these win
    { echo; echo "### appended from PULSAR_CONF_EXTRA ($PULSAR_CONF_EXTRA)"; cat "$PULSAR_CONF_EXTRA"; } \
      >>"$RUN_DIR/conf/standalone.conf"
  fi
  cp "$HERE/conf/log4j2.xml" "$RUN_DIR/conf/log4j2.xml"

  local -a opts
  # shellcheck disable=SC2206
  opts=(${PULSAR_MEM:--Xms512m -Xmx1g -XX:MaxDirectMemorySize=1g})
  opts+=(
    -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError
    -Djava.net.preferIPv4Stack=true "-Djava.io.tmpdir=$RUN_DIR/tmp" -Djute.maxbuffer=10485760
    -Dio.netty.tryReflectionSetAccessible=true -Dio.netty.recycler.maxCapacityPerThread=4096
    -Dpulsar.allocator.exit_on_oom=true
    --add-opens java.base/java.lang=ALL-UNNAMED --add-opens java.base/sun.net=ALL-UNNAMED
    --add-opens java.base/java.nio=ALL-UNNAMED --add-opens java.base/jdk.internal.misc=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED --add-opens java.base/java.util.zip=ALL-UNNAMED
    --add-opens java.management/sun.management=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/jdk.internal.platform=ALL-UNNAMED
    "-Dlog4j2.configurationFile=$RUN_DIR/conf/log4j2.xml" -Dlog4j.shutdownHookEnabled=false
    -Dlog4j2.is.webapp=false "-Dpulsar.log.dir=$RUN_DIR/logs"
  )
  if [[ "$major" -ge 24 ]]; then
    # netty and rocksdb still use sun.misc.Unsafe / System.loadLibrary; silence JDK 24+ warnings
    opts+=(--sun-misc-unsafe-memory-access=allow --enable-native-access=ALL-UNNAMED)
  fi
  # shellcheck disable=SC2206
  opts+=(${PULSAR_EXTRA_OPTS:-})

  log "starting Apache Pulsar $PULSAR_VERSION standalone on $SERVICE_URL (admin $ADMIN_URL), Java $major; log: $LOG"
  (
    cd "$RUN_DIR"
    # Do not let java inherit lock descriptors (ours or a caller's such as with-broker.sh): a
    # broker holding them would block every later up/down and fool the last-user-out check.
    for fd in /proc/self/fd/*; do
      fd="${fd##*/}"
      if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    # setsid: own session, so a Ctrl-C in the caller's terminal does not hit the broker directly;
    # `down` stops it. The subshell is not a process-group leader, so setsid execs without forking
    # and $! is java's pid.
    exec setsid "$java" -cp "$LIB_DIR/*" "${opts[@]}" "$MAIN_CLASS" \
      --config conf/standalone.conf -nfw -nss -a "$HOST" \
      --metadata-dir data/metadata --bookkeeper-dir data/bookkeeper --bookkeeper-port 0 \
      </dev/null >"$LOG" 2>&1
  ) &
  pid=$!
  echo "$pid" >"$PIDFILE"
  local start=$SECONDS
  cmd_wait
  log "started in $((SECONDS - start)) s (pid $pid, RSS $(($(ps -o rss= -p "$pid") / 1024)) MB)"
}

cmd_down() {
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/.lock"
  flock 9
  local pid
  if ! pid="$(our_pid)"; then
    rm -f "$PIDFILE" "$RUN_DIR/auto-stop"
    log "no broker of ours is running"
    return 0
  fi
  log "stopping broker (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "still alive after ${STOP_TIMEOUT}s; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PIDFILE" "$RUN_DIR/auto-stop"
  log "stopped"
}

cmd_status() {
  local pid
  echo "version:  Apache Pulsar $PULSAR_VERSION ($([[ -f "$MARKER" ]] && echo "jars in $LIB_DIR" || echo "jars not fetched"))"
  echo "service:  $SERVICE_URL"
  echo "admin:    $ADMIN_URL"
  if pid="$(our_pid)"; then
    echo "process:  ours, pid $pid, RSS $(($(ps -o rss= -p "$pid") / 1024)) MB, log $LOG"
  elif port_open "$BROKER_PORT"; then
    echo "process:  not ours (something else answers on $HOST:$BROKER_PORT)"
  else
    echo "process:  not running"
    return 3
  fi
  if probe 0 "" 2>/dev/null; then
    echo "ready:    yes"
  else
    echo "ready:    no"
    return 1
  fi
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  up | start) cmd_up "${2:-}" ;;
  down | stop) cmd_down ;;
  restart) cmd_down && cmd_up --keep-data ;;
  status) cmd_status ;;
  wait) cmd_wait ;;
  url) echo "$SERVICE_URL" ;;
  admin-url) echo "$ADMIN_URL" ;;
  *)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
