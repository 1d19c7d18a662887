# Sourced by scripts/test/test.sh and test-cross.sh.
# busted_counts FILE: sets s, f, e and p to the successes, failures, errors and
# pending of the last busted summary line in FILE; returns 1 when FILE has none.
busted_counts() {
  line=$(grep -E '[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors?' "$1" | tail -n 1)
  [ -n "$line" ] || return 1
  s=$(echo "$line" | grep -oE '[0-9]+ success' | grep -oE '[0-9]+')
  f=$(echo "$line" | grep -oE '[0-9]+ failure' | grep -oE '[0-9]+')
  e=$(echo "$line" | grep -oE '[0-9]+ error' | grep -oE '[0-9]+')
  p=$(echo "$line" | grep -oE '[0-9]+ pending' | grep -oE '[0-9]+')
}
