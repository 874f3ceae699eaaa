# onnx2caffe: set-up, tests and tools. `make install` then `make test` on a fresh Debian 12 machine.
PYTHON ?= python3
VENV   ?= .venv
CAFFE  ?= .caffe
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed

.PHONY: install venv caffe proto docs test lint format demo bench clean-caffe help

help:
	@echo "make install   venv with onnx2caffe + test extras, and real Caffe (make caffe)"
	@echo "make test      lint + the test suite (installs first if needed)"
	@echo "make demo      export a torchvision model, convert it, verify it"
	@echo "make caffe     build BVLC Caffe (CPU) + pycaffe into $(CAFFE)/ (about 5 minutes)"
	@echo "make proto     regenerate onnx2caffe/proto/caffe_pb2.py from caffe.proto"
	@echo "make docs      regenerate the op table in README.md from the registry"
	@echo "make bench     run the benchmarks in benchmarks/"

install: venv caffe

venv: $(STAMP)

# torch/torchvision come from the distribution's wheels; the project's extras add OpenCV, pytest, ruff.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[opencv,vision,test]'
	touch $(STAMP)

caffe:
	bash scripts/build_caffe.sh $(CAFFE)

proto: venv
	bash scripts/gen_proto.sh

docs: venv
	$(PY) scripts/update_readme.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: install lint
	ONNX2CAFFE_CAFFE_ROOT=$(abspath $(CAFFE)) $(BIN)/pytest -q

demo: venv
	bash scripts/demo.sh

bench: install
	$(PY) benchmarks/write_caffemodel.py

clean-caffe:
	rm -rf $(CAFFE)
