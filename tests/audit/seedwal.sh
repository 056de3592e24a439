#!/bin/sh
# seedwal.sh append DIR [--fixed] < lines   |   seedwal.sh dump DIR
set -eu; cmd=$1 dir=$2 fixed=${3:-}
case $cmd in
append) mkdir -p "$dir"; n=0; seg=0
  while IFS= read -r line; do
    if [ $((n % 3)) -eq 0 ]; then
      seg=$((seg + 1)); f=$(printf '%s/%06d.wal' "$dir" "$seg"); : > "$f"
      if [ "$fixed" = --fixed ] || [ "$seg" = 1 ]; then sync "$dir"; fi   # seed bug: only the first
    fi
    printf '%s\n' "$line" >> "$f"; sync "$f"; n=$((n + 1)); echo "ack $n"
  done ;;
dump) cat "$dir"/*.wal 2>/dev/null || true ;;
esac
