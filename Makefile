# farm: a render farm in one Swift package.
#   make demo   install what is missing, build, render a generated 60 s clip with 2 local nodes
#   make test   install what is missing, build, run every test
#   make bench  the benchmark; results in bench/results.json and a printed table
#   make image  the container image (needs a Docker engine; IMAGE=name:tag to name it)
#   make fuzz   the libFuzzer targets in Fuzz/, FUZZ_SECONDS each (make test runs them 5 s each), then
#               schemathesis against a live coordinator for FUZZ_SECONDS (make test runs a short, seeded pass)
#   make capacity  each tier under rising load (farm capacity); bench/capacity-TIER.json and .html

SWIFT ?= swift
BUILD_FLAGS ?=

IMAGE ?= farm:latest

.PHONY: deps build release demo test bench fuzz capacity image clean

deps:
	@bash scripts/install-deps.sh

build: deps
	$(SWIFT) build $(BUILD_FLAGS)

release: deps
	$(SWIFT) build -c release $(BUILD_FLAGS)

demo: release
	@bash scripts/demo.sh "$$($(SWIFT) build -c release --show-bin-path)/farm"

FUZZ_SECONDS ?= 60

test: deps
	$(SWIFT) build --build-tests $(BUILD_FLAGS)
	bash scripts/fuzz.sh --no-build 5
	FARM_BIN="$$($(SWIFT) build --show-bin-path)/farm" $(SWIFT) test --skip-build $(BUILD_FLAGS)
	bash scripts/contract-test.sh "$$($(SWIFT) build --show-bin-path)/farm" short

bench: release
	@python3 scripts/bench.py --farm "$$($(SWIFT) build -c release --show-bin-path)/farm"

fuzz: deps
	bash scripts/fuzz.sh $(FUZZ_SECONDS)
	$(SWIFT) build --product farm $(BUILD_FLAGS)
	CONTRACT_SECONDS=$(FUZZ_SECONDS) bash scripts/contract-test.sh "$$($(SWIFT) build --show-bin-path)/farm" long

image:
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker engine answers here (docker info failed); build the image where one runs" >&2; exit 1; }
	docker build -t $(IMAGE) .

# Seconds of load per tier; on a machine with fewer cores than a tier the report says so.
CAPACITY_SECONDS ?= 180
capacity: release
	@for tier in budget standard highperf; do \
	  "$$($(SWIFT) build -c release --show-bin-path)/farm" capacity --tier $$tier --embedded \
	    --duration $(CAPACITY_SECONDS) --json bench/capacity-$$tier.json --html bench/capacity-$$tier.html || exit 1; \
	done

clean:
	rm -rf .build demo-out bench/work
