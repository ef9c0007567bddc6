from runyard.sdk.cli.main import run

run()
