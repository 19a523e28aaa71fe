#!/bin/sh
# Any language can take part: append JSON lines to $CLUSTERD_EVENTS.
# Parameters arrive as --key=value arguments.
for arg in "$@"; do
    case "$arg" in
        --scale=*) scale="${arg#--scale=}" ;;
    esac
done
scale="${scale:-1}"
step=0
while [ "$step" -lt 5 ]; do
    loss=$(awk "BEGIN { print $scale / ($step + 1) }")
    echo "{\"type\": \"metric\", \"step\": $step, \"values\": {\"loss\": $loss}}" >> "$CLUSTERD_EVENTS"
    step=$((step + 1))
done
