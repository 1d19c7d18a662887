# Deliberate breakages (spec/mutants/*.patch): every one must make the specs
# it names fail. See scripts/test/mutants.sh.
#
#   make mutants          every mutant (a private Docker daemon when needed)
#   make mutants-fast     the few `make test` runs (scripts/test/test.d/mutants.sh)
#   make mutants MUTANTS="no-drain cursor-no-dedup"

MUTANTS ?=

.PHONY: mutants mutants-fast

mutants: build
	@sh scripts/test/mutants.sh $(MUTANTS)

mutants-fast: build
	@sh scripts/test/mutants.sh --fast
