#!/bin/sh
# Kaniko's executor path in the kiln image: the same flags, run by kiln.
exec /usr/local/bin/kiln executor "$@"
