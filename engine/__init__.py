"""llama.cpp serving: loading base + adapter, streaming chat, the context budget.

Importing this package bounds how long OpenMP threads spin while they wait (unless the
environment already sets a wait policy or a spin count). llama.cpp's worker threads wait
for each other between the graphs of every token. libgomp's default spins for up to
300,000 iterations, and when other work shares the cores (a training child, a browser)
the spinning threads steal the time their partners need: decoding on 2 busy cores fell
from about 18 to about 1 token/s. A passive policy (no spinning) costs nearly two thirds
of the decode speed on idle cores (27 instead of 75 tokens/s on the bundled model). A
short spin of 3,000 iterations keeps idle-core speed (73 tokens/s) and matches the
passive policy when the cores are busy (24 tokens/s with two busy processes beside it).
The setting takes effect only if it is made before libgomp is first loaded (by llama_cpp
or torch), so import this package early.
"""

import os

SPIN_COUNT = "3000"

if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
