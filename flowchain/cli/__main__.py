"""``python -m flowchain.cli`` runs the ``flowchain`` command."""
from flowchain.cli import main

main()
