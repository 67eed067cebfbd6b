# Thread deletion service — see README.md.
SHELL       := /bin/bash
GO          ?= go
BIN         := $(CURDIR)/.bin
RIE         := $(BIN)/aws-lambda-rie
STATICCHECK := $(BIN)/staticcheck
STATICCHECK_MODULE := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Every function under functions/ is built to build/<dir>/bootstrap.
FUNCTIONS   := $(notdir $(wildcard functions/*))
LAMBDA_TAGS := -tags lambda.norpc
# Logical id (template.yaml) -> directory under functions/.
fn_dir       = $(or $(if $(filter DeleteThreadFunction,$(1)),delete-thread),$(if $(filter SandboxCleanupFunction,$(1)),sandbox-cleanup),$(1))

.PHONY: all build test dev migrate outbox invoke bench fuzz tools services lint clean FORCE \
        build-DeleteThreadFunction build-SandboxCleanupFunction

all: build

## build: host binaries build/<function>/bootstrap
build: $(FUNCTIONS:%=build/%/bootstrap)

build/%/bootstrap: FORCE
	CGO_ENABLED=0 $(GO) build $(LAMBDA_TAGS) -trimpath -ldflags='-s -w' -o $@ ./functions/$*

## build-<LogicalId>: what `sam build` runs (BuildMethod: makefile)
build-DeleteThreadFunction:
	$(call lambda_build,delete-thread)

build-SandboxCleanupFunction:
	$(call lambda_build,sandbox-cleanup)

define lambda_build
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build $(LAMBDA_TAGS) -trimpath -ldflags='-s -w' -o $(ARTIFACTS_DIR)/bootstrap ./functions/$(1)
endef

## tools: the SQS emulator (npm) and the Lambda runtime interface emulator
tools: node_modules/.installed $(RIE)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The version is pinned once, in internal/localstack (RIEModule); the
# toolkit also installs it on demand and replaces another version.
$(RIE):
	$(GO) run ./internal/localstack/installrie

## services: make sure PostgreSQL and Redis run on loopback and PgBouncer is installed (installs what is absent)
services:
	scripts/ensure-services.sh

## test: every test, against real PostgreSQL, Redis, SQS (fauxqs) and aws-lambda-rie
test: tools services
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 8m ./...

## fuzz: each fuzz target for FUZZTIME (default 15s)
FUZZTIME ?= 15s
fuzz: tools services
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

## migrate: apply the service's migrations to $DATABASE_URL (safe to re-run)
migrate:
	$(GO) run ./cmd/migrate

## outbox: the operator's outbox tool, e.g. make outbox ARGS="list -status dead" (docs/operations.md)
outbox:
	$(GO) run ./cmd/outbox $(ARGS)

## dev: local stack with demo data, API on http://127.0.0.1:3000
# Built and run rather than `go run`, which exits 1 when Ctrl-C reaches it
# while the program is still shutting down; the stack stops cleanly.
dev: tools services
	$(GO) build -o $(BIN)/dev ./cmd/dev
	$(BIN)/dev

## invoke: make invoke FN=<LogicalId> EVENT=events/<file>.json
invoke: tools build
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=DeleteThreadFunction EVENT=events/delete-thread.json"; exit 2; }
	$(GO) run ./cmd/invoke -bootstrap build/$(call fn_dir,$(FN))/bootstrap -event $(EVENT)

## bench: benchmarks (package bench); prints every figure measured as tables.
## docs/benchmarks.md keeps the figures of the latest run.
bench: tools services build
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 15m ./bench

## lint: gofmt, go vet, staticcheck (pinned) and go.mod/go.sum tidiness; fails on any finding
lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	$(GO) mod tidy -diff

$(STATICCHECK):
	GOBIN=$(BIN) $(GO) install $(STATICCHECK_MODULE)

clean:
	rm -rf build .bin node_modules
