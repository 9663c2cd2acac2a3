"""Reports over a judged corpus: the judging report and the figures an iteration compares."""
