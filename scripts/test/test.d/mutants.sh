#!/bin/sh
# A few deliberate breakages whose specs are fast (spec/mutants/*.patch
# marked "Fast: yes": the decoder, the cursor, the checkpoint and the stop
# bound), so that the list cannot rot: each must be killed by the specs it
# names. `make mutants` runs them all. Bounded: 5 minutes at most.
cd "$(dirname "$0")/../../.."
exec timeout -k 10 300 sh scripts/test/mutants.sh --fast
