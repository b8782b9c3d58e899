# Estafeta: top-level GNU Makefile.
#
#   make                 build every program into $(BUILD)/bin
#   make run             build and start all daemons with ./run/ as state
#   make check           install test packages (as root), build, run the
#                        unit and integration tests, then again under
#                        AddressSanitizer and UndefinedBehaviorSanitizer
#   make bench           (as root) Estafeta beside a private Postfix on
#                        loopback, results in doc/benchmarks.md
#   make install DESTDIR=... PREFIX=/usr

BUILD    ?= build
PREFIX   ?= /usr
SYSCONFDIR ?= /etc
LOCALSTATEDIR ?= /var
DESTDIR  ?=
SANITIZE ?=

PKGS     := libevent libevent_openssl openssl libsystemd
CC       ?= cc
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra -Wshadow -Wformat=2 -Wno-unused-parameter
CPPFLAGS += -D_GNU_SOURCE -Ilib $(shell pkg-config --cflags $(PKGS))
LDLIBS   += $(shell pkg-config --libs $(PKGS)) -lcdb -lcrypt -lpthread -lz

ifeq ($(SANITIZE),1)
CFLAGS   := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif

PROGRAMS := smtpd queued deliverd authd imapd filterd sendmail estafeta

LIB_SRC  := $(wildcard lib/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB_A    := $(BUILD)/libestafeta.a

BINS     := $(PROGRAMS:%=$(BUILD)/bin/%)

all: $(BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -MMD -MP -c -o $@ $<

$(LIB_A): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

define program_rule
$(1)_SRC := $$(wildcard $(1)/*.c)
$(1)_OBJ := $$($(1)_SRC:%.c=$(BUILD)/%.o)
$(BUILD)/bin/$(1): $$($(1)_OBJ) $(LIB_A)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$($(1)_OBJ) $(LIB_A) $$(LDLIBS)
endef
$(foreach p,$(PROGRAMS),$(eval $(call program_rule,$(p))))

# queued's outbound delivery resolves DNS with libunbound.
$(BUILD)/bin/queued: LDLIBS += $(shell pkg-config --libs libunbound)
# ...and fetches MTA-STS policies over HTTPS with libcurl.
$(BUILD)/bin/queued: LDLIBS += $(shell pkg-config --libs libcurl)
# ...and looks up UTF-8 domain names by their A-labels with libidn2.
$(BUILD)/bin/queued: LDLIBS += -lidn2

# filterd checks SPF with libspf2, DKIM with libopendkim and DMARC with
# libopendmarc, and resolves their DNS queries with libunbound.
$(BUILD)/bin/filterd: LDLIBS += -lspf2 -lopendkim -lopendmarc $(shell pkg-config --libs libunbound)
# ...and looks up the DMARC record of a UTF-8 From: domain by its A-label.
$(BUILD)/bin/filterd: LDLIBS += -lidn2

# Unit tests: one Check suite per lib module, linked into one runner.
UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/%.o)
$(BUILD)/bin/unit-tests: $(UNIT_OBJ) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(UNIT_OBJ) $(LIB_A) $(LDLIBS) $(shell pkg-config --libs check)

unit: $(BUILD)/bin/unit-tests
	$(BUILD)/bin/unit-tests

run: 
	@sh tests/tools/ensure-packages.sh build
	$(MAKE) all
	@sh etc/run.sh $(BUILD)

# Integration tests mostly wait on daemons and timers, so two pytest-xdist
# workers about halve the wall time; a file's tests stay on one worker so that
# its module fixtures (spamd, clamd, namespaces) start once.
PYTEST_JOBS ?= 2
PYTEST_PARALLEL := $(if $(filter 1,$(PYTEST_JOBS)),,-n $(PYTEST_JOBS) --dist loadfile)

check:
	@sh tests/tools/ensure-packages.sh check
	@[ "$$(id -u)" -ne 0 ] || sh etc/create-users.sh
	/usr/bin/python3 tests/tools/gen-config-man.py --check .
	$(MAKE) all $(BUILD)/bin/unit-tests
	$(BUILD)/bin/unit-tests
	ESTAFETA_BIN=$(CURDIR)/$(BUILD)/bin /usr/bin/python3 -m pytest -q $(PYTEST_PARALLEL) tests/integration
	$(MAKE) BUILD=build-san SANITIZE=1 all build-san/bin/unit-tests
	ASAN_OPTIONS=detect_leaks=0 build-san/bin/unit-tests
	ESTAFETA_BIN=$(CURDIR)/build-san/bin ESTAFETA_SANITIZED=1 ASAN_OPTIONS=detect_leaks=0 \
		/usr/bin/python3 -m pytest -q $(PYTEST_PARALLEL) -m 'not slow' tests/integration

# Estafeta beside a private Postfix instance, both on loopback (as root):
# the tables go into doc/benchmarks.md; BENCH_ARGS=--quick for a short run.
bench:
	@sh tests/tools/ensure-packages.sh bench
	@[ "$$(id -u)" -ne 0 ] || sh etc/create-users.sh
	$(MAKE) all
	/usr/bin/python3 bench/run.py $(BENCH_ARGS)

install: all
	install -d $(DESTDIR)$(PREFIX)/lib/estafeta $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin
	for p in smtpd queued deliverd authd imapd filterd; do \
		install -m 755 $(BUILD)/bin/$$p $(DESTDIR)$(PREFIX)/lib/estafeta/$$p; done
	install -m 755 $(BUILD)/bin/sendmail $(DESTDIR)$(PREFIX)/sbin/sendmail
	install -m 755 $(BUILD)/bin/estafeta $(DESTDIR)$(PREFIX)/sbin/estafeta
	ln -sf ../sbin/sendmail $(DESTDIR)$(PREFIX)/bin/mailq
	ln -sf ../sbin/sendmail $(DESTDIR)$(PREFIX)/bin/newaliases
	install -d $(DESTDIR)$(SYSCONFDIR)/estafeta
	[ -e $(DESTDIR)$(SYSCONFDIR)/estafeta/estafeta.conf ] || \
		install -m 644 etc/estafeta.conf $(DESTDIR)$(SYSCONFDIR)/estafeta/estafeta.conf
	install -D -m 644 etc/pam.d/estafeta $(DESTDIR)$(SYSCONFDIR)/pam.d/estafeta
	install -d $(DESTDIR)$(LOCALSTATEDIR)/spool/estafeta
	install -d $(DESTDIR)/lib/systemd/system
	install -m 644 etc/systemd/*.service etc/systemd/*.target $(DESTDIR)/lib/systemd/system/
	for s in 1 5 8; do install -d $(DESTDIR)$(PREFIX)/share/man/man$$s; \
		for f in man/*.$$s; do [ -e "$$f" ] && install -m 644 $$f $(DESTDIR)$(PREFIX)/share/man/man$$s/; done; done

# Regenerate man/estafeta.conf.5 from the parameter tables.
man:
	/usr/bin/python3 tests/tools/gen-config-man.py .

clean:
	rm -rf build build-san

.PHONY: all unit run check bench install clean man

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
