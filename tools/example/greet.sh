#!/bin/sh
# Prints a greeting for the name given as $1.
echo "hello from ${1:-nobody}, built by $(id -un) on $(uname -s)"
