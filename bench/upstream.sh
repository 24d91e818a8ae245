# Sourced by the callgrind scripts (instructions.sh, waf-instructions.sh), with HERE set to
# bench/: `source "$HERE/upstream.sh" NAME PORT...` refuses to start when 9001 or a PORT is
# taken, makes RUN (a temporary directory, removed on exit together with stopping every PID
# in PIDS) and starts the nginx upstream (../shared/bench/nginx-upstream.conf) on 9001 as PIDS[0].
for port in 9001 "${@:2}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is already in use" >&2; exit 1; fi
done
RUN=$(mktemp -d "/tmp/$1.XXXXXX"); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 1; rm -rf "$RUN"; }
trap cleanup EXIT
cp "$HERE/../../shared/bench/nginx-upstream.conf" "$RUN/" 2>/dev/null || cp /work/shared/bench/nginx-upstream.conf "$RUN/"
nginx -p "$RUN/" -e stderr -c "$RUN/nginx-upstream.conf" -g 'daemon off;' >/dev/null 2>&1 & PIDS+=($!)
