# Set-up and the two jobs of the README. Every target creates the virtual environment first
# when it is missing (or when pyproject.toml changed since).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_DATA ?= ../shared/data
# `make notebooks PROFILE=full` runs the notebooks on the full profile (a GPU)
PROFILE ?= quick
export SSLKIT_DATA ?= $(CURDIR)/data

.PHONY: demo test unit browser notebooks lab bench clean-cache data site

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@# the course website's MathJax, from the npm registry into the environment (sslkit/course.py pins
	@# the version); only `make site` needs it, so without npm the rest of the set-up goes on
	@if command -v npm >/dev/null; then \
	  npm install --silent --no-audit --no-fund --prefix $(VENV)/mathjax \
	    mathjax@$$($(PY) -c "from sslkit.course import MATHJAX_VERSION as v; print(v)"); \
	else echo "no npm: the course website (make site) will ask for MathJax; everything else works"; fi
	touch $@

# The CIFAR-10 JPEG copy beside the project, extracted once (atomically) into the ignored data/.
data/cifar10-jpeg/train:
	@if [ -f $(SHARED_DATA)/cifar10-jpeg.tar.gz ]; then \
	  echo "extracting $(SHARED_DATA)/cifar10-jpeg.tar.gz into data/cifar10-jpeg"; \
	  rm -rf data/.cifar10-jpeg.tmp && mkdir -p data/.cifar10-jpeg.tmp && \
	  tar xzf $(SHARED_DATA)/cifar10-jpeg.tar.gz -C data/.cifar10-jpeg.tmp && \
	  mv data/.cifar10-jpeg.tmp data/cifar10-jpeg; \
	else echo "no $(SHARED_DATA)/cifar10-jpeg.tar.gz: the quick profile will use digits"; fi

# Everything the notebooks read: the CIFAR-10 copy, and MNIST and Fashion-MNIST for notebook 08's
# transfer section, linked (not copied) into the ignored data/ when they are beside the project.
data: data/cifar10-jpeg/train
	@for d in MNIST FashionMNIST; do \
	  if [ -d $(SHARED_DATA)/$$d ] && [ ! -e data/$$d ]; then ln -s "$$(cd $(SHARED_DATA) && pwd)/$$d" data/$$d; fi; \
	done

demo: $(VENV)/.installed
	$(PY) -m sslkit demo

# Unit tests and every notebook through nbval (quick profile), in a fresh run cache so the
# notebooks really train. --nbval-lax: cells run and must not raise; outputs are not compared
# (training curves differ from run to run).
# The executed notebooks are kept in build/executed (conftest.py), and the course website is built
# from them and checked in Chromium (make site), so the site never runs a notebook again.
# Then, in the same run cache (so they load the runs the notebooks just trained): the student
# version of every notebook through nbval (`sslkit course student`: solutions replaced by
# placeholders; the instructor version is the source notebooks themselves, run above), and the
# widget tests in JupyterLab under headless Chromium (tests/browser). Every step always runs, the
# run cache is removed, and the target stops if any step failed.
test: $(VENV)/.installed data
	export SSLKIT_CACHE=$$(mktemp -d) SSLKIT_PROFILE=quick MPLBACKEND=Agg; status=0; \
	SSLKIT_EXECUTED=$(CURDIR)/build/executed $(PY) -m pytest tests notebooks --nbval-lax --ignore=tests/browser \
	  -p no:cacheprovider --durations=25 || status=$$?; \
	{ $(PY) -m sslkit course student build/student && \
	  $(PY) -m pytest build/student --nbval-lax -p no:cacheprovider --durations=10; } || status=$$?; \
	$(PY) -m pytest tests/browser -p no:cacheprovider --durations=10 || status=$$?; \
	rm -rf "$$SSLKIT_CACHE"; exit $$status
	$(MAKE) --no-print-directory site

# The course website (Sphinx + myst-nb) from the notebooks `make test` executed, then opened in
# headless Chromium: every page loads, every image is there, every internal link resolves.
site: $(VENV)/.installed
	$(PY) -m sslkit course site build/site --executed build/executed
	SSLKIT_SITE=build/site $(PY) -m pytest tests/test_site.py -k built_course_site -q -p no:cacheprovider

unit: $(VENV)/.installed
	$(PY) -m pytest tests --ignore=tests/browser

# The widget tests alone (JupyterLab + headless Chromium), in the default run cache.
browser: $(VENV)/.installed data
	$(PY) -m pytest tests/browser

notebooks: $(VENV)/.installed data
	SSLKIT_CACHE=$$(mktemp -d) SSLKIT_PROFILE=$(PROFILE) $(PY) -m pytest notebooks --nbval-lax --durations=0

lab: $(VENV)/.installed data
	$(VENV)/bin/jupyter lab notebooks

bench: $(VENV)/.installed data
	$(PY) benchmarks/simclr_cpu.py

clean-cache:
	rm -rf $${SSLKIT_CACHE:-$$HOME/.cache/sslkit}
