#!/bin/sh
# prints a greeting for $1
echo "hello from ${1:-nobody}, built without a daemon"
