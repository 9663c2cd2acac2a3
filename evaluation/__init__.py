"""`rapport eval`'s figures and statistics: held-out scenario ids, model families, paired
comparisons, the summary's figures and the report's plots. The stage that prepares, plays and
judges an eval is rapport.stages.evaluate; this folder never imports stages.

May import: config, store, engine, judges.
"""
