#!/bin/sh
# ab_revisions.sh OLD_BUILD NEW_BUILD [ROUNDS] - the same benchmark rows on two builds of
# cspresnet, interleaved (old, new, old, new, ...), medians of the per-round medians and
# the ratio old/new per row, with each run's peak RSS. Used to show that a refactor keeps
# the speed: build the old revision in a worktree (`git worktree add /tmp/old REV && make
# -C /tmp/old`) and pass both build directories. Rows: s and l at 640, 1 and 2 threads,
# batch 1, deployed; l at batch 8, 2 threads.
set -eu
OLD=$1
NEW=$2
ROUNDS=${3:-5}
ROWS="s:1:1 s:2:1 l:1:1 l:2:1 l:2:8"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) CPUs; $(date -u +%F)"
echo "| model | threads | batch | old ms | new ms | old/new | old RSS MB | new RSS MB |"
echo "|---|---|---|---|---|---|---|---|"
for row in $ROWS; do
    arch=${row%%:*}; rest=${row#*:}; threads=${rest%%:*}; batch=${rest#*:}
    olds=""; news=""; orss=0; nrss=0
    r=0
    while [ $r -lt "$ROUNDS" ]; do
        for which in old new; do
            dir=$OLD; [ $which = new ] && dir=$NEW
            line=$("$dir/cspresnet" bench --arch "$arch" --deploy --threads "$threads" --batch "$batch" \
                   --runs 5 --warmup 2 -q | grep RESULT)
            ms=$(echo "$line" | sed 's/.*median_ms=\([0-9.]*\).*/\1/')
            rss=$(echo "$line" | sed 's/.*rss_mb=\([0-9.]*\).*/\1/')
            if [ $which = old ]; then olds="$olds $ms"; orss=$rss; else news="$news $ms"; nrss=$rss; fi
        done
        r=$((r + 1))
    done
    med() { echo "$@" | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
    mo=$(med $olds); mn=$(med $news)
    echo "| $arch | $threads | $batch | $mo | $mn | $(awk "BEGIN {printf \"%.3f\", $mo/$mn}") | $orss | $nrss |"
done
