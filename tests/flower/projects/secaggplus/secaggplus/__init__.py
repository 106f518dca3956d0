"""secaggplus: Flower's SecAgg+ protocol summing a legacy FedAvg's updates."""
