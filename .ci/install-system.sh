#!/usr/bin/env bash
# Install the system packages the end-to-end tests need (Debian 12, as root):
#   slurm-wlm + munge : a one-node Slurm cluster for the Snakemake slurm profile
#   chromium          : headless screenshots of the MLflow UI
#   fonts-dejavu-core : readable text in those screenshots
#   procps            : ps/pgrep used while debugging daemons
# Idempotent: re-running only re-checks the packages.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -E bash "$0" "$@"
    fi
    echo "install-system.sh: must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
PACKAGES=(slurm-wlm munge chromium fonts-dejavu-core procps ca-certificates)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-system.sh: all packages already installed: ${PACKAGES[*]}"
else
    echo "install-system.sh: installing ${missing[*]}"
    apt-get update
    apt-get install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}"
fi

# Directories the test cluster expects (the packages' systemd units would
# normally create them; there is no systemd on CI machines).
install -d -m 0755 /etc/slurm
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge

# munge key (Debian's postinst usually creates one; make sure).
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

for c in sbatch squeue sinfo slurmctld slurmd munged chromium; do
    command -v "$c" >/dev/null || { echo "install-system.sh: $c missing after install" >&2; exit 1; }
done
echo "install-system.sh: done"
