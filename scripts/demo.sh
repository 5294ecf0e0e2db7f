#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make demo: run the main job on a built-in default input.
set -euo pipefail
B=${1:-build}
"$B/tripool" info
