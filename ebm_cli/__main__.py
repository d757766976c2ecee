from ebm_cli.cli import main

main()
