# tools/lib.sh: what the small measuring scripts (p1-ab.sh, p1-callgrind.sh) share.
# Source it after `cd` to the project root with ROOT set:
#
#   . tools/lib.sh
#   scratch_dir pear-ab      # sets WORK; kills every pid in PIDS and removes WORK on exit
#   server_config "$WORK/cfg.yaml"
#
# Owns only process cleanup, the config copy, installing missing Debian packages and
# the small readers of figures (field, cpu_ticks, median); it never starts anything itself.

# scratch_dir PREFIX: a temp dir in WORK, and an exit trap that ends every process whose
# pid the script appended to PIDS, then removes WORK.
scratch_dir() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    PIDS=()
    trap _lib_cleanup EXIT
}

_lib_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}

# server_config OUT: the shipped config with absolute paths and its log in WORK.
server_config() {
    sed -e "s#\"\.\./#\"$ROOT/#g" -e "s#^\(  file:\).*#\1 \"$WORK/server.log\"#" \
        config/server_config.yaml >"$1"
}

# need COMMAND PACKAGE: installs the Debian PACKAGE when COMMAND is missing. On a fresh
# machine the package lists may be empty or stale, so a failed install refreshes them
# (apt-get update) and tries once more. Uses sudo when not root.
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "installing $2 (for $1)" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >/dev/null 2>&1 || {
        $sudo apt-get update >/dev/null &&
            $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >/dev/null
    }
    command -v "$1" >/dev/null 2>&1
}

# field NAME < json-line: one value of a flat JSON object (pear-bench's last line).
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,}\"]*\).*/\1/p" | head -n1; }

# cpu_ticks PID: utime + stime of the whole process (all threads) so far, in clock ticks
# (HZ per second).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
HZ=$(getconf CLK_TCK)

# median V...: the middle value (mean of the two middle ones for an even count).
median() {
    printf '%s\n' "$@" | sort -g |
        awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
