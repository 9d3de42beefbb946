#!/usr/bin/env bash
# Run a command as an external Herald job: its output lines become the job's log, its exit
# status the job's end (completed, or failed with the status). Needs bash 4.1+, curl 7.71+,
# sed, mktemp and mkfifo.
#
#   HERALD_URL=http://127.0.0.1:5000 HERALD_USERNAME=demo HERALD_PASSWORD=demo-password \
#     examples/curl/herald-run.sh "nightly build" -- make test
#
# HERALD_TOKEN (an access token) may replace the username and password. Every report
# carries its own number n, and curl sends it again on connection errors and 5xx: Herald
# skips what it has applied, so a retried report changes nothing. Each output line is one
# report here (fine for a CI log); the Python client batches. While the command prints
# nothing, an empty report every HERALD_POLL_SECONDS (2) asks whether the job was cancelled.
# A line longer than HERALD_MAX_LINE (4096) bytes is cut; bytes that are not UTF-8 become
# U+FFFD. The command runs in a process group of its own: a cancel in Herald (or a SIGINT or
# SIGTERM to this script) sends it SIGTERM, then SIGKILL after HERALD_STOP_GRACE (10)
# seconds. Should reporting fail, the job is ended failed (error.code reporting_failed)
# before the script gives up. Exit status: the command's; 3 when Herald refused or could not
# be reached; 130 when the job was cancelled in Herald (143 on SIGTERM, 130 on SIGINT).
set -uo pipefail

URL=""
JOB_ID=""
PRODUCER=""
REPORT=""
CMD_PID=""
N=0
ENDED=""

# Stop, then exit 3; a job already created is first ended failed with the reason.
die() {
  echo "herald-run: $*" >&2
  stop_command
  if [ -n "$REPORT" ] && [ -z "$ENDED" ]; then
    CURL=(curl --silent --show-error --retry 2 --retry-all-errors --retry-delay 1 --max-time 10)
    N=$((N + 1))
    local item="{\"n\": $N, \"type\": \"status\", \"status\": \"failed\", \"error\": {\"code\": \"reporting_failed\", \"message\": $(json_string "herald-run stopped reporting: $*")}}"
    post "$REPORT" "$PRODUCER" "{\"items\": [$item]}" >/dev/null 2>&1 &&
      echo "herald-run: job $JOB_ID was ended failed" >&2
  fi
  exit 3
}


# One character of valid UTF-8 (a byte pattern, matched in the C locale).
TAIL=$'[\x80-\xbf]'
UTF8_CHAR=$'[\x01-\x7f]|[\xc2-\xdf]'$TAIL$'|\xe0[\xa0-\xbf]'$TAIL$'|[\xe1-\xec\xee\xef]'$TAIL$TAIL
UTF8_CHAR+=$'|\xed[\x80-\x9f]'$TAIL$'|\xf0[\x90-\xbf]'$TAIL$TAIL$'|[\xf1-\xf3]'$TAIL$TAIL$TAIL
UTF8_CHAR+=$'|\xf4[\x80-\x8f]'$TAIL$TAIL
UTF8_PREFIX="^($UTF8_CHAR)*"
CONTROLS=$'\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f'

