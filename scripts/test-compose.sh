#!/usr/bin/env bash
# `make test-compose`: builds the image and runs the compose stack for real (tests_compose/). Needs root.
#
# - installs Debian's docker.io, docker-compose and debootstrap when missing;
# - starts dockerd when none answers (log: var/compose-test/dockerd.log) and stops it again at the end;
# - builds (or reuses) the local bookworm base image, because no registry image can be pulled here;
# - runs pytest on tests_compose with POOLER_COMPOSE_TEST=1 (without it those tests skip).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "make test-compose needs root (dockerd, debootstrap)" >&2
  exit 1
fi

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || exit 1
fi

log_dir=var/compose-test
mkdir -p "$log_dir"
dockerd_pid=""
stop_dockerd() {
  [ -n "$dockerd_pid" ] || return 0
  kill -TERM "$dockerd_pid" 2>/dev/null || return 0
  # dockerd stops its containers and its containerd first; give it a deadline, then make sure.
  for _ in $(seq 150); do kill -0 "$dockerd_pid" 2>/dev/null || { echo "dockerd stopped" >&2; return 0; }; sleep 0.2; done
  echo "dockerd did not stop within 30s: killing it" >&2
  kill -KILL "$dockerd_pid" 2>/dev/null || true
}
trap stop_dockerd EXIT

if ! docker info >/dev/null 2>&1; then
  # Every container and build uses host networking, so this daemon needs no bridge and no iptables rules:
  # starting it changes nothing in the host's network setup.
  dockerd --bridge=none --iptables=false >"$log_dir/dockerd.log" 2>&1 &
  dockerd_pid=$!
  echo "started dockerd (pid $dockerd_pid, log $log_dir/dockerd.log)" >&2
  deadline=$((SECONDS + 60))
  until docker info >/dev/null 2>&1; do
    if ! kill -0 "$dockerd_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      echo "dockerd did not come up; its log:" >&2
      tail -n 40 "$log_dir/dockerd.log" >&2
      exit 1
    fi
    sleep 0.2
  done
fi

POOLER_BASE_IMAGE="$(bash scripts/compose-base-image.sh)" || exit 1
export POOLER_BASE_IMAGE POOLER_COMPOSE_TEST=1
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}}"
.venv/bin/python scripts/ensure_postgres.py || exit 1

started=$SECONDS
# -s: the test prints its phase timings; docker-compose's own output is captured and shown on failure only.
.venv/bin/python -m pytest -q -s -p no:cacheprovider "$@" tests_compose
rc=$?
echo "test-compose: pytest exit $rc after $((SECONDS - started))s" >&2
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
