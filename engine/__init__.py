"""llama.cpp serving: loading base + adapter, streaming chat, the context budget.

Importing this package sets OpenMP's wait policy to passive (unless the environment
already says otherwise). llama.cpp's threads meet at an OpenMP barrier after every
operation; with the default policy a waiting thread spins, and when anything else
shares the cores (a training child, a browser) the spinning thread steals the time its
partner needs: decoding on 2 busy cores fell from about 18 to about 1 token/s. The
setting only takes effect if it is made before libgomp is first loaded (by llama_cpp or
torch), so import this package early.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
