#!/bin/sh
# The image's entrypoint: runs its arguments (farm coordinator ..., farm node ...) as the unprivileged user
# farm (uid 10001).
#
# It starts as root only for two things farm must not need root for:
#   - handing the data directory (--data-dir) to farm: Akash's persistent volumes, like new Docker volumes, are
#     mounted owned by root, and Akash sets no fsGroup that would change that;
#   - joining the groups that own the GPU device nodes (/dev/dri/*), whose ids are the host's, so that VA-API
#     can open them.
# Started as another user (docker run --user), it runs its arguments as that user and changes nothing.
set -eu

if [ "$(id -u)" != 0 ]; then
  exec "$@"
fi

data_dir=""
previous=""
for argument in "$@"; do
  case $argument in
    --data-dir=*) data_dir=${argument#--data-dir=} ;;
  esac
  if [ "$previous" = "--data-dir" ]; then
    data_dir=$argument
  fi
  previous=$argument
done
if [ -n "$data_dir" ]; then
  mkdir -p "$data_dir"
  if [ "$(stat -c %u "$data_dir")" != "$(id -u farm)" ]; then
    chown farm:farm "$data_dir" || echo "docker-entrypoint: cannot hand $data_dir to user farm" >&2
  fi
fi

groups=$(id -G farm | tr ' ' ',')
for device in /dev/dri/renderD* /dev/dri/card*; do
  [ -e "$device" ] || continue
  gid=$(stat -c %g "$device")
  case ",$groups," in
    *",$gid,"*) ;;
    *) groups="$groups,$gid" ;;
  esac
done

export HOME=/home/farm
exec setpriv --reuid=farm --regid=farm --groups="$groups" --inh-caps=-all --no-new-privs -- "$@"
