# Fuzzing: libFuzzer targets for every parser (spec/fuzz/<target>.c), built
# with clang and AddressSanitizer + UBSan into $(FUZZ_B).
#
#   make fuzz                    build, then run each target FUZZ_SECONDS (60)
#   make fuzz FUZZ_SECONDS=600   longer
#   make fuzz-build              build only
#   make fuzz-regress            run each target once over its seed corpus
#                                (spec/fuzz/corpus/<target>/), no mutation
#   make fuzz-test               each target FUZZ_TEST_SECONDS (10): the
#                                bounded run `make test` does
#                                (scripts/test/test.d/fuzz.sh)
#
# New inputs are written to $(FUZZ_B)/corpus/<target>/, never into the seed
# corpus; a crash leaves its input in $(FUZZ_B)/artifacts/. A crash input
# worth keeping goes into spec/fuzz/corpus/<target>/ once its bug is fixed.

FUZZ_CC      ?= clang
FUZZ_B       ?= build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_TEST_SECONDS ?= 10
FUZZ_TARGETS := decode timestamp cursor inspect json_string validate checkpoint bulk_reply \
                metrics_request
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                $(WARN) -Iengine $(PKG_CFLAGS) -DENGINE_VERSION='"$(VERSION)"' \
                -DFUZZ_LUA_DIR='"$(CURDIR)/lua"'
FUZZ_LIBS    := $(PKG_LIBS) -lpthread -lm

# The engine files each target links.
FUZZ_SRCS_decode      := engine/decode.c engine/timestamp.c
FUZZ_SRCS_timestamp   := engine/timestamp.c
FUZZ_SRCS_cursor      := engine/cursor.c
FUZZ_SRCS_inspect     := engine/container.c engine/select.c
# json.c makes lazy records plain (record.c), which hold batches.
FUZZ_JSON := engine/json.c engine/strbuf.c engine/record.c engine/batch.c engine/container.c \
             engine/timestamp.c
FUZZ_SRCS_json_string := $(FUZZ_JSON)
FUZZ_SRCS_validate    :=
FUZZ_SRCS_checkpoint  := engine/checkpoint.c engine/idtable.c engine/cursor.c engine/log.c engine/handles.c $(FUZZ_JSON)
FUZZ_SRCS_bulk_reply  := engine/encode_elasticsearch.c engine/encode_record.c $(FUZZ_JSON)
FUZZ_SRCS_metrics_request := engine/metrics_request.c

.PHONY: fuzz fuzz-build fuzz-regress fuzz-test

fuzz-build: $(addprefix $(FUZZ_B)/,$(FUZZ_TARGETS))

define FUZZ_RULE
$$(FUZZ_B)/$(1): spec/fuzz/$(1).c $$(FUZZ_SRCS_$(1)) $$(HDRS) | $$(FUZZ_B)/.dir
	$$(FUZZ_CC) $$(FUZZ_CFLAGS) -o $$@ $$< $$(FUZZ_SRCS_$(1)) $$(FUZZ_LIBS)
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call FUZZ_RULE,$(t))))

$(FUZZ_B)/.dir:
	mkdir -p $(FUZZ_B) && touch $@

fuzz: fuzz-build
	@sh scripts/test/fuzz.sh $(FUZZ_B) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-regress: fuzz-build
	@sh scripts/test/fuzz.sh $(FUZZ_B) 0 $(FUZZ_TARGETS)

fuzz-test: fuzz-build
	@sh scripts/test/fuzz.sh $(FUZZ_B) $(FUZZ_TEST_SECONDS) $(FUZZ_TARGETS)
