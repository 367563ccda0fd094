# appliance: the two commands of the quick start are `make demo` and
# `make test`; both do their own set-up.

GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X github.com/appliance/appliance/cli.Version=$(VERSION)
# Where make build writes appliance.
BIN ?= bin/appliance
# Fuzz budgets are counts of executions (about 10–20 s each here), not
# durations: Go 1.26's fuzz coordinator can report a bare "context
# deadline exceeded" failure when a -fuzztime duration ends
# (golang/go#75804, fixed in Go 1.27).
FUZZ_LOAD ?= 60000x
FUZZ_DECODE ?= 400000x
FUZZ_ESPIMAGE ?= 200000x
FUZZ_LITTLEFS ?= 400000x
# The C firmware's libFuzzer targets count runs too (5–15 s each here).
FUZZ_FIRMWARE ?= 500000

.PHONY: all build generate demo test unit race fuzz lint deps firmware-host firmware-test bench bench-ingest bench-nodes bench-disk bench-rootfs bench-image bench-push bench-firstboot boot-test e2e reproducible-programs clean

all: build

# A release binary: the gateway's programs are built for linux/arm64
# (go generate) and embedded (the appliance_embed tag), so appliance needs
# neither Go nor its source where it runs.
build: generate
	$(GO) build -tags appliance_embed -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/appliance

generate:
	$(GO) generate ./images/gobin

# Builds the demo site's gateway image into out/demo (state in
# examples/.appliance/demo). The demo's Wi-Fi passphrase is a variable;
# without APPLIANCE_VAR_wifi_psk a random one is used.
demo: build
	APPLIANCE_VAR_wifi_psk="$${APPLIANCE_VAR_wifi_psk:-$$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}" \
		bin/appliance build examples/demo.hcl

test: deps lint unit firmware-test race fuzz reproducible-programs boot-test

deps:
	scripts/deps

unit:
	$(GO) test -count=1 ./...

# The sensor firmware's program for Linux (firmware/sensor/README.md):
# firmware/sensor/build-host/sensor-host.
firmware-host:
	$(MAKE) -C firmware/sensor host

# The firmware's portable core: strict C11, then its unit tests under
# AddressSanitizer and UBSan. (Its Go tests, in unit, hold it against
# the Go side and run it against the real gateway services.)
firmware-test:
	$(MAKE) -C firmware/sensor strict test

# The concurrent code again under the race detector: the ingest service
# and the image writers and digests (-short leaves out what reads the
# real Debian archive; unit covers it).
race:
	$(GO) test -race -short -count=1 ./ingest/... ./images/zst ./images/disk ./images/bmap ./images/ext4 ./images/rootfs ./images/cache ./images/flash
	$(GO) test -race -count=1 -run '^TestDigestAndCompress$$' ./images/build

# Builds the demo site from Debian's archive and boots it under QEMU
# (about ten minutes under emulation); time-boxed inside the test.
# The image carries the embedded programs, as a release binary's would.
boot-test: generate
	$(GO) test -tags 'boottest appliance_embed' -run '^(TestBootDemo|TestBootRaspi3)$$' -timeout 70m -count=1 -v ./images/vm

# The end-to-end test of the whole site (nodes, readings, OTA, push,
# rollback, what an outsider meets) shares the boot test's gateway: one
# first boot under emulation serves both.
e2e: boot-test

# A short run of each fuzz target on top of its seed corpus.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZ_LOAD) -fuzzminimizetime 5s ./spec
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZ_DECODE) -fuzzminimizetime 5s ./ingest/wire
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZ_ESPIMAGE) -fuzzminimizetime 5s ./firmware/espimage
	$(GO) test -run '^$$' -fuzz '^FuzzRead$$' -fuzztime $(FUZZ_LITTLEFS) -fuzzminimizetime 5s ./firmware/littlefs
	$(MAKE) -C firmware/sensor fuzz FUZZ_RUNS=$(FUZZ_FIRMWARE)

# The gateway's programs (linux/arm64) must build byte-identically, and
# be the ones bin/appliance carries.
reproducible-programs: build
	scripts/reproducible-programs

lint:
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Times a root file system build from Debian's archive against
# mmdebstrap --variant=extract and mke2fs -d, side by side (root and the
# network needed; a few minutes).
bench-rootfs: deps
	$(GO) build -o bin/bench-rootfs ./cmd/bench-rootfs
	bin/bench-rootfs

# A whole warm appliance build of the demo against mmdebstrap, mke2fs -d,
# mkfs.vfat, sfdisk, dd and zstd making the same image (root; a few
# minutes).
bench-image: build deps
	$(GO) build -o bin/bench-image ./cmd/bench-image
	bin/bench-image

# appliance push against an Ansible playbook doing the same, both through
# sshd on loopback: nothing changed, one file, a node added (root).
bench-push: deps
	@command -v ansible-playbook >/dev/null || (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ansible-core >/dev/null)
	$(GO) run ./cmd/bench-push $(BENCH_PUSH_FLAGS)

# Ingest against mosquitto_sub on the same stream, through real mosquitto
# and influxd; BENCH_INGEST_FLAGS=-help lists the knobs.
bench-ingest:
	$(GO) run ./ingest/internal/benchingest $(BENCH_INGEST_FLAGS)

# The demo's first boot under QEMU's emulation, from its pristine image:
# power-on, growing the root, the preinst scripts, dpkg, services up,
# and the slowest packages from the gateway's dpkg log (about 6 minutes
# a run; BENCH_FIRSTBOOT_FLAGS=-runs=3 for more).
bench-firstboot: demo deps
	$(GO) run ./cmd/bench-firstboot $(BENCH_FIRSTBOOT_FLAGS)

# The artifacts of 1,000 nodes (state, identity images, bundles; cold and
# warm), then appliance sim running them at one reading per second through
# the gateway's mosquitto into ingest and influxd, mosquitto_sub -q 1 beside
# it; every reading must arrive once. BENCH_NODES_FLAGS=-help lists the knobs.
bench-nodes:
	$(GO) run ./cmd/bench-nodes $(BENCH_NODES_FLAGS)

# images/ext4 against mke2fs -d on a 420 MB sample of the host's /usr
# (copied once into /var/tmp/appliance-diskbench): time, MB/s, peak RSS.
bench-disk:
	$(GO) run ./images/internal/diskbench

clean:
	rm -rf bin
