#!/bin/sh
# Entrypoint of the quickstart image: greets its first argument.
echo "$GREETING, ${1:-world}!"
cat /app/build-info.txt
