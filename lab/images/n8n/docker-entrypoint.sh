#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Entrypoint of borgstack-lab/n8n (run under tini): `n8n` with the container's
# arguments; none starts the main server, `worker` a queue worker, `webhook` a
# webhook process.
set -eu
exec n8n "$@"
