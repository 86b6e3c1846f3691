"""``python -m rlplast ...``: the same as the ``rlplast`` command."""

from rlplast.cli import main

main(prog_name="rlplast")
