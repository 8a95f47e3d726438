# Thin wrappers around scripts/: the scripts are the source of truth.
.PHONY: build test quickstart bench load runtime-load deps

build:
	bash scripts/build.sh

test:
	bash scripts/test.sh

quickstart:
	bash scripts/quickstart.sh

bench:
	go test -run '^$$' -bench . -benchmem -timeout 30m ./...

load:
	bash bench/load.sh

runtime-load:
	bash bench/runtime_load.sh

deps:
	bash scripts/deps.sh