# A JSON string from any bytes: cut to MAX_LINE bytes, each byte that is not part of valid
# UTF-8 replaced by U+FFFD, backslashes, quotes, tabs, CRs and LFs escaped, other controls
# dropped.
json_string() {
  local LC_ALL=C
  local rest=${1:0:$MAX_LINE} text=""
  while :; do
    [[ $rest =~ $UTF8_PREFIX ]]
    text+=${BASH_REMATCH[0]}
    rest=${rest:${#BASH_REMATCH[0]}}
    [ -n "$rest" ] || break
    text+=$'\xef\xbf\xbd'
    rest=${rest:1}
  done
  text=${text//\\/\\\\}
  text=${text//\"/\\\"}
  text=${text//$'\t'/\\t}
  text=${text//$'\r'/\\r}
  text=${text//$'\n'/\\n}
  text=${text//[$CONTROLS]/}
  printf '"%s"' "$text"
}

# The string value of KEY in a flat JSON answer (tokens and paths: no escapes in them).
json_field() { sed -n 's/.*"'"$1"'": *"\([^"]*\)".*/\1/p'; }

# POST a JSON body with a bearer token; prints the answer, then the HTTP status on its own line.
post() { "${CURL[@]}" -X POST -H "Authorization: Bearer $2" -H "Content-Type: application/json" \
  --data-binary "$3" --write-out '\n%{http_code}' "$URL$1"; }

# SIGTERM to the command's whole process group, SIGKILL to what is left after GRACE seconds.
stop_command() {
  [ -n "$CMD_PID" ] || return 0
  local group=-$CMD_PID waited=0
  CMD_PID=""
  kill -TERM -- "$group" 2>/dev/null || return 0
  while kill -0 -- "$group" 2>/dev/null; do
    if [ "$waited" -ge $((GRACE * 10)) ]; then
      echo "herald-run: the command did not stop within $GRACE s: SIGKILL" >&2
      kill -KILL -- "$group" 2>/dev/null
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

[ $# -ge 3 ] && [ "$2" = "--" ] || die "usage: herald-run.sh NAME -- COMMAND [ARGS...]"
NAME=$1
shift 2
URL=${HERALD_URL:?set HERALD_URL}
MAX_LINE=${HERALD_MAX_LINE:-4096}
POLL=${HERALD_POLL_SECONDS:-2}
GRACE=${HERALD_STOP_GRACE:-10}
CURL=(curl --silent --show-error --retry 5 --retry-all-errors --retry-delay 1 --max-time 30)

if [ -z "${HERALD_TOKEN:-}" ]; then
  login=$(post /api/auth/login "" "{\"username\": $(json_string "${HERALD_USERNAME:?set HERALD_USERNAME or HERALD_TOKEN}"), \"password\": $(json_string "${HERALD_PASSWORD:-}")}") ||
    die "cannot reach $URL"
  HERALD_TOKEN=$(printf '%s' "$login" | json_field access_token)
  [ -n "$HERALD_TOKEN" ] || die "login refused: $login"
fi

created=$(post /api/jobs "$HERALD_TOKEN" "{\"kind\": \"external\", \"name\": $(json_string "$NAME")}") ||
  die "cannot reach $URL"
PRODUCER=$(printf '%s' "$created" | json_field producer_token)
REPORT=$(printf '%s' "$created" | json_field report_url)
[ -n "$PRODUCER" ] && [ -n "$REPORT" ] || die "job refused: $created"
JOB_ID=$(printf '%s' "$REPORT" | sed -n 's|^/api/jobs/\([0-9]*\)/report$|\1|p')
echo "herald-run: job $JOB_ID: $URL/jobs/$JOB_ID" >&2

# Report items (JSON objects without n, comma-separated; none: a poll); sets ENDED when
# Herald says the job is over. A report that raced another one (409 report_conflict) goes
# again with the same numbers.
report() {
  local items="" item answer status
  for item in "$@"; do
    N=$((N + 1))
    items+="${items:+, }{\"n\": $N, $item}"
  done
  while :; do
    answer=$(post "$REPORT" "$PRODUCER" "{\"items\": [$items]}") || {
      stop_if_signalled # a Ctrl-C reaches curl too
      die "cannot reach $URL"
    }
    status=${answer##*$'\n'}
    case $status in
      200) return ;;
      409)
        case $answer in
          *'"report_conflict"'*) sleep 0.2 ;;
          *) ENDED=$(printf '%s' "$answer" | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p'); return ;;
        esac ;;
      *) die "report refused (HTTP $status): ${answer%$'\n'*}" ;;
    esac
  done
}

# Stop the command once the job has ended in Herald (cancelled by its user, or failed).
stop_if_ended() {
  [ -n "$ENDED" ] || return 0
  stop_command
  if [ "$ENDED" = cancelled ]; then
    echo "herald-run: job $JOB_ID was cancelled in Herald; the command was stopped" >&2
    exit 130
  fi
  echo "herald-run: job $JOB_ID ended in Herald ($ENDED); the command was stopped" >&2
  exit 3
}

# A signal to this script (the traps only note it: it is acted on between two steps, never
# in the middle of a report): stop the command, end the job cancelled, exit 128 + signal.
SIGNAL=""
trap 'SIGNAL=INT' INT
trap 'SIGNAL=TERM' TERM
stop_if_signalled() {
  [ -n "$SIGNAL" ] || return 0
  trap - INT TERM
  echo "herald-run: SIG$SIGNAL: stopping the command" >&2
  stop_command
  [ -n "$ENDED" ] || report "\"type\": \"status\", \"status\": \"cancelled\", \"message\": \"herald-run got SIG$SIGNAL\""
  [ "$SIGNAL" = INT ] && exit 130
  exit 143
}

report '"type": "status", "status": "running"'
stop_if_ended
stop_if_signalled

WORK=$(mktemp -d "${TMPDIR:-/tmp}/herald-run.XXXXXX") || die "cannot make a temporary directory"
mkfifo "$WORK/output" || die "cannot make a fifo in $WORK"
set -m # job control: the command gets a process group of its own, which stop_command ends
"$@" >"$WORK/output" 2>&1 &
CMD_PID=$!
set +m
exec {OUT}<"$WORK/output"
rm -r "$WORK"
# Bytes from here on (the command keeps the caller's locale): in a UTF-8 locale, read takes
# the newline after an invalid byte for the rest of a character and runs two lines together.
LC_ALL=C

lines=0
partial=""
while :; do
  IFS= read -r -t "$POLL" -u "$OUT" piece
  got=$?
  stop_if_signalled
  if [ "$got" -gt 128 ]; then # silent for POLL seconds: ask whether the job was cancelled
    partial+=$piece
    report
    stop_if_ended
    stop_if_signalled
    continue
  fi
  line=$partial$piece
  partial=""
  [ "$got" -eq 0 ] || [ -n "$line" ] || break # the end of the output
  printf '%s\n' "$line"
  lines=$((lines + 1))
  report "\"type\": \"log\", \"message\": $(json_string "$line")"
  stop_if_ended
  stop_if_signalled
  [ "$got" -eq 0 ] || break # a last line without a newline
done
wait "$CMD_PID"
EXIT=$?
stop_if_signalled
CMD_PID=""

report "\"type\": \"counts\", \"counts\": {\"lines\": $lines}"
if [ "$EXIT" -eq 0 ]; then
  report '"type": "status", "status": "completed", "result": {"exit_status": 0}'
else
  report "\"type\": \"status\", \"status\": \"failed\", \"error\": {\"code\": \"exit_status\", \"message\": \"the command exited with status $EXIT\"}"
fi
stop_if_ended
exit "$EXIT"
