"""Bayesian Q*: posteriors over the optimal action-value function from Bellman optimality, on Deep Sea and SSPs."""
