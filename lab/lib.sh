# SPDX-License-Identifier: GPL-3.0-or-later
# shellcheck shell=bash
# Shared by lab/lab.sh and lab/build-images.sh (sourced; set LAB_LOG_PREFIX first).
#
# Exit status 3 means "explained failure": the ERR trap lets it through silently
# (a die inside $(...) already printed its message).
readonly DIE_STATUS=3
die() {
    printf '%s: error: %s\n' "$LAB_LOG_PREFIX" "$*" >&2
    exit "$DIE_STATUS"
}

note() {
    printf '%s: %s\n' "$LAB_LOG_PREFIX" "$*" >&2
}

# Functions and subshells inherit the ERR trap: no silent exit on an unexpected failure.
set -E
on_error() {
    local status=$1 line=$2 command=$3
    ((status == DIE_STATUS)) && exit "$DIE_STATUS"
    die "unexpected failure (exit $status) at line $line: $command"
}
trap 'on_error "$?" "$LINENO" "$BASH_COMMAND"' ERR
