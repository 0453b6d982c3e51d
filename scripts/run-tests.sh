#!/usr/bin/env bash
# Runs the whole suite. PostgreSQL is required (see README); pytest's exit code 5
# ("no tests collected") is a failure here, never a silent pass.
set -uo pipefail
cd "$(dirname "$0")/.."
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}}"
.venv/bin/python scripts/ensure_postgres.py || exit 1
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=20 "$@" tests
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
