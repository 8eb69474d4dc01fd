#!/usr/bin/env bash
# Peak resident memory of running training jobs: every 20 s, print each `ficomm train`
# process's VmHWM (kB) with its run directory. Usage: bash bench/sample_rss.sh PATTERN > log
# (PATTERN matches the run directories, e.g. replication); summarise with bench/replication_cost.py.
pattern=${1:-.}
while true; do
  for p in $(pgrep -f "bin/ficomm train out=$pattern"); do
    out=$(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -o 'out=[^ ]*')
    hwm=$(grep VmHWM /proc/$p/status 2>/dev/null | awk '{print $2}')
    [ -n "$hwm" ] && echo "$(date +%s) $p $out $hwm"
  done
  sleep 20
done
