# Two commands do all set-up on a fresh machine:
#   make train   create .venv, install coreaug, train on Fashion-MNIST (30% coreset, the paper's method)
#   make test    create .venv, install coreaug[test,plot,docs], run the whole test suite, build the manual
#   make docs    build the manual (docs/, mkdocs.yml) into build/site with --strict; preview: .venv/bin/mkdocs serve
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of torch lies on this machine's disk; override for CUDA, e.g.
#   make train TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
# --resume: make train again continues an interrupted run, or prints a finished one's result.
TRAIN_ARGS ?= --dataset fashion-mnist --strategy coreset --subset 0.3 --epochs 2 --out runs/fashion-mnist-coreset-0.3 --resume

.PHONY: install install-test train test docs data-fashion-mnist clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg setup.py
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e '.[test,plot]'
	touch $@

install: $(VENV)/.installed

# The manual's tools (the docs extra), for make test and make docs only: make train does not need them.
$(VENV)/.installed-docs: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test,plot,docs]'
	touch $@

# --strict: a broken link, a missing page or an API name that no longer exists fails the build.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

# Debian's package puts the files in /usr/share/datasets/fashion-mnist; needs root (or sudo).
data-fashion-mnist:
	@test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get install -y -q dataset-fashion-mnist; \
	    else sudo apt-get install -y -q dataset-fashion-mnist; fi; }

train: install data-fashion-mnist
	$(BIN)/coreaug train $(TRAIN_ARGS)

test: install docs data-fashion-mnist
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs *.egg-info
