from mibounds.cli import entry

entry()
