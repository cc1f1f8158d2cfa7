"""Offline counterfactual evaluation: exact replay on pool logs, off-policy estimation on
decision logs, Pareto fronts, reports and plots."""
