# faults.mk -- `make faults`: the fault-injection suite (tests/test_faults.py) in its bounded
# form; `make faults-soak`: the issue's full counts. Figures go to build/faults-report.json.
.PHONY: faults faults-soak
faults: all deps
	SHMACCEL_FAULTS=1 SHMACCEL_WORKER=$(abspath $(WORKER)) PYTHONPATH=pyshim $(PYTHON) -m pytest -q tests/test_faults.py $(PYTEST_ARGS)
faults-soak: all deps
	SHMACCEL_SOAK=1 SHMACCEL_FAULTS=1 SHMACCEL_WORKER=$(abspath $(WORKER)) PYTHONPATH=pyshim $(PYTHON) -m pytest -q tests/test_faults.py $(PYTEST_ARGS)
