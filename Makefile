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
	@echo "make families  the family zoo (detectors, segmenters, OCR, SR, face nets) -> docs/families.md"

install: venv caffe

venv: $(STAMP)

# torch/torchvision come from the distribution's wheels; the project's extras add OpenCV, pytest, ruff.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[opencv,vision,test,ncnn,families]'
	# facenet-pytorch (MTCNN's real weights: the ncnn int8 test and example, the family zoo) without its
	# dependencies: its metadata pins a torch and numpy older than ours; it runs on them
	$(BIN)/pip install -q --no-deps 'facenet-pytorch>=2.5'
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
	$(PY) benchmarks/ncnn_writer.py
	ONNX2CAFFE_CAFFE_ROOT=$(abspath $(CAFFE)) $(PY) benchmarks/pipeline.py
	ONNX2CAFFE_CAFFE_ROOT=$(abspath $(CAFFE)) $(PY) benchmarks/calibrate.py

clean-caffe:
	rm -rf $(CAFFE)

# ---- the torchvision model zoo (onnx2caffe/zoo.py) --------------------------------------------------------------
# make zoo-NAME: one net (export, convert, verify on pycaffe + OpenCV), its record in $(ZOO_RESULTS)/NAME.json.
# make zoo: every torchvision classification model + 3 segmentation models, one process each (memory is freed
# between nets), then docs/zoo.md. ZOO_FLAGS=--skip-existing resumes an interrupted run.
ZOO_RESULTS ?= out/zoo
ZOO_FLAGS   ?=
ZOO_TIMEOUT ?= 1800
ZOO_ENV     := ONNX2CAFFE_CAFFE_ROOT=$(abspath $(CAFFE)) OMP_NUM_THREADS=2

.PHONY: zoo zoo-table

zoo-table: venv
	$(PY) -m onnx2caffe.zoo table --results $(ZOO_RESULTS) -o docs/zoo.md

zoo-%: venv
	$(ZOO_ENV) nice -n 10 $(PY) -m onnx2caffe.zoo run $* --results $(ZOO_RESULTS) $(ZOO_FLAGS)

zoo: venv
	@for m in $$($(PY) -m onnx2caffe.zoo list); do \
	  $(ZOO_ENV) timeout $(ZOO_TIMEOUT) nice -n 10 $(PY) -m onnx2caffe.zoo run $$m --results $(ZOO_RESULTS) $(ZOO_FLAGS) || true; \
	done
	$(PY) -m onnx2caffe.zoo table --results $(ZOO_RESULTS) -o docs/zoo.md

# ---- fuzzing and differential testing (tests/test_fuzz_readers.py, tests/test_differential.py) -------------------
# make fuzz: the same tests as in `make test`, with the "fuzz" hypothesis profile (random, many more examples;
# see tests/fuzz_profiles.py). Prints the hypothesis statistics and the execution counts.
.PHONY: fuzz bench-memory

fuzz: install
	HYPOTHESIS_PROFILE=fuzz ONNX2CAFFE_CAFFE_ROOT=$(abspath $(CAFFE)) $(BIN)/pytest -q -p no:cacheprovider \
	  --hypothesis-show-statistics tests/test_fuzz_readers.py tests/test_differential.py

# make bench-memory: peak RSS of convert as a multiple of the weight size (VGG-16 and a 1.5 GB model)
bench-memory: venv
	$(PY) benchmarks/memory.py

# ---- the family zoo (onnx2caffe/families.py) ----------------------------------------------------------------------
# make families-NAME: one net (export, convert, verify on pycaffe + OpenCV), its record in $(FAMILIES_RESULTS)/NAME.json
# (names: python -m onnx2caffe.families list; NAME.ultralytics is the same YOLO through ultralytics' exporter).
# make families: every family net, one process each (memory is freed between nets, FAMILIES_TIMEOUT seconds each),
# then docs/families.md; fails when a net is neither verified nor refused. FAMILIES_FLAGS=--skip-existing resumes,
# FAMILIES_FLAGS="--exporter dynamo" exports with dynamo (records NAME.dynamo; use another FAMILIES_RESULTS).
# Package settings and caches (ultralytics, torch hub, Hugging Face) go to $(FAMILIES_WORK).
FAMILIES_RESULTS ?= out/families
FAMILIES_WORK    ?= out/families-work
FAMILIES_FLAGS   ?=
FAMILIES_TIMEOUT ?= 1800
FAMILIES_RUN     := $(ZOO_ENV) nice -n 10 $(PY) -m onnx2caffe.families

.PHONY: families families-table families-survey bench-deploy

families-table: venv
	$(PY) -m onnx2caffe.families table --results $(FAMILIES_RESULTS) -o docs/families.md

families-survey: venv
	$(PY) -m onnx2caffe.families survey --results $(FAMILIES_RESULTS) -o $(FAMILIES_RESULTS)/survey.md

families-%: venv
	$(FAMILIES_RUN) run $* --results $(FAMILIES_RESULTS) --work $(FAMILIES_WORK) $(FAMILIES_FLAGS)

families: venv
	$(FAMILIES_RUN) run-all --results $(FAMILIES_RESULTS) --work $(FAMILIES_WORK) --timeout $(FAMILIES_TIMEOUT) \
	  $(FAMILIES_FLAGS); status=$$?; \
	  $(PY) -m onnx2caffe.families table --results $(FAMILIES_RESULTS) -o docs/families.md && exit $$status

# make bench-deploy: OpenCV dnn forward time of each family net's Caffe files vs its ONNX file (one thread)
bench-deploy: venv
	$(ZOO_ENV) nice -n 10 $(PY) benchmarks/deploy.py --work $(FAMILIES_WORK)
