"""Pipeline stages: generate, judge, evaluate, iterate. Each keeps only its plan and its work;
one preparation (stages.preparation) and one shell (stages.shell: lock, interrupts, RunSession,
budget stop) run them all, shown through one progress protocol (stages.progress). Stages import
config, engine, agents, judges, store, reports and evaluation (figures); never cli."""
