"""Scale-out on Ray: one plan played by several worker actors into one corpus, under one
global rate budget. Importing `rapport` never imports Ray: only these modules' functions do,
and Ray is an optional extra (`pip install rapport[ray]`).

Below stages/: a worker plays conversations with the agents, as a stage does.
May import: config, store, engine, judges, agents.
"""
