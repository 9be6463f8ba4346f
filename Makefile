# Two commands for a new user: `make demo` and `make test`. Both set themselves up first.
.PHONY: demo test lint typecheck unit bootstrap-demo bootstrap-test clean

VENV := .venv
BIN := $(VENV)/bin
DURATION ?=

demo: bootstrap-demo
	$(BIN)/gridtwin demo $(if $(DURATION),--duration $(DURATION),)

test: bootstrap-test lint typecheck
	$(BIN)/gridtwin services up
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check .

typecheck:
	$(BIN)/mypy

bootstrap-demo:
	@scripts/bootstrap.sh demo

bootstrap-test:
	@scripts/bootstrap.sh test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
