"""The DAQ's topology: the file's schema (``schema``), writing it to the database
(``loading``), and the demo DAQ (``demo.toml``)."""
from pathlib import Path

# The simulated DAQ of `daqflow up --demo`; a starting point for a real one.
DEMO_TOPOLOGY = Path(__file__).resolve().parent / "demo.toml"
