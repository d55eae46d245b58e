#!/usr/bin/env bash
# Install this repository's Snakemake profiles so that
#   snakemake --profile slurm all     (or:  --profile local)
# works literally. Snakemake 9 looks a profile name up as a path, then in the
# current directory, ~/.config/snakemake (XDG config dir) and /etc/xdg/snakemake,
# never in workflow/profiles/.
#
#   scripts/install-profiles.sh            # symlink into ~/.config/snakemake
#   scripts/install-profiles.sh --copy     # copy instead (edit without touching the repo)
#   scripts/install-profiles.sh --system   # into /etc/xdg/snakemake (root)
#   SNAKEMAKE_PROFILE_DIR=/some/dir scripts/install-profiles.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$here/workflow/profiles"
mode=link
dest="${SNAKEMAKE_PROFILE_DIR:-${XDG_CONFIG_HOME:-$HOME/.config}/snakemake}"

for arg in "$@"; do
    case "$arg" in
        --copy) mode=copy ;;
        --link) mode=link ;;
        --system) dest=/etc/xdg/snakemake ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown option: $arg" >&2; exit 2 ;;
    esac
done

mkdir -p "$dest"
for profile in slurm local; do
    target="$dest/$profile"
    if [ -e "$target" ] || [ -L "$target" ]; then
        if [ -L "$target" ] && [ "$(readlink -f "$target")" = "$(readlink -f "$src/$profile")" ] && [ "$mode" = link ]; then
            echo "ok: $target -> $src/$profile (already installed)"
            continue
        fi
        if [ -L "$target" ]; then
            rm "$target"   # an old link holds no edits
        else
            backup="$target.bak.$(date +%Y%m%d%H%M%S)"
            mv "$target" "$backup"
            echo "moved existing $target to $backup"
        fi
    fi
    if [ "$mode" = link ]; then
        ln -s "$src/$profile" "$target"
        echo "linked: $target -> $src/$profile"
    else
        cp -r "$src/$profile" "$target"
        echo "copied: $src/$profile -> $target"
    fi
done
echo "now: snakemake --profile slurm all   (edit default-resources in $dest/slurm/config.yaml)"
