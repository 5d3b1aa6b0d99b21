from pipefill.cli import main

main()
