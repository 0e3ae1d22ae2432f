"""A simulated GET DAQ for the demo, the tests and the benchmarks: ECC servers over real
SOAP/HTTP (``ecc``, ``http``), data routers writing files (``routers``), and simulated
DAQs of any size as topology files (``topology``)."""
