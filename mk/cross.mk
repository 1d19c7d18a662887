# Cross builds, emulated tests, the distribution tarball and the man page.
#
#   make CROSS=aarch64-linux-gnu       build/arm64/{engine,libengine.a,...}
#   make CROSS=arm-linux-gnueabihf     build/armhf/...
#   make test-cross [ARCH=arm64]       unit specs and an end-to-end run under
#                                      qemu-user (installs what is missing)
#   make dist [CROSS=...]              build/dist/engine-VERSION-ARCH.tar.gz
#   make install-extra                 the man page, example pipeline and
#                                      systemd unit (PREFIX, DESTDIR as install)
#
# Cross builds use Debian's multiarch packages (scripts/test/cross-deps.sh): the
# compiler $(CROSS)-gcc, and pkg-config reading only the target's .pc files.
# The build directory is build/<arch> unless B is given.

CROSS_ARCH_aarch64-linux-gnu := arm64
CROSS_ARCH_arm-linux-gnueabihf := armhf
CROSS_TRIPLET_arm64 := aarch64-linux-gnu
CROSS_TRIPLET_armhf := arm-linux-gnueabihf

NATIVE_ARCH := $(shell dpkg --print-architecture 2>/dev/null || uname -m)

ifdef CROSS
CROSS_ARCH := $(CROSS_ARCH_$(CROSS))
ifeq ($(CROSS_ARCH),)
$(error CROSS=$(CROSS): known triplets are aarch64-linux-gnu and arm-linux-gnueabihf)
endif
# A sysroot from scripts/test/cross-deps.sh (when the target's packages could not
# be installed beside the host's) wins over the multiarch directories.
CROSS_SYSROOT := $(patsubst %/.complete,%,$(wildcard $(CURDIR)/build/cross/$(CROSS_ARCH)/sysroot/.complete))
ifneq ($(origin CC),command line)
CC := $(CROSS)-gcc$(if $(CROSS_SYSROOT), --sysroot=$(CROSS_SYSROOT))
endif
ifeq ($(CROSS_SYSROOT),)
CROSS_PKG_CONFIG := PKG_CONFIG_LIBDIR=/usr/lib/$(CROSS)/pkgconfig:/usr/share/pkgconfig \
                    PKG_CONFIG_PATH= pkg-config
else
CROSS_PKG_CONFIG := PKG_CONFIG_SYSROOT_DIR=$(CROSS_SYSROOT) PKG_CONFIG_PATH= \
  PKG_CONFIG_LIBDIR=$(CROSS_SYSROOT)/usr/lib/$(CROSS)/pkgconfig:$(CROSS_SYSROOT)/usr/share/pkgconfig \
  pkg-config
endif
# The nats output needs the target's libnats-dev (libnats-dev:arm64, ...):
# without it the build leaves the output out (a `nats` output is refused).
ifeq ($(shell $(CROSS_PKG_CONFIG) --exists libnats 2>/dev/null && echo yes),)
PKGS := $(filter-out libnats,$(PKGS))
ALL_CFLAGS += -DENGINE_NO_NATS
endif
PKG_CFLAGS := $(shell $(CROSS_PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(CROSS_PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
LDLIBS     := $(PKG_LIBS) -lpthread -lm
# The Makefile's rules were written with B as it stood when it was read, so
# a cross build into build/<arch> is a sub-make with B given.
ifeq ($(origin B),file)
CROSS_GOALS := $(or $(MAKECMDGOALS),all)
ifneq ($(filter-out all cross-build dist test-cross install-extra,$(CROSS_GOALS)),)
$(error with CROSS, name the build directory: make CROSS=$(CROSS) B=build/$(CROSS_ARCH) $(MAKECMDGOALS))
endif
.DEFAULT_GOAL := cross-build
.PHONY: cross-build
cross-build:
	@$(MAKE) --no-print-directory CROSS=$(CROSS) B=build/$(CROSS_ARCH) build
endif
DIST_ARCH := $(CROSS_ARCH)
STRIP := $(CROSS)-strip
READELF := $(CROSS)-readelf
else
DIST_ARCH := $(NATIVE_ARCH)
STRIP := strip
READELF := readelf
endif

# ------------------------------------------------------------ emulated tests
ARCH ?= arm64

.PHONY: test-cross
test-cross:
	@sh scripts/test/cross-deps.sh $(ARCH)
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory CROSS=$(CROSS_TRIPLET_$(ARCH)) B=build/$(ARCH) build
	@sh scripts/test/test-cross.sh $(ARCH)

# ------------------------------------------------- man page, unit, example
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR ?= /lib/systemd/system

.PHONY: install-extra
install-extra:
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(PREFIX)/share/engine/examples
	install -m 644 docs/engine.1 $(DESTDIR)$(MANDIR)/man1/engine.1
	install -m 644 examples/pipeline.lua $(DESTDIR)$(PREFIX)/share/engine/examples/pipeline.lua
	sed 's|@PREFIX@|$(PREFIX)|g' examples/engine.service > $(DESTDIR)$(PREFIX)/share/engine/examples/engine.service
	chmod 644 $(DESTDIR)$(PREFIX)/share/engine/examples/engine.service

# `make install` puts the man page and examples in place too.
install: install-extra

# ------------------------------------------------------------------ tarball
# build/dist/engine-VERSION-ARCH.tar.gz: a tree for PREFIX=/usr/local with
# the stripped binary, the Lua files, the man page, the example pipeline and
# systemd unit, and NEEDED.txt (the shared libraries the binary needs).
DIST_NAME := engine-$(VERSION)-$(DIST_ARCH)
DIST_B := $(if $(CROSS),build/$(CROSS_ARCH),$(B))

.PHONY: dist
dist:
	@$(MAKE) --no-print-directory $(if $(CROSS),CROSS=$(CROSS)) B=$(DIST_B) build
	rm -rf build/dist/$(DIST_NAME) && mkdir -p build/dist/$(DIST_NAME)
	$(MAKE) --no-print-directory $(if $(CROSS),CROSS=$(CROSS)) B=$(DIST_B) \
	  PREFIX=/usr/local DESTDIR=$(CURDIR)/build/dist/$(DIST_NAME) install
	$(STRIP) build/dist/$(DIST_NAME)/usr/local/bin/engine
	$(READELF) -d build/dist/$(DIST_NAME)/usr/local/bin/engine | \
	  sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' > build/dist/$(DIST_NAME)/NEEDED.txt
	tar -C build/dist -czf build/dist/$(DIST_NAME).tar.gz --owner=0 --group=0 $(DIST_NAME)
	@echo "build/dist/$(DIST_NAME).tar.gz"
