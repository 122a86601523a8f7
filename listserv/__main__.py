"""`python -m listserv` runs the command line."""

from .cli import main

main()
