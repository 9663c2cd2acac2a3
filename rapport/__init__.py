"""Rapport: turn a domain description into a fine-tuned, locally runnable chat model.

The one import package the distribution installs. Its subpackages are the repository's
top-level folders (engine/, agents/, judges/, …), mapped here by `package-dir` in
pyproject.toml so that nothing generic (`config`, `cli`, `store`) lands in site-packages.
"""
