"""A faithful local stand-in for the Codex upstream (ChatGPT backend + OAuth), for tests, the demo and benchmarks.

Start it with `pooler simulator --port N --accounts N`; drive it from tests with
`pooler.simulator.client.SimulatorClient`. See docs in the CLI module and `control.py` for the control API.
"""

from __future__ import annotations

READY_LINE = "simulator ready on {url}"
