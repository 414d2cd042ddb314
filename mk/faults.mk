# mk/faults.mk -- the fault-tolerance suite of issue 5 (tests/test_faults.py) on its own, with
# its figures.
#
#   make faults        the bounded form (the one `make test` runs too; about 40 s on 2 cores):
#                      10 worker kills, 40 killed clients, 2 000 interrupted calls, 3 stops
#   make faults-soak   the issue's full counts (SHMACCEL_SOAK=1): 50 worker kills, 200 killed
#                      clients, 10 000 interrupted calls, 10 stops
#
# Both start a fresh report, build/faults-report.json (one object per test, keyed by test
# name), and print it at the end, pass or fail.

FAULTS_REPORT := $(BUILD)/faults-report.json

.PHONY: faults faults-soak

faults faults-soak: all deps
	@mkdir -p $(BUILD)
	@rm -f $(FAULTS_REPORT)
	@status=0; \
	SHMACCEL_FAULTS_REPORT=$(abspath $(FAULTS_REPORT)) SHMACCEL_WORKER=$(abspath $(WORKER)) \
	    $(if $(filter faults-soak,$@),SHMACCEL_SOAK=1) PYTHONPATH=pyshim \
	    $(PYTHON) -m pytest -q -p no:cacheprovider tests/test_faults.py $(PYTEST_ARGS) || status=$$?; \
	if [ -f $(FAULTS_REPORT) ]; then echo "--- $(FAULTS_REPORT)"; cat $(FAULTS_REPORT); fi; \
	exit $$status
