#!/bin/sh
# Appends a line to DIR/log and acknowledges it without fsyncing the file (D002); the
# directory entry itself is made durable.
set -eu
mkdir -p "$1"
: > "$1/log"
sync "$1"
printf 'one\n' >> "$1/log"
echo "ack 1"
