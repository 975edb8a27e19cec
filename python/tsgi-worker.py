"""Entry point of a tsgi Python worker (run by the master with the app's interpreter).

Imports the tsgi_worker package from beside this file, then takes this directory off sys.path again so
that the app's own imports resolve exactly as they would under uWSGI.
"""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _here)
import tsgi_worker.main  # noqa: E402
sys.path[:] = [p for p in sys.path if os.path.abspath(p or '.') != _here]

tsgi_worker.main.main()
