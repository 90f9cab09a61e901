#!/usr/bin/env bash
# The chaos run, short (tests/fault/chaos.sh; `make chaos` is the long one):
# 45 s of writers at 2 hubs and 3 sites under seeded kills, SIGSTOPs and
# partitions, then the history checker.  The seed is printed first and last;
# CHAOS_SEED=N replays its draws.  Needs root (network namespaces).
export CHAOS_SECONDS=${CHAOS_SECONDS:-45}
# Agreement normally comes within seconds of healing; this bounds a hang
# (under ASan on a loaded machine) and keeps a failing run inside CTest's timeout.
export CHAOS_CONVERGE_S=${CHAOS_CONVERGE_S:-150}
exec bash "$(dirname "$0")/chaos.sh" "$@"
