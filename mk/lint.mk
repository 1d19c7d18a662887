# Static analysis of engine/: `make lint` runs clang-format (the style in
# .clang-format), cppcheck, clang-tidy and scripts/dev/lint-includes.lua (no
# cycle between modules, no header included for nothing) and fails on any
# finding. `clang-format -i engine/*.[ch]` fixes the style. The checks are chosen to find bugs, not style:
# clang-tidy's set and the reason for each exclusion are in .clang-tidy;
# cppcheck runs its warning, performance and portability classes.
# Suppressions are inline only (// cppcheck-suppress id, // NOLINT(check)),
# each next to the code it excuses, with a comment saying why.
#
#   make lint                    both tools over every engine/*.c
#   make lint LINT_SRCS=engine/decode.c

LINT_SRCS  ?= $(wildcard engine/*.c)
LINT_FLAGS := -std=c11 -D_GNU_SOURCE -DENGINE_VERSION='"$(VERSION)"' \
              -DENGINE_LUA_DIR='"$(LUA_DIR)"' -Iengine $(PKG_CFLAGS)
CPPCHECK   ?= cppcheck
CLANG_TIDY ?= clang-tidy

.PHONY: lint lint-cppcheck lint-tidy lint-includes lint-format

lint: lint-format lint-includes lint-cppcheck lint-tidy

lint-format:
	clang-format --dry-run --Werror engine/*.c engine/*.h

lint-includes:
	luajit scripts/dev/lint-includes.lua engine

lint-cppcheck:
	$(CPPCHECK) --quiet --error-exitcode=1 --inline-suppr --std=c11 \
	  --enable=warning,performance,portability --suppress=missingIncludeSystem \
	  -D_GNU_SOURCE -Iengine $(LINT_SRCS)

# one target per file, so that `make -j2 -k lint` checks two at a time and
# reports every file's findings
LINT_TIDY := $(addprefix lint-tidy/,$(LINT_SRCS))
.PHONY: $(LINT_TIDY)
lint-tidy: $(LINT_TIDY)
$(LINT_TIDY): lint-tidy/%:
	@$(CLANG_TIDY) --quiet $* -- $(LINT_FLAGS)
