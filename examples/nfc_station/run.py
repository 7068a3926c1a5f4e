"""Run the NFC station demo: ``python examples/nfc_station/run.py [STATIONS] [SECONDS]``."""

import sys

from pigeon.demo import nfc

if __name__ == "__main__":
    stations = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    sys.exit(0 if nfc.main(stations, seconds) else 1)
