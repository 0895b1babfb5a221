"""`python -m bench`: the throughput, latency and memory benchmark."""

from bench.run import main

raise SystemExit(main())
