"""The worker VM manager: pools, the fleet of instances, connections to worker agents."""
