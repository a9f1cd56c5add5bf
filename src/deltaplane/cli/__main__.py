from deltaplane.cli import main

main()
