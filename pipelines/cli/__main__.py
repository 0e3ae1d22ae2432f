"""``python -m pipelines.cli``: the ``daqflow`` command."""
from pipelines.cli import main

main()
