#!/usr/bin/env bash
# Run a command as an external Herald job: its output lines become the job's log, its exit
# status the job's end (completed, or failed with the status). Needs bash, curl 7.71+ and sed.
#
#   HERALD_URL=http://127.0.0.1:5000 HERALD_USERNAME=demo HERALD_PASSWORD=demo-password \
#     examples/curl/herald-run.sh "nightly build" -- make test
#
# HERALD_TOKEN (an access token) may replace the username and password. Every report
# carries its own number n, and curl sends it again on connection errors and 5xx: Herald
# skips what it has applied, so a retried report changes nothing. Each output line is one
# report here (fine for a CI log); the Python client batches. A line longer than
# HERALD_MAX_LINE (4096) characters is cut. Exit status: the command's (or 3 when Herald
# refused; 130 when the job was cancelled in Herald, which stops the command).
set -uo pipefail

die() { echo "herald-run: $*" >&2; exit 3; }

[ $# -ge 3 ] && [ "$2" = "--" ] || die "usage: herald-run.sh NAME -- COMMAND [ARGS...]"
NAME=$1
shift 2
URL=${HERALD_URL:?set HERALD_URL}
MAX_LINE=${HERALD_MAX_LINE:-4096}
CURL=(curl --silent --show-error --retry 5 --retry-all-errors --retry-delay 1 --max-time 30)

# A JSON string from any text: backslashes, quotes, tabs, CR escaped, other controls dropped.
json_string() {
  printf '"%s"' "$(printf '%s' "${1:0:$MAX_LINE}" | tr -d '\000-\010\013\014\016-\037' |
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' -e 's/\r/\\r/g')"
}

# The string value of KEY in a flat JSON answer (tokens and paths: no escapes in them).
json_field() { sed -n 's/.*"'"$1"'": *"\([^"]*\)".*/\1/p'; }

# POST a JSON body with a bearer token; prints the answer, then the HTTP status on its own line.
post() { "${CURL[@]}" -X POST -H "Authorization: Bearer $2" -H "Content-Type: application/json" \
  --data-binary "$3" --write-out '\n%{http_code}' "$URL$1"; }

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

N=0
ENDED=""
# Report one item (a JSON object without n); sets ENDED when Herald says the job is over.
# A report that raced another one (409 report_conflict) goes again with the same n.
report() {
  N=$((N + 1))
  local answer status
  while :; do
    answer=$(post "$REPORT" "$PRODUCER" "{\"items\": [{\"n\": $N, $1}]}") || die "cannot reach $URL"
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

report '"type": "status", "status": "running"'
exec {OUT}< <("$@" 2>&1; echo "__herald_exit__ $?")
RUN_PID=$!
EXIT=0
lines=0
while IFS= read -r -u "$OUT" line; do
  case $line in
    "__herald_exit__ "*) EXIT=${line#__herald_exit__ }; continue ;;
  esac
  printf '%s\n' "$line"
  lines=$((lines + 1))
  report "\"type\": \"log\", \"message\": $(json_string "$line")"
  if [ "$ENDED" = cancelled ]; then
    kill -TERM "$RUN_PID" 2>/dev/null
    echo "herald-run: job $JOB_ID was cancelled in Herald; the command was stopped" >&2
    exit 130
  fi
done
wait "$RUN_PID" 2>/dev/null

report "\"type\": \"counts\", \"counts\": {\"lines\": $lines}"
if [ "$EXIT" -eq 0 ]; then
  report '"type": "status", "status": "completed", "result": {"exit_status": 0}'
else
  report "\"type\": \"status\", \"status\": \"failed\", \"error\": {\"code\": \"exit_status\", \"message\": \"the command exited with status $EXIT\"}"
fi
[ "$ENDED" = cancelled ] && exit 130
exit "$EXIT"
