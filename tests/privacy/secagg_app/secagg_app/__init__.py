"""FedAvg under SecAgg+ on a small NumPy model."""
