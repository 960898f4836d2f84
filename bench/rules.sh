#!/bin/sh
# Rule-engine throughput: moat vs SpamAssassin, stock SpamAssassin rules, same ~56 messages,
# network tests off, one process each. SpamAssassin's start-up (rule compilation) is excluded by
# timing an mbox of all messages and subtracting an mbox of one.
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
MOAT_BENCH_MBOX="$tmp/all.mbox" cargo test --release --test it ruleset_bench -- --ignored --nocapture 2>&1 | grep -E "loaded|messages/s"
awk 'BEGIN{n=0} /^From bench@localhost /{n++} n<=1' "$tmp/all.mbox" > "$tmp/one.mbox"
count=$(grep -c '^From bench@localhost ' "$tmp/all.mbox")
t() { s=$(date +%s.%N); spamassassin -L -t --mbox < "$1" > /dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
one=$(t "$tmp/one.mbox"); all=$(t "$tmp/all.mbox")
echo "spamassassin: $count messages in ${all}s, 1 message in ${one}s"
echo "spamassassin marginal: $(echo "scale=1; ($count - 1) / ($all - $one)" | bc) messages/s"
