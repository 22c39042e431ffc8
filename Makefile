# SPDX-License-Identifier: MIT
# mrfs: a model registry you mount.
#
#   make                 build build/mrfs and build/libmrfs.a
#   make test            unit and integration tests
#   make bench           benchmarks (ratios against native, same run)
#   make demo            build, mount a store, log and promote an example model
#   make install         install to $(PREFIX)
#   make SANITIZE=address,undefined test    the same under sanitizers
#   DEVELOPER=1          warnings are errors (CI's default)

PREFIX     ?= /usr/local
CC         ?= cc
PKGS       := fuse3 lmdb libxxhash jansson
SANITIZE   ?=
DEVELOPER  ?=
comma      := ,

ifeq ($(SANITIZE),)
BUILD      := build
else
BUILD      := build/san-$(subst $(comma),-,$(SANITIZE))
endif

# On a fresh machine, install what the build needs before asking pkg-config.
NODEPS_GOALS := clean format format-check
ifeq ($(filter-out $(NODEPS_GOALS),$(or $(MAKECMDGOALS),all)),$(or $(MAKECMDGOALS),all))
ifneq ($(shell pkg-config --exists $(PKGS) && echo ok),ok)
$(info mrfs: installing build dependencies (scripts/install-deps.sh))
$(shell scripts/install-deps.sh >&2)
endif
endif

WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wvla -Wwrite-strings -Wformat=2 -Wno-unused-parameter
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 $(WARN) -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Iinclude \
            $(shell pkg-config --cflags $(PKGS))
LDLIBS   += $(shell pkg-config --libs $(PKGS)) -lpthread
ifneq ($(DEVELOPER),)
CFLAGS   += -Werror
endif
ifneq ($(SANITIZE),)
CFLAGS   += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS  += -fsanitize=$(SANITIZE)
endif

LIB_SRC  := $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC:= $(wildcard tests/bench/*.c)
BENCH_BIN:= $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)
HDRS     := $(wildcard include/mrfs/*.h src/*.h)

.PHONY: all test unit integration bench demo install clean format format-check tools

all: $(BUILD)/mrfs $(BUILD)/libmrfs.a

tools: $(UNIT_BIN) $(BENCH_BIN)

$(BUILD)/obj/%.o: src/%.c $(HDRS) | $(BUILD)/obj
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/libmrfs.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/mrfs: $(BUILD)/obj/main.o $(BUILD)/libmrfs.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c tests/unit/unit.h $(BUILD)/libmrfs.a $(HDRS) | $(BUILD)/tests
	$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(BUILD)/libmrfs.a $(LDLIBS)

$(BUILD)/bench/%: tests/bench/%.c $(BUILD)/libmrfs.a $(HDRS) | $(BUILD)/bench
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmrfs.a $(LDLIBS)

$(BUILD)/obj $(BUILD)/tests $(BUILD)/bench:
	mkdir -p $@

test: all $(UNIT_BIN)
	@scripts/install-deps.sh
	@MRFS_BUILD=$(BUILD) tests/run.sh

unit: all $(UNIT_BIN)
	@MRFS_BUILD=$(BUILD) tests/run.sh unit

integration: all
	@scripts/install-deps.sh
	@MRFS_BUILD=$(BUILD) tests/run.sh integration

bench: all $(BENCH_BIN)
	@MRFS_BUILD=$(BUILD) scripts/bench.sh

demo: all
	@MRFS_BUILD=$(BUILD) scripts/demo.sh $(DEMO_ARGS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin \
		$(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 0755 $(BUILD)/mrfs $(DESTDIR)$(PREFIX)/bin/mrfs
	ln -sf ../bin/mrfs $(DESTDIR)$(PREFIX)/sbin/mount.fuse.mrfs
	install -m 0644 scripts/mrfs.1 $(DESTDIR)$(PREFIX)/share/man/man1/mrfs.1
	install -m 0644 scripts/mrfs.bash-completion \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/mrfs

clean:
	rm -rf build

FORMATTED := src/*.c include/mrfs/*.h tests/unit/*.c tests/unit/*.h tests/bench/*.c tests/fuzz/*.c

format:
	clang-format -i $(FORMATTED)

format-check:
	clang-format --dry-run --Werror $(FORMATTED)

# ---- reliability: stress and fuzzing -----------------------------------------
#   make stress          the full forms of tests/t/t0110..t0140 (200 crash rounds,
#                        60 s of stress, also against a ThreadSanitizer build)
#   make fuzz            the regression inputs, then each libFuzzer target of
#                        tests/fuzz/ for FUZZ_TIME seconds (FUZZ_TIME=0: the
#                        regression inputs only; FUZZ_TARGETS="json time" picks)
FUZZ_CC    ?= clang
FUZZ_TIME  ?= 60
FUZZ_FLAGS := -g -O1 -std=gnu11 $(WARN) -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Iinclude \
              $(shell pkg-config --cflags $(PKGS)) -fno-omit-frame-pointer \
              -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN   := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_OBJ   := $(LIB_SRC:src/%.c=$(BUILD)/fuzz/obj/%.o)

.PHONY: stress fuzz
.SECONDARY: $(FUZZ_OBJ)

$(BUILD)/fuzz/obj/%.o: src/%.c $(HDRS) | $(BUILD)/fuzz/obj
	$(FUZZ_CC) $(FUZZ_FLAGS) -c -o $@ $<

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_OBJ) $(HDRS) | $(BUILD)/fuzz/obj
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) $(LDLIBS)

$(BUILD)/fuzz/obj:
	mkdir -p $@

stress: all
	@MRFS_BUILD=$(BUILD) MRFS_MAKE="$(MAKE)" scripts/stress.sh

fuzz: $(FUZZ_BIN)
	@MRFS_BUILD=$(BUILD) FUZZ_TIME=$(FUZZ_TIME) scripts/fuzz.sh $(FUZZ_TARGETS)
