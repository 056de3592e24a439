#!/bin/sh
# seedwal_check.sh DIR SCRIPT...: the check `durable audit --explore` runs on each crash state
# of the seed demo. The program was fed the lines a..g and printed "ack N" after each; the
# explorer names the acknowledgements given before the crash in $DURABLE_AUDIT_ACKS. Every
# acknowledged line must be in the state's dump, in order.
set -eu
dir=$1; shift
n=${DURABLE_AUDIT_ACKS:?}
want=$(printf 'a\nb\nc\nd\ne\nf\ng\n' | head -n "$n")
got=$("$@" dump "$dir" | head -n "$n")
if [ "$got" != "$want" ]; then
  echo "acknowledged $n lines; the state holds $(printf "%s\n" "$got" | grep -c .) of them: $(printf '%s' "$got" | tr '\n' ' ')"
  exit 1
fi
