#!/usr/bin/env bash
# Regression test for a lost wake-up (store-load reordering between a producer
# publishing a batch and its consumer starting an activation): the latency run
# of `sluice bench windows` with one credit per channel hung every time before
# the fix in engine/sched.c (sli_task_wake / run). A hang shows as the timeout;
# nothing here is about speed.
set -euo pipefail
bin=$1
for i in 1 2; do
  timeout 600 "$bin" bench windows --events 200000 --credits 1 > /dev/null
done
echo "no lost wake-up"
