"""The test harness itself (tests/support/): the fault proxy and the moto emulation pins."""
