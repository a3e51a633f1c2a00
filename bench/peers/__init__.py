"""The peers beside the service, in one run (issue 14, item 2): MLServer and BentoML, each in a
venv of its own, serving the same registry version stock and with the project's table scorer.

- :mod:`bench.peers.venvs`: the venvs, installed once under ``.cache/bench/peers/``;
- :mod:`bench.peers.systems`: how each system is started, asked and read;
- :mod:`bench.peers.section`: the suite's ``peers`` section (checks, interleaved rounds);
- :mod:`bench.peers.stats`: medians over rounds and the issue's ratios (pure);
- :mod:`bench.peers.report`: its Markdown table and figure;
- :mod:`bench.peers.apps`: the code that runs inside the peers' venvs.

Nothing is imported here: the peers' venvs import ``bench.peers.apps`` and have none of the
bench's own libraries.
"""
