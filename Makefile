# The engine: a C library (build/libengine.a, build/libengine.so, which
# exports only the engine_* functions of engine/engine.h), the CLI
# (build/engine), and the test and benchmark entry points.
# build/libengine-test.so is the same library built with every symbol
# visible, for the unit specs' FFI bindings (spec/support/ffi.lua).
#
#   make            build
#   make run        install what running needs (scripts/deps.sh run), build,
#                   run examples/pipeline.lua
#   make test       install what testing needs (scripts/deps.sh test), build,
#                   run every spec
#   make install PREFIX=/usr/local [DESTDIR=...]

CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=
VERSION := 0.1.0

PKGS    := luajit libcurl libcjson libuv zlib libzstd libmosquitto libnats
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC $(WARN) $(CFLAGS) $(PKG_CFLAGS) \
             -DENGINE_VERSION='"$(VERSION)"' -DENGINE_LUA_DIR='"$(LUA_DIR)"'
LDLIBS  := $(PKG_LIBS) -lpthread -lm

LUA_DIR ?= $(CURDIR)/lua

SRCS    := $(filter-out engine/main.c,$(wildcard engine/*.c))
# Only what engine.h marks ENGINE_API leaves libengine.so.
VIS     := -fvisibility=hidden
HDRS    := $(wildcard engine/*.h)
SPEC_TOOLS := $(patsubst spec/support/%.c,%,$(wildcard spec/support/*.c))

# One build directory per flavour: plain, ASan+UBSan, TSan.
B ?= build
OBJS    = $(patsubst engine/%.c,$(B)/obj/%.o,$(SRCS))
TEST_OBJS = $(patsubst engine/%.c,$(B)/obj-test/%.o,$(SRCS))

.PHONY: all build asan tsan deps run test test-unit test-integration \
        install clean lint

all: build

build: $(B)/engine $(B)/libengine.a $(B)/libengine.so $(B)/libengine-test.so \
       $(addprefix $(B)/,$(SPEC_TOOLS))

$(B)/obj/%.o: engine/%.c $(HDRS) | $(B)/obj
	$(CC) $(ALL_CFLAGS) $(VIS) -c -o $@ $<

$(B)/obj-test/%.o: engine/%.c $(HDRS) | $(B)/obj-test
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(B)/obj $(B)/obj-test:
	mkdir -p $@

$(B)/libengine.a: $(OBJS)
	rm -f $@; ar rcs $@ $^

$(B)/libengine.so: $(OBJS)
	$(CC) -shared -Wl,-soname,libengine.so.0 $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(B)/libengine-test.so: $(TEST_OBJS) spec/support/ffi/sizes.c $(HDRS)
	$(CC) -shared $(ALL_CFLAGS) -Iengine -o $@ $(TEST_OBJS) spec/support/ffi/sizes.c \
	  $(LDFLAGS) $(LDLIBS)

# pkg-config's description of the installed library (make install).
$(B)/engine.pc: Makefile | $(B)/obj
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' \
	  'luadir=$${prefix}/share/engine/lua' '' 'Name: engine' \
	  'Description: follows Docker containers'"'"' logs through Lua filters to outputs' \
	  'Version: $(VERSION)' 'Requires.private: $(PKGS)' \
	  'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -lengine' 'Libs.private: -lpthread -lm' > $@

$(B)/engine: $(B)/obj/main.o $(B)/libengine.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(B)/%: spec/support/%.c $(B)/libengine.a
	$(CC) $(ALL_CFLAGS) -Iengine -o $@ $< $(B)/libengine.a $(LDFLAGS) $(LDLIBS)

# scripts/bench/bench-json.sh's timing program
$(B)/bench_json: scripts/bench/bench_json.c $(B)/libengine.a
	$(CC) $(ALL_CFLAGS) -Iengine -o $@ $< $(B)/libengine.a $(LDFLAGS) $(LDLIBS)

# scripts/bench/bench.sh scenario 10's compression timing program
$(B)/bench_compress: scripts/bench/bench_compress.c
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

# ENGINE_CHECKS: the invariants of check.h are checked in these builds.
SAN_ASAN := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
            -DENGINE_CHECKS
SAN_TSAN := -O1 -g -fsanitize=thread -DENGINE_CHECKS

asan:
	$(MAKE) --no-print-directory B=build/asan CFLAGS="$(SAN_ASAN)" LDFLAGS="-fsanitize=address,undefined" build
tsan:
	$(MAKE) --no-print-directory B=build/tsan CFLAGS="$(SAN_TSAN)" LDFLAGS="-fsanitize=thread" build

deps:
	@sh scripts/deps.sh test

run:
	@sh scripts/deps.sh run
	@$(MAKE) --no-print-directory $(B)/engine
	@sh scripts/dev/run-demo.sh

# The builds of make test use every core (TEST_JOBS).
TEST_JOBS ?= $(shell nproc 2>/dev/null || echo 2)

test: deps
	@$(MAKE) --no-print-directory -j$(TEST_JOBS) build asan tsan
	@TEST_JOBS=$(TEST_JOBS) sh scripts/test/test.sh

test-unit: build asan
	@sh scripts/test/test.sh unit

test-integration: build asan tsan
	@sh scripts/test/test.sh integration

install: build $(B)/engine.pc
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/engine/lua/engine \
	           $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/engine
	install -m 755 $(B)/engine $(DESTDIR)$(PREFIX)/bin/engine
	install -m 644 $(B)/libengine.a $(DESTDIR)$(PREFIX)/lib/libengine.a
	install -m 755 $(B)/libengine.so $(DESTDIR)$(PREFIX)/lib/libengine.so.$(VERSION)
	ln -sf libengine.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libengine.so.0
	ln -sf libengine.so.0 $(DESTDIR)$(PREFIX)/lib/libengine.so
	install -m 644 $(B)/engine.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/engine.pc
	install -m 644 engine/engine.h $(DESTDIR)$(PREFIX)/include/engine/engine.h
	cp -R lua/. $(DESTDIR)$(PREFIX)/share/engine/lua/

clean:
	rm -rf build

# Further targets (fuzzing, lint, cross builds, benchmarks), one file each.
-include $(sort $(wildcard mk/*.mk))
