#!/bin/bash
# The image's HEALTHCHECK: GET /health on the HTTP port of the coordinator running in this container.
#
# A render node serves no HTTP; its health is the coordinator's to judge (heartbeats), so a container that runs
# no coordinator, or one without --http, counts as healthy while it runs. Bash's /dev/tcp does the request, so
# the image needs no HTTP client.
set -u

address=""
for cmdline in /proc/[0-9]*/cmdline; do
  words=()
  mapfile -d '' -t words 2>/dev/null < "$cmdline" || continue
  [ "${#words[@]}" -ge 2 ] || continue
  if [ "${words[0]##*/}" != "farm" ] || [ "${words[1]}" != "coordinator" ]; then
    continue
  fi
  for ((i = 2; i < ${#words[@]}; i++)); do
    case ${words[i]} in
      --http) address=${words[i + 1]:-} ;;
      --http=*) address=${words[i]#--http=} ;;
    esac
  done
  break
done
[ -n "$address" ] || exit 0

port=${address##*:}
host=${address%:*}
case $host in
  "" | "0.0.0.0" | "[::]" | "::") host=127.0.0.1 ;;
esac

exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET /health HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
IFS= read -r -t 4 status <&3 || exit 1
case $status in
  "HTTP/1."?" 200"*) exit 0 ;;
esac
echo "GET http://$host:$port/health: $status" >&2
exit 1
