#!/usr/bin/env bash
# The demo: a 60 s 720p clip with audio, rendered by a coordinator and 2 local nodes over loopback TCP.
set -euo pipefail
farm="$1"
out="demo-out"
mkdir -p "$out"
if [ ! -s "$out/sample.mp4" ]; then
  echo "making a 60 s sample clip (720p, 30 fps, stereo AAC) ..."
  ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=1280x720:rate=30" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo" \
    -t 60 -c:v libx264 -preset veryfast -g 60 -bf 2 -pix_fmt yuv420p -c:a aac -b:a 128k \
    -metadata title="farm demo" "$out/sample.mp4.tmp.mp4"
  mv "$out/sample.mp4.tmp.mp4" "$out/sample.mp4"
fi
echo "rendering with a coordinator and 2 nodes ..."
"$farm" render "$out/sample.mp4" -o "$out/rendered.mp4" --nodes 2 --codec h264 --crf 23 --preset medium
