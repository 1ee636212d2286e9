"""Child process for the spill tests: logs through a spilling LokiSink, then waits to
be killed (phase "outage") or drains its spill and exits (phase "replay")."""

from __future__ import annotations

import sys
import time

from sluiceway import client


def main() -> None:
    url, spill_dir, phase = sys.argv[1], sys.argv[2], sys.argv[3]
    client.configure(sinks=[client.LokiSink(url, labels={"app": "spilltest"}, timeout=1.0,
                                            batch_wait=0.05)],
                     when_full="spill", spill_dir=spill_dir, queue_size=500,
                     when_spill_full="block", capture_stdlib=False, batch_size=100)
    log = client.get_logger("child")
    if phase == "outage":
        start, count = int(sys.argv[4]), int(sys.argv[5])
        if start == 0:
            for i in range(200):
                log.info("rec", i=i)
            assert client.flush(10)
            print("delivered", flush=True)
            sys.stdin.readline()  # the parent stops the server, then tells us to go on
            start = 200
        for i in range(start, count):
            log.info("rec", i=i)
            if i % 100 == 0:
                time.sleep(0.01)
        while client.stats()["spilled"] < count - start:
            time.sleep(0.05)
        print("spilled", client.stats()["spilled"], flush=True)
        time.sleep(120)  # SIGKILL arrives here
    else:
        ok = client.flush(30)
        s = client.stats()
        print("flushed", ok, s["written"], s["dropped"], flush=True)


if __name__ == "__main__":
    main()
