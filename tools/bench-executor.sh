#!/bin/bash
# Side-by-side `aimsim bench train` rounds of two binaries, 1 and 2 threads, and the new binary's
# executors (docs/results.md, "Parallel executor (issue 14)"). The machine is shared: every round runs
# every configuration once, in the same order, so drift hits all of them alike.
#
#   tools/bench-executor.sh OLD_BINARY NEW_BINARY LABEL ROUNDS TRAIN_SAMPLES [contended]
#
# `contended` starts one niced CPU-bound process for the whole run (and stops it at the end).
# One CSV line per run: label, round, binary, threads, executor, samples/s, test accuracy, load average.
old=$1; new=$2; label=$3; rounds=$4; n=$5; cont=$6
hog=
if [ "$cont" = contended ]; then
  nice -n 10 sh -c 'while :; do :; done' &
  hog=$!
  trap 'kill $hog' EXIT
  sleep 1
fi
for r in $(seq 1 "$rounds"); do
  for cfg in "old 1 -" "new 1 team" "old 2 -" "new 2 team" "new 2 team-always" "new 2 rayon"; do
    set -- $cfg
    if [ "$1" = old ]; then
      o=$("$old" bench train --train-samples "$n" --threads "$2" 2>&1)
    else
      o=$("$new" bench train --train-samples "$n" --threads "$2" --executor "$3" 2>&1)
    fi
    sps=$(echo "$o" | grep -o 'train_samples_per_s=[0-9]*' | cut -d= -f2)
    acc=$(echo "$o" | grep -o 'test_accuracy=[0-9.]*' | cut -d= -f2)
    thr=$(echo "$o" | grep '^threads:')
    echo "$label,$r,$1,$2,$3,$sps,$acc,$(cut -d' ' -f1 /proc/loadavg),\"$thr\""
  done
done
