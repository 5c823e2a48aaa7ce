# Two commands do all set-up on a fresh machine:
#   make train   create .venv, install coreaug, train on Fashion-MNIST (30% coreset, the paper's method)
#   make test    create .venv, install coreaug[test,plot,docs], run the whole test suite, build the manual
#   make docs    build the manual (docs/, mkdocs.yml) into build/site with --strict; preview: .venv/bin/mkdocs serve
#   make clean   remove what make built (.venv, *.egg-info, build/), never runs/ (the trained models)
PYTHON ?= python3
VENV ?= .venv
# torch's CPU wheel from pytorch.org's CPU index (PyPI's Linux wheel of torch is the CUDA build, with GBs of
# CUDA libraries); torch 2.13 needs Python >= 3.10. Offline, pip tries that index twice per package, then takes
# the wheel from its own find-links folder where one holds it (as on the project's CI machine): --retries 2 made
# torch's install there 25 s, against 102 s with pip's default of 5 retries.
# Read when .venv is created (make clean, then make again, to change it); for CUDA, e.g.
#   make train TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu130"
TORCH_SPEC ?= torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
# The Python that .venv needs: torch 2.13 (as pinned by the default TORCH_SPEC) needs 3.10, coreaug 3.9 (another
# TORCH_SPEC on 3.9: pip picks the newest torch that supports it). Checked before .venv is made, and of .venv's own
# python, so that a too-old Python stops with a line naming it rather than with pip's resolver error.
PYTHON_MIN := $(if $(findstring torch==2.13,$(TORCH_SPEC)),3.10,3.9)
PYTHON_CHECK = import platform, sys; sys.exit(sys.version_info[:2] < tuple(int(p) for p in "$(PYTHON_MIN)".split(".")) \
  and "make: %s is Python %s; %s" % (sys.argv[1], platform.python_version(), sys.argv[2]))
PYTHON_NEEDS = coreaug with TORCH_SPEC='$(TORCH_SPEC)' needs Python $(PYTHON_MIN) or newer
BIN := $(VENV)/bin
# --resume: make train again continues an interrupted run, or prints a finished one's result.
TRAIN_ARGS ?= --dataset fashion-mnist --strategy coreset --subset 0.3 --epochs 2 --out runs/fashion-mnist-coreset-0.3 --resume

.PHONY: install install-test train test docs data-fashion-mnist clean

# A venv that python -m venv left half made (Debian without python3-venv: no pip) is removed, so that the next make
# makes it again; a folder that was there before is left as it was.
$(BIN)/python:
	@$(PYTHON) -c '$(PYTHON_CHECK)' '$(PYTHON)' "$(PYTHON_NEEDS): pass PYTHON=python3.11 (or another)"
	if [ -e $(VENV) ]; then $(PYTHON) -m venv $(VENV); else $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }; fi
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg setup.py
	@test ! -x $(BIN)/python || $(BIN)/python -c '$(PYTHON_CHECK)' '$(BIN)/python' \
	  "$(PYTHON_NEEDS): make clean (removes $(VENV) and build files only), then make again with PYTHON=python3.11"
	$(BIN)/pip install -q --retries 2 $(TORCH_SPEC)
	$(BIN)/pip install -q -e '.[test,plot]'
	echo '$(TORCH_SPEC)' > $@

# The stamp holds the TORCH_SPEC that installed torch: say so when another one is passed later.
install: $(VENV)/.installed
	@test ! -s $< || test "$$(cat $<)" = '$(TORCH_SPEC)' || \
	  echo "make: $(VENV) keeps the torch of TORCH_SPEC='$$(cat $<)';" \
	    "to install TORCH_SPEC='$(TORCH_SPEC)': make clean first (it removes $(VENV) and build files, not runs/)"

# The manual's tools (the docs extra), for make test and make docs only: make train does not need them.
$(VENV)/.installed-docs: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test,plot,docs]'
	touch $@

# --strict: a broken link, a missing page or an API name that no longer exists fails the build.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

# Debian's package puts the files in /usr/share/datasets/fashion-mnist; needs root (or sudo). apt-get update
# first where apt does not know the package (fresh containers have no package lists). Without apt or root,
# nothing is installed: coreaug also looks in $COREAUG_DATA and ~/.cache/coreaug, and says where it looked.
FASHION_MNIST_FILE ?= /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
data-fashion-mnist:
	@test -f $(FASHION_MNIST_FILE) || \
	  if ! command -v apt-get >/dev/null || { [ "$$(id -u)" != 0 ] && ! command -v sudo >/dev/null; }; then \
	    echo "make: cannot install dataset-fashion-mnist (needs apt-get, and root or sudo):" \
	      "coreaug looks for Fashion-MNIST in \$$COREAUG_DATA and ~/.cache/coreaug too"; \
	  else sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    { apt-cache show dataset-fashion-mnist >/dev/null 2>&1 || $$sudo apt-get update -q; } && \
	    $$sudo apt-get install -y -q dataset-fashion-mnist; fi

train: install data-fashion-mnist
	$(BIN)/coreaug train $(TRAIN_ARGS)

# make test spreads the tests over the cores (pytest-xdist, up to 4 processes: on a quiet 2-core machine four of the
# slowest modules took 128 s in two processes against 228 s in one): TEST_WORKERS=0 runs them in this one process.
# PYTHONDONTWRITEBYTECODE emptied: where the environment sets it, each of the tests' Python processes (the commands
# run as users run them) compiled coreaug's source again, 0.4 s a process here.
TEST_WORKERS ?= auto
test: install docs data-fashion-mnist
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --maxprocesses 4 --durations=25

# What make built: the venv, the editable install's egg-info and build/ (the manual, setuptools' files). Never
# runs/, where make train and coreaug train without --out write every trained model.
clean:
	rm -rf $(VENV) *.egg-info build
